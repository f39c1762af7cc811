package tasktide_test

// These tests run against a real platform: set TASKTIDE_ADDRESS (for example to a `tasktide dev`
// server). TASKTIDE_TEST_PYTHON_QUEUE names a queue served by a Python worker running
// tests.tasks_app:app; the tests that need it skip without it. tests/test_go_client.py sets both.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/tasktide/tasktide/clients/go/tasktide"
)

func dial(t *testing.T) *tasktide.Client {
	t.Helper()
	addr := os.Getenv("TASKTIDE_ADDRESS")
	if addr == "" {
		t.Skip("TASKTIDE_ADDRESS is not set")
	}
	c, err := tasktide.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func pythonQueue(t *testing.T) string {
	t.Helper()
	q := os.Getenv("TASKTIDE_TEST_PYTHON_QUEUE")
	if q == "" {
		t.Skip("TASKTIDE_TEST_PYTHON_QUEUE is not set")
	}
	return q
}

func newQueue(t *testing.T) string {
	t.Helper()
	var b [5]byte
	_, _ = rand.Read(b[:])
	return "go-" + hex.EncodeToString(b[:])
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func asTaskFailed(t *testing.T, err error) *tasktide.TaskFailed {
	t.Helper()
	var tf *tasktide.TaskFailed
	if !errors.As(err, &tf) {
		t.Fatalf("want *TaskFailed, got %T: %v", err, err)
	}
	return tf
}

func TestPythonWorkerRunsGoSubmission(t *testing.T) {
	c := dial(t)
	q := pythonQueue(t)
	ctx := testContext(t)

	h, err := c.Submit(ctx, "t.add", []any{2, 3}, tasktide.WithQueue(q), tasktide.WithPriority(10))
	if err != nil {
		t.Fatal(err)
	}
	if h.ID == "" {
		t.Fatal("no task id")
	}
	sum, err := tasktide.Result[int](ctx, h)
	if err != nil || sum != 5 {
		t.Fatalf("t.add(2, 3) = %v, %v; want 5", sum, err)
	}
	if st, err := h.Status(ctx); err != nil || st != tasktide.StateSucceeded {
		t.Fatalf("status = %v, %v; want SUCCEEDED", st, err)
	}

	echo, err := c.Submit(ctx, "t.echo", []any{map[string]any{"n": 1, "s": "é", "l": []int{1, 2}}}, tasktide.WithQueue(q))
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		N int    `json:"n"`
		S string `json:"s"`
		L []int  `json:"l"`
	}
	if err := echo.GetInto(ctx, &got); err != nil || got.N != 1 || got.S != "é" || len(got.L) != 2 {
		t.Fatalf("t.echo = %+v, %v", got, err)
	}

	boom, err := c.Submit(ctx, "t.boom", []any{"bad input"}, tasktide.WithQueue(q))
	if err != nil {
		t.Fatal(err)
	}
	_, err = boom.Get(ctx)
	tf := asTaskFailed(t, err)
	if tf.Type != "ValueError" || tf.Message != "bad input" || tf.State != tasktide.StateFailed || tf.TaskID != boom.ID {
		t.Fatalf("remote error = %+v", tf)
	}
	if tf.Traceback == "" {
		t.Fatal("the remote traceback is missing")
	}
}

func TestSubmitBatchAndWatch(t *testing.T) {
	c := dial(t)
	q := pythonQueue(t)
	ctx := testContext(t)

	var calls []tasktide.Call
	for i := range 5 {
		calls = append(calls, tasktide.Call{Name: "t.add", Args: []any{i, 100}, Options: []tasktide.SubmitOption{tasktide.WithQueue(q)}})
	}
	handles, err := c.SubmitBatch(ctx, calls...)
	if err != nil {
		t.Fatal(err)
	}
	if len(handles) != 5 {
		t.Fatalf("%d handles", len(handles))
	}
	ids := make([]string, len(handles))
	want := map[string]int{}
	for i, h := range handles {
		ids[i] = h.ID
		want[h.ID] = i + 100
	}
	finals := map[string]*tasktide.Event{}
	for ev, err := range c.Watch(ctx, ids, tasktide.WatchOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		if ev.State.Final() {
			finals[ev.TaskID] = ev
		}
	}
	if len(finals) != 5 {
		t.Fatalf("final events for %d of 5 tasks", len(finals))
	}
	for id, ev := range finals {
		var v int
		if ev.State != tasktide.StateSucceeded || json.Unmarshal(ev.Result, &v) != nil || v != want[id] {
			t.Fatalf("task %s: %v %s, want %d", id, ev.State, ev.Result, want[id])
		}
	}
}

func TestIdempotencyKeyAndUnknownTask(t *testing.T) {
	c := dial(t)
	ctx := testContext(t)
	q := newQueue(t)
	key := "k-" + q
	first, err := c.Submit(ctx, "t.add", []any{1, 1}, tasktide.WithQueue(q), tasktide.WithIdempotencyKey(key), tasktide.WithCountdown(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	second, err := c.Submit(ctx, "t.add", []any{1, 1}, tasktide.WithQueue(q), tasktide.WithIdempotencyKey(key))
	if err != nil {
		t.Fatal(err)
	}
	if second.ID != first.ID || !second.Existing || first.Existing {
		t.Fatalf("same key gave %s (existing %v) then %s (existing %v)", first.ID, first.Existing, second.ID, second.Existing)
	}
	if st, err := first.Status(ctx); err != nil || st != tasktide.StateScheduled {
		t.Fatalf("status of a delayed task = %v, %v; want SCHEDULED", st, err)
	}
	if st, err := first.Cancel(ctx); err != nil || st != tasktide.StateCancelled {
		t.Fatalf("cancel = %v, %v", st, err)
	}
	if st, err := c.Status(ctx, "00000000000000000000000000000000"); err != nil || st != tasktide.StateUnknown {
		t.Fatalf("status of an unknown id = %v, %v", st, err)
	}
	if _, err := c.Submit(ctx, "t.add", []any{1, 1}, tasktide.WithPriority(1000)); !errors.Is(err, tasktide.ErrInvalidArgument) {
		t.Fatalf("priority 1000: want ErrInvalidArgument, got %v", err)
	}
}
