package tasktide_test

import (
	"errors"
	"testing"
	"time"

	"github.com/tasktide/tasktide/clients/go/tasktide"
)

func TestListTasksByQueueAndState(t *testing.T) {
	c := dial(t)
	ctx := testContext(t)
	q := newQueue(t)
	var ids []string
	for i := 0; i < 3; i++ {
		h, err := c.Submit(ctx, "t.add", []any{i, i}, tasktide.WithQueue(q), tasktide.WithCountdown(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.Cancel(ctx); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, h.ID)
	}
	var got []string
	cursor := ""
	for deadline := time.Now().Add(20 * time.Second); ; {
		got, cursor = nil, ""
		for { // page by two: the cursor resumes where the page ended
			page, err := c.ListTasks(ctx, tasktide.ListOptions{
				States: []tasktide.State{tasktide.StateCancelled}, Queue: q, Limit: 2, Cursor: cursor,
			})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range page.GetTasks() {
				got = append(got, r.GetTaskId())
			}
			if cursor = page.GetNextCursor(); cursor == "" {
				break
			}
		}
		if len(got) == len(ids) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Newest first: the last cancelled comes first.
	if len(got) != 3 || got[0] != ids[2] || got[1] != ids[1] || got[2] != ids[0] {
		t.Fatalf("listed %v, want %v reversed", got, ids)
	}
	if _, err := c.ListTasks(ctx, tasktide.ListOptions{Cursor: "not a cursor!"}); !errors.Is(err, tasktide.ErrInvalidArgument) {
		t.Fatalf("bad cursor: want ErrInvalidArgument, got %v", err)
	}
}
