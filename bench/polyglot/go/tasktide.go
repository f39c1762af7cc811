package main

import (
	"context"
	"encoding/json"

	"github.com/tasktide/tasktide/clients/go/tasktide"
)

const batch = 1000 // tasks per SubmitBatch call

type tasktideSystem struct {
	client   *tasktide.Client
	ctx      context.Context
	prefetch int
}

func newTasktide(address string, prefetch int) (*tasktideSystem, error) {
	c, err := tasktide.Dial(address) // TASKTIDE_SUBMIT_TRANSPORT chooses how Submit sends
	if err != nil {
		return nil, err
	}
	return &tasktideSystem{client: c, ctx: context.Background(), prefetch: prefetch}, nil
}

func (s *tasktideSystem) submitOne(queue string) error {
	_, err := s.client.Submit(s.ctx, "bench.noop", nil, tasktide.WithQueue(queue))
	return err
}

func (s *tasktideSystem) submitMany(queue, name string, n int) error {
	calls := make([]tasktide.Call, 0, batch)
	for sent := 0; sent < n; sent += len(calls) {
		calls = calls[:0]
		for i := sent; i < n && len(calls) < batch; i++ {
			calls = append(calls, tasktide.Call{Name: name, Options: []tasktide.SubmitOption{tasktide.WithQueue(queue)}})
		}
		if _, err := s.client.SubmitBatch(s.ctx, calls...); err != nil {
			return err
		}
	}
	return nil
}

func (s *tasktideSystem) startWorker(queue string, concurrency int, done func()) (func(), error) {
	w := tasktide.NewWorker(s.client, tasktide.WorkerOptions{Queues: []string{queue}, Concurrency: concurrency, Prefetch: s.prefetch})
	w.Register("bench.noop", func(context.Context, []json.RawMessage, map[string]json.RawMessage) (any, error) {
		return nil, nil
	})
	w.Register("bench.count", func(context.Context, []json.RawMessage, map[string]json.RawMessage) (any, error) {
		done()
		return nil, nil
	})
	ctx, cancel := context.WithCancel(s.ctx)
	ended := make(chan struct{})
	go func() {
		_ = w.Run(ctx)
		close(ended)
	}()
	return func() { cancel(); <-ended }, nil
}

func (s *tasktideSystem) roundTrip(queue string) error {
	h, err := s.client.Submit(s.ctx, "bench.noop", nil, tasktide.WithQueue(queue))
	if err != nil {
		return err
	}
	_, err = h.Get(s.ctx)
	return err
}

func (s *tasktideSystem) close() { _ = s.client.Close() }
