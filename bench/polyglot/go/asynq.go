package main

import (
	"context"
	"errors"
	"time"

	"github.com/hibiken/asynq"
)

type asynqSystem struct {
	opt       asynq.RedisClientOpt
	client    *asynq.Client
	inspector *asynq.Inspector
}

func newAsynq(addr string, db int) *asynqSystem {
	opt := asynq.RedisClientOpt{Addr: addr, DB: db}
	return &asynqSystem{opt: opt, client: asynq.NewClient(opt), inspector: asynq.NewInspector(opt)}
}

func (s *asynqSystem) submitOne(queue string) error {
	_, err := s.client.Enqueue(asynq.NewTask("bench.noop", nil), asynq.Queue(queue))
	return err
}

// submitMany: Asynq has no batch call; 16 goroutines enqueue at once.
func (s *asynqSystem) submitMany(queue, name string, n int) error {
	return parallel(16, n, func() error {
		_, err := s.client.Enqueue(asynq.NewTask(name, nil), asynq.Queue(queue))
		return err
	})
}

func (s *asynqSystem) startWorker(queue string, concurrency int, done func()) (func(), error) {
	srv := asynq.NewServer(s.opt, asynq.Config{
		Concurrency:       concurrency,
		Queues:            map[string]int{queue: 1},
		TaskCheckInterval: time.Millisecond, // its fastest pickup of a task on an idle queue
		LogLevel:          asynq.WarnLevel,
	})
	mux := asynq.NewServeMux()
	mux.HandleFunc("bench.noop", func(context.Context, *asynq.Task) error { return nil })
	mux.HandleFunc("bench.count", func(context.Context, *asynq.Task) error {
		done()
		return nil
	})
	if err := srv.Start(mux); err != nil {
		return nil, err
	}
	return srv.Shutdown, nil
}

// roundTrip enqueues a task kept after it completes and polls its state until it has.
func (s *asynqSystem) roundTrip(queue string) error {
	info, err := s.client.Enqueue(asynq.NewTask("bench.noop", nil), asynq.Queue(queue), asynq.Retention(time.Minute))
	if err != nil {
		return err
	}
	for {
		t, err := s.inspector.GetTaskInfo(queue, info.ID)
		if err != nil && !errors.Is(err, asynq.ErrTaskNotFound) {
			return err
		}
		if t != nil && t.State == asynq.TaskStateCompleted {
			return nil
		}
		time.Sleep(250 * time.Microsecond)
	}
}

func (s *asynqSystem) close() {
	_ = s.client.Close()
	_ = s.inspector.Close()
}
