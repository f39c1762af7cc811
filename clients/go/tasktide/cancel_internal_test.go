package tasktide

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"
)

// A cancel that arrives after an executor took the task and before the task runs is not lost:
// the task ends CANCELLED instead of running, and nothing about it is left in the worker.
// The executor is held inside that window by holding the worker's registry of tasks (the task's
// function is looked up there) while the cancel comes.
func TestCancelWhileTheTaskIsBeingStarted(t *testing.T) {
	c := platformClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	q := "go-race-" + time.Now().Format("150405.000000")
	w := NewWorker(c, WorkerOptions{Queues: []string{q}, Concurrency: 1})
	w.Register("go.race", func(context.Context, []json.RawMessage, map[string]json.RawMessage) (any, error) { return "ran", nil })
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(runCtx) }()
	defer func() { stop(); <-done }()
	p := waitFor(ctx, t, func() *pool {
		w.mu.RLock()
		defer w.mu.RUnlock()
		if w.pool != nil && w.pool.session.Load() != nil {
			return w.pool
		}
		return nil
	})

	w.mu.Lock() // the executor that takes the task waits for this to look its function up
	h, err := c.Submit(ctx, "go.race", nil, WithQueue(q))
	if err != nil {
		w.mu.Unlock()
		t.Fatal(err)
	}
	waitFor(ctx, t, func() *attempt { // the executor took it
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.running[h.ID]
	})
	if _, err := h.Cancel(ctx); err != nil {
		w.mu.Unlock()
		t.Fatal(err)
	}
	waitFor(ctx, t, func() *struct{} { // the cancel reached the worker
		p.mu.Lock()
		defer p.mu.Unlock()
		if a := p.running[h.ID]; p.cancelPending[h.ID] || (a != nil && errors.Is(context.Cause(a.ctx), errCancelled)) {
			return &struct{}{}
		}
		return nil
	})
	w.mu.Unlock()

	_, err = h.Get(ctx)
	var tf *TaskFailed
	if !errors.As(err, &tf) || tf.State != StateCancelled {
		t.Fatalf("the task ended with %v; want CANCELLED", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.cancelPending) != 0 || len(p.running) != 0 || len(p.held) != 0 {
		t.Fatalf("left in the worker: pending %v, running %v, held %v", p.cancelPending, p.running, p.held)
	}
}

func waitFor[T any](ctx context.Context, t *testing.T, get func() *T) *T {
	t.Helper()
	for {
		if v := get(); v != nil {
			return v
		}
		select {
		case <-ctx.Done():
			t.Fatal("timed out")
		case <-time.After(5 * time.Millisecond):
		}
	}
}
