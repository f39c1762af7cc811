package tasktide_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tasktide/tasktide/clients/go/tasktide"
)

// Past ShutdownTimeout the worker gives up a task that ignores its context: its lease is
// released (another worker runs it) and Run returns.
func TestShutdownTimeoutReleasesUnfinishedTasks(t *testing.T) {
	c := dial(t)
	ctx := testContext(t)
	q := newQueue(t)
	started, causes, forever := make(chan struct{}, 1), make(chan error, 1), make(chan struct{})
	defer close(forever)
	first := tasktide.NewWorker(c, tasktide.WorkerOptions{Queues: []string{q}, Concurrency: 1, ShutdownTimeout: 200 * time.Millisecond})
	first.Register("go.stuck", func(ctx context.Context, a args, kw kwargs) (any, error) {
		started <- struct{}{}
		<-ctx.Done()
		causes <- context.Cause(ctx)
		<-forever // ignores its context
		return "first", nil
	})
	stop := startWorker(t, first)
	h, err := c.Submit(ctx, "go.stuck", nil, tasktide.WithQueue(q))
	if err != nil {
		t.Fatal(err)
	}
	<-started
	if err := stop(); err != nil { // returns although the handler never does
		t.Fatalf("Run: %v", err)
	}
	if cause := <-causes; cause == nil || errors.Is(cause, context.Canceled) {
		t.Fatalf("the handler's context ended with %v", cause)
	}
	waitForStats(ctx, t, c, q, 1, 0) // released, not left to expire

	second := tasktide.NewWorker(c, tasktide.WorkerOptions{Queues: []string{q}, Concurrency: 1})
	second.Register("go.stuck", func(ctx context.Context, a args, kw kwargs) (any, error) { return "second", nil })
	startWorker(t, second)
	if v, err := tasktide.Result[string](ctx, h); err != nil || v != "second" {
		t.Fatalf("result %q, %v; want the second worker's", v, err)
	}
}

// Handler contexts derive from BaseContext, and by default carry the values of Run's context.
func TestHandlerContextsDeriveFromRun(t *testing.T) {
	c := dial(t)
	ctx := testContext(t)
	type key struct{}
	for _, tc := range []struct {
		name string
		opts tasktide.WorkerOptions
		run  context.Context
		want string
	}{
		{"run", tasktide.WorkerOptions{}, context.WithValue(context.Background(), key{}, "from Run"), "from Run"},
		{"base", tasktide.WorkerOptions{BaseContext: func() context.Context { return context.WithValue(context.Background(), key{}, "from base") }},
			context.Background(), "from base"},
	} {
		q := newQueue(t)
		tc.opts.Queues = []string{q}
		w := tasktide.NewWorker(c, tc.opts)
		w.Register("go.value", func(ctx context.Context, a args, kw kwargs) (any, error) { return ctx.Value(key{}), nil })
		runCtx, cancel := context.WithCancel(tc.run)
		done := make(chan error, 1)
		go func() { done <- w.Run(runCtx) }()
		h, err := c.Submit(ctx, "go.value", nil, tasktide.WithQueue(q))
		if err != nil {
			t.Fatal(err)
		}
		if v, err := tasktide.Result[string](ctx, h); err != nil || v != tc.want {
			t.Errorf("%s: %q, %v", tc.name, v, err)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}
