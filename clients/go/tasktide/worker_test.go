package tasktide_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tasktide/tasktide/clients/go/tasktide"
	pb "github.com/tasktide/tasktide/clients/go/tasktidepb"
)

type args = []json.RawMessage
type kwargs = map[string]json.RawMessage

// startWorker runs w until the test ends (or stop is called) and reports Run's error.
func startWorker(t *testing.T, w *tasktide.Worker) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(20 * time.Second):
				err = errors.New("the worker did not drain")
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

func TestGoWorker(t *testing.T) {
	c := dial(t)
	ctx := testContext(t)
	q := newQueue(t)
	w := tasktide.NewWorker(c, tasktide.WorkerOptions{Queues: []string{q}, Concurrency: 2})
	w.Register("go.add", func(ctx context.Context, a args, kw kwargs) (any, error) {
		var x, y int
		if err := tasktide.DecodeArgs(a, &x, &y); err != nil {
			return nil, err
		}
		return x + y, nil
	})
	w.Register("go.kwargs", func(ctx context.Context, a args, kw kwargs) (any, error) {
		info, _ := tasktide.TaskInfoFrom(ctx)
		return map[string]any{"name": kw["name"], "task": info.Name, "attempt": info.Attempt, "queue": info.Queue}, nil
	})
	w.Register("go.fail", func(ctx context.Context, a args, kw kwargs) (any, error) {
		return nil, tasktide.NewError("go.Refused", "not today")
	})
	w.Register("go.plain", func(ctx context.Context, a args, kw kwargs) (any, error) {
		return nil, fmt.Errorf("wrapped: %w", errors.New("plain"))
	})
	w.Register("go.panic", func(ctx context.Context, a args, kw kwargs) (any, error) {
		var m map[string]int
		m["x"] = 1 // panics: assignment to a nil map
		return nil, nil
	})
	w.Register("go.retry", func(ctx context.Context, a args, kw kwargs) (any, error) {
		info, _ := tasktide.TaskInfoFrom(ctx)
		if info.Attempt < 2 {
			return nil, tasktide.Retry(0, errors.New("not yet"))
		}
		return info.Attempt, nil
	}, tasktide.MaxRetries(3, 0))
	w.Register("go.always_retry", func(ctx context.Context, a args, kw kwargs) (any, error) {
		return nil, tasktide.Retry(0, tasktide.NewError("go.Flaky", "never works"))
	}, tasktide.MaxRetries(1, 0))
	stop := startWorker(t, w)

	h, err := c.Submit(ctx, "go.add", []any{2, 3}, tasktide.WithQueue(q))
	if err != nil {
		t.Fatal(err)
	}
	if sum, err := tasktide.Result[int](ctx, h); err != nil || sum != 5 {
		t.Fatalf("go.add(2, 3) = %v, %v", sum, err)
	}

	h, err = c.Submit(ctx, "go.kwargs", nil, tasktide.WithQueue(q), tasktide.WithKwargs(map[string]any{"name": "ada"}))
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := h.GetInto(ctx, &got); err != nil || got["name"] != "ada" || got["task"] != "go.kwargs" || got["queue"] != q {
		t.Fatalf("go.kwargs = %v, %v", got, err)
	}

	cases := []struct{ name, typ, msg string }{
		{"go.fail", "go.Refused", "not today"},
		{"go.plain", "fmt.wrapError", "wrapped: plain"},
		{"go.panic", "runtime.plainError", "assignment to entry in nil map"},
		{"go.always_retry", "go.Flaky", "never works"},
		{"go.missing", "tasktide.UnknownTask", fmt.Sprintf("no task named %q is registered on worker %s", "go.missing", w.ID())},
	}
	for _, tc := range cases {
		h, err := c.Submit(ctx, tc.name, nil, tasktide.WithQueue(q))
		if err != nil {
			t.Fatal(err)
		}
		_, err = h.Get(ctx)
		tf := asTaskFailed(t, err)
		if tf.Type != tc.typ || tf.Message != tc.msg {
			t.Errorf("%s: got %s: %q; want %s: %q", tc.name, tf.Type, tf.Message, tc.typ, tc.msg)
		}
		if tc.name == "go.panic" && tf.Traceback == "" {
			t.Errorf("go.panic: no stack trace")
		}
	}

	h, err = c.Submit(ctx, "go.retry", nil, tasktide.WithQueue(q))
	if err != nil {
		t.Fatal(err)
	}
	if n, err := tasktide.Result[int](ctx, h); err != nil || n != 2 {
		t.Fatalf("go.retry = %v, %v; want success on attempt 2", n, err)
	}

	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func TestGoWorkerCancelsRunningTask(t *testing.T) {
	c := dial(t)
	ctx := testContext(t)
	q := newQueue(t)
	started := make(chan string, 1)
	w := tasktide.NewWorker(c, tasktide.WorkerOptions{Queues: []string{q}, Concurrency: 1})
	w.Register("go.wait", func(ctx context.Context, a args, kw kwargs) (any, error) {
		info, _ := tasktide.TaskInfoFrom(ctx)
		started <- info.ID
		<-ctx.Done()
		return nil, context.Cause(ctx)
	})
	startWorker(t, w)
	h, err := c.Submit(ctx, "go.wait", nil, tasktide.WithQueue(q))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case id := <-started:
		if id != h.ID {
			t.Fatalf("started %s, submitted %s", id, h.ID)
		}
	case <-ctx.Done():
		t.Fatal("the task never started")
	}
	if _, err := h.Cancel(ctx); err != nil {
		t.Fatal(err)
	}
	_, err = h.Get(ctx)
	if tf := asTaskFailed(t, err); tf.State != tasktide.StateCancelled || tf.Type != "tasktide.Cancelled" {
		t.Fatalf("cancelled task: %+v", tf)
	}
}

