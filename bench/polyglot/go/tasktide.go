package main

import (
	"context"
	"encoding/json"
	"sync"

	"github.com/tasktide/tasktide/clients/go/tasktide"
)

const (
	batch    = 1000 // tasks per SubmitBatch call
	inFlight = 4    // SubmitBatch calls at once
)

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
	// Calls of `batch` tasks, up to `inFlight` at once: the scheduler admits one call while
	// Redis writes another (Asynq's bulk row enqueues from 16 goroutines).
	errs := make(chan error, (n+batch-1)/batch)
	slots := make(chan struct{}, inFlight)
	var wg sync.WaitGroup
	for sent := 0; sent < n; sent += batch {
		calls := make([]tasktide.Call, 0, min(batch, n-sent))
		for i := sent; i < n && len(calls) < batch; i++ {
			calls = append(calls, tasktide.Call{Name: name, Options: []tasktide.SubmitOption{tasktide.WithQueue(queue)}})
		}
		slots <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-slots; wg.Done() }()
			if _, err := s.client.SubmitBatch(s.ctx, calls...); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs // nil when every call succeeded
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
