package tasktide_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/tasktide/tasktide/clients/go/tasktide"
)

type addArgs struct {
	X     int `json:"x"`
	Y     int `json:"y"`
	Scale int `json:"scale"`
}

func TestTypedHandlers(t *testing.T) {
	c := dial(t)
	ctx := testContext(t)
	q := newQueue(t)
	w := tasktide.NewWorker(c, tasktide.WorkerOptions{Queues: []string{q}, Concurrency: 2})
	w.Register("go.struct", tasktide.Func(func(ctx context.Context, a addArgs) (map[string]int, error) {
		if a.Scale == 0 {
			a.Scale = 1
		}
		return map[string]int{"sum": (a.X + a.Y) * a.Scale}, nil
	}))
	w.Register("go.upper", tasktide.Func(func(ctx context.Context, s string) (string, error) { return strings.ToUpper(s), nil }))
	w.Register("go.join", tasktide.Func2(func(ctx context.Context, parts []string, sep string) (string, error) {
		return strings.Join(parts, sep), nil
	}))
	w.Register("go.three", tasktide.Func3(func(ctx context.Context, a, b int, c float64) (float64, error) { return float64(a+b) * c, nil }))
	startWorker(t, w)

	sum := func(args []any, opts ...tasktide.SubmitOption) (int, error) {
		h, err := c.Submit(ctx, "go.struct", args, append(opts, tasktide.WithQueue(q))...)
		if err != nil {
			t.Fatal(err)
		}
		r, err := tasktide.Result[map[string]int](ctx, h)
		return r["sum"], err
	}
	for _, tc := range []struct {
		args []any
		opts []tasktide.SubmitOption
		want int
	}{
		{[]any{1, 2}, nil, 3},
		{nil, []tasktide.SubmitOption{tasktide.WithKwargs(map[string]any{"x": 1, "y": 2, "scale": 10})}, 30},
		{[]any{1}, []tasktide.SubmitOption{tasktide.WithKwargs(map[string]any{"y": 5})}, 6},
		{[]any{map[string]any{"x": 4, "y": 4}}, nil, 8},
	} {
		if got, err := sum(tc.args, tc.opts...); err != nil || got != tc.want {
			t.Errorf("go.struct %v: %v, %v; want %d", tc.args, got, err, tc.want)
		}
	}
	for _, bad := range []struct {
		args []any
		opts []tasktide.SubmitOption
	}{
		{[]any{1, 2, 3, 4}, nil},
		{[]any{"one", 2}, nil},
		{nil, []tasktide.SubmitOption{tasktide.WithKwargs(map[string]any{"z": 1})}},
		{[]any{1}, []tasktide.SubmitOption{tasktide.WithKwargs(map[string]any{"x": 1})}},
	} {
		_, err := sum(bad.args, bad.opts...)
		var tf *tasktide.TaskFailed
		if !errors.As(err, &tf) || tf.Type != "tasktide.BadArguments" {
			t.Errorf("go.struct %v: want BadArguments, got %v", bad.args, err)
		}
	}
	run := func(name string, args ...any) string {
		h, err := c.Submit(ctx, name, args, tasktide.WithQueue(q))
		if err != nil {
			t.Fatal(err)
		}
		raw, err := h.Get(ctx)
		if err != nil {
			return err.(*tasktide.TaskFailed).Type
		}
		return string(raw)
	}
	if got := run("go.upper", "é-go"); got != `"É-GO"` {
		t.Errorf("go.upper: %s", got)
	}
	if got := run("go.join", []string{"a", "b"}, "+"); got != `"a+b"` {
		t.Errorf("go.join: %s", got)
	}
	if got := run("go.three", 1, 2, 1.5); got != `4.5` {
		t.Errorf("go.three: %s", got)
	}
	if got := run("go.join", "a"); got != "tasktide.BadArguments" {
		t.Errorf("go.join with one argument: %s", got)
	}
}