func TestGoWorkerEndsWhenTheRegistryDrainsIt(t *testing.T) {
	c := dial(t)
	ctx := testContext(t)
	q := newQueue(t)
	id := "go-drained-" + q
	w := tasktide.NewWorker(c, tasktide.WorkerOptions{Queues: []string{q}, Concurrency: 1, WorkerID: id})
	w.Register("go.add", func(ctx context.Context, a args, kw kwargs) (any, error) { return 0, nil })
	done := make(chan error, 1)
	go func() { done <- w.Run(context.Background()) }()
	for { // until its session is known
		n, err := c.DrainWorker(ctx, id)
		if err == nil {
			if n != 1 {
				t.Fatalf("sessions asked to drain: %d", n)
			}
			break
		}
		if !errors.Is(err, tasktide.ErrNotFound) || ctx.Err() != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the worker did not end after the registry asked it to drain")
	}
}

func TestGoWorkerDrainReleasesTasksNotStarted(t *testing.T) {
	c := dial(t)
	ctx := testContext(t)
	q := newQueue(t)
	calls := make([]tasktide.Call, 3)
	for i := range calls {
		calls[i] = tasktide.Call{Name: "go.gate", Args: []any{i}, Options: []tasktide.SubmitOption{tasktide.WithQueue(q)}}
	}
	handles, err := c.SubmitBatch(ctx, calls...)
	if err != nil {
		t.Fatal(err)
	}

	started, finish := make(chan struct{}, 3), make(chan struct{})
	// Credit for exactly the three tasks, so the registry has none left to send them again.
	first := tasktide.NewWorker(c, tasktide.WorkerOptions{Queues: []string{q}, Concurrency: 1, Prefetch: 2})
	first.Register("go.gate", func(ctx context.Context, a args, kw kwargs) (any, error) {
		started <- struct{}{}
		<-finish
		return "first", nil
	})
	stopFirst := startWorker(t, first)
	select {
	case <-started:
	case <-ctx.Done():
		t.Fatal("no task started")
	}
	waitForStats(ctx, t, c, q, 0, 3) // all three delivered: one running, two held
	drained := make(chan error, 1)
	go func() { drained <- stopFirst() }()
	waitForStats(ctx, t, c, q, 2, 1) // the two not started were released; one still runs
	close(finish)                    // the running task completes during the drain
	if err := <-drained; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if len(started) != 0 {
		t.Fatal("a second task started while draining")
	}
	if ready, leased := queueStat(ctx, t, c, q); ready != 2 || leased != 0 {
		t.Fatalf("after the drain: ready %d, leased %d; want 2 and 0", ready, leased)
	}

	second := tasktide.NewWorker(c, tasktide.WorkerOptions{Queues: []string{q}, Concurrency: 2})
	second.Register("go.gate", func(ctx context.Context, a args, kw kwargs) (any, error) { return "second", nil })
	startWorker(t, second)
	counts := map[string]int{}
	for _, h := range handles {
		v, err := tasktide.Result[string](ctx, h)
		if err != nil {
			t.Fatal(err)
		}
		counts[v]++
	}
	if counts["first"] != 1 || counts["second"] != 2 {
		t.Fatalf("results by worker: %v", counts)
	}
}

func queueStat(ctx context.Context, t *testing.T, c *tasktide.Client, q string) (ready, leased uint64) {
	t.Helper()
	stats, err := c.RegistryService().QueueStats(ctx, &pb.QueueStatsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range stats.GetQueues() {
		if s.GetQueue() == q {
			return s.GetReady(), s.GetLeased()
		}
	}
	return 0, 0
}

// waitForStats polls the queue's counts until they are as wanted (or the test's context ends).
func waitForStats(ctx context.Context, t *testing.T, c *tasktide.Client, q string, ready, leased uint64) {
	t.Helper()
	for {
		r, l := queueStat(ctx, t, c, q)
		if r == ready && l == leased {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("queue %s: ready %d, leased %d; waited for %d and %d", q, r, l, ready, leased)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func TestGoWorkerReportsProgress(t *testing.T) {
	c := dial(t)
	ctx := testContext(t)
	q := newQueue(t)
	w := tasktide.NewWorker(c, tasktide.WorkerOptions{Queues: []string{q}, Concurrency: 1})
	w.Register("go.steps", func(ctx context.Context, a args, kw kwargs) (any, error) {
		tasktide.Progress(ctx, 0.5, "halfway")
		return "done", nil
	})
	startWorker(t, w)
	h, err := c.Submit(ctx, "go.steps", nil, tasktide.WithQueue(q))
	if err != nil {
		t.Fatal(err)
	}
	var progress []*tasktide.Event
	var final *tasktide.Event
	for ev, err := range c.Watch(ctx, []string{h.ID}, tasktide.WatchOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		if ev.ProgressOnly {
			progress = append(progress, ev)
		} else if ev.State.Final() {
			final = ev
		}
	}
	if len(progress) != 1 || progress[0].Progress != 0.5 || progress[0].Message != "halfway" {
		t.Fatalf("progress events: %+v", progress)
	}
	if final == nil || final.State != tasktide.StateSucceeded || string(final.Result) != `"done"` || final.WorkerID != w.ID() {
		t.Fatalf("final event: %+v", final)
	}
}

func TestGoWorkerGrowsAndShrinksWhenTheRegistryResizesIt(t *testing.T) {
	c := dial(t)
	ctx := testContext(t)
	q := newQueue(t)
	id := "go-resized-" + q
	var running, most atomic.Int32
	release := make(chan struct{})
	w := tasktide.NewWorker(c, tasktide.WorkerOptions{Queues: []string{q}, Concurrency: 1, Prefetch: 1, WorkerID: id})
	w.Register("go.held", func(ctx context.Context, a args, kw kwargs) (any, error) {
		n := running.Add(1)
		defer running.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		<-release
		return 0, nil
	})
	startWorker(t, w)
	var handles []*tasktide.Handle
	for range 6 {
		h, err := c.Submit(ctx, "go.held", nil, tasktide.WithQueue(q))
		if err != nil {
			t.Fatal(err)
		}
		handles = append(handles, h)
	}
	steady := func(n int32) {
		t.Helper()
		for running.Load() < n && ctx.Err() == nil {
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(500 * time.Millisecond)
		if r := running.Load(); r != n {
			t.Fatalf("running %d at a time, want %d", r, n)
		}
	}
	steady(1)
	if w.Concurrency() != 1 {
		t.Fatalf("Concurrency() = %d before any Resize", w.Concurrency())
	}
	if n, err := c.ResizeWorker(ctx, id, 3); err != nil || n != 1 {
		t.Fatalf("ResizeWorker to 3: %d sessions, %v", n, err)
	}
	steady(3) // grown: three at a time, no more
	if n, err := c.ResizeWorker(ctx, id, 1); err != nil || n != 1 {
		t.Fatalf("ResizeWorker to 1: %d sessions, %v", n, err)
	}
	for w.Concurrency() != 1 && ctx.Err() == nil { // the Resize reaches the worker
		time.Sleep(10 * time.Millisecond)
	}
	most.Store(0)
	close(release) // the three running end; the three left run one at a time
	for _, h := range handles {
		if _, err := h.Get(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if m := most.Load(); m != 1 {
		t.Fatalf("after shrinking to 1, %d ran at once", m)
	}
	if _, err := c.ResizeWorker(ctx, "no-such-worker", 2); !errors.Is(err, tasktide.ErrNotFound) {
		t.Fatalf("ResizeWorker of no worker: %v", err)
	}
	if _, err := c.ResizeWorker(ctx, id, 0); err == nil {
		t.Fatal("ResizeWorker to 0 was not refused")
	}
}
