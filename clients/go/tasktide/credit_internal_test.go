package tasktide

import (
	"fmt"
	"testing"
	"time"

	pb "github.com/tasktide/tasktide/clients/go/tasktidepb"
)

func expectCredit(t *testing.T, what string, got, want int) {
	t.Helper()
	if got != want {
		t.Fatalf("%s: got %d, want %d", what, got, want)
	}
}

func TestCreditWindowFollowsTaskLength(t *testing.T) {
	c := newCreditWindow(4, 0)
	expectCredit(t, "largest window", c.maxWindow(), 4*33)
	expectCredit(t, "first session", c.open(0), 4*4) // three per slot before any task ran
	expectCredit(t, "returned before any task ran", c.returned(4), 4)

	for range 100 {
		c.observe(time.Millisecond) // 50 per slot: capped at 32
	}
	expectCredit(t, "first batch after short tasks", c.returned(4), 4+4*33-4*4)
	expectCredit(t, "window", c.window, 4*33)
	for range 3 {
		expectCredit(t, "batch at the target", c.returned(7), 7)
	}
	expectCredit(t, "window", c.window, 4*33)

	for range 100 {
		c.observe(time.Second)
	}
	// Grants are withheld until the window has shrunk to four per slot.
	for i := range (4*33 - 4*4) / 4 {
		expectCredit(t, "withheld", c.returned(4), 0)
		expectCredit(t, "shrinking window", c.window, 4*33-4*(i+1))
	}
	expectCredit(t, "back at the target", c.returned(4), 4)
	expectCredit(t, "window", c.window, 4*4)
}

func TestCreditWindowMovingAverage(t *testing.T) {
	c := newCreditWindow(2, 0)
	c.observe(7 * time.Millisecond) // the first duration is the average: 50/7 = 7 per slot
	expectCredit(t, "open", c.open(0), 2*8)
	c.observe(7 * time.Millisecond)
	c.observe(87 * time.Millisecond) // average 7 + 0.05 * 80 = 11 ms: 4 per slot
	expectCredit(t, "returned", c.returned(3), 0)
	expectCredit(t, "window", c.window, 13)
	c.observe(time.Microsecond) // 11 - 0.05 * 11 = 10.45 ms: still 4 per slot
	expectCredit(t, "returned", c.returned(3), 0)
	expectCredit(t, "window", c.window, 2*5)
	expectCredit(t, "returned", c.returned(3), 3)
	c.observe(0) // 9.93 ms: 5 per slot
	expectCredit(t, "returned", c.returned(3), 3+2)
	expectCredit(t, "window", c.window, 2*6)
}

func TestCreditWindowFixedPrefetch(t *testing.T) {
	c := newCreditWindow(4, 10)
	expectCredit(t, "largest window", c.maxWindow(), 14)
	expectCredit(t, "open", c.open(0), 14)
	for range 50 {
		c.observe(time.Millisecond)
	}
	expectCredit(t, "returned after short tasks", c.returned(5), 5)
	for range 50 {
		c.observe(time.Second)
	}
	expectCredit(t, "returned after long tasks", c.returned(5), 5)
	expectCredit(t, "window", c.window, 14)
	expectCredit(t, "reopened with 6 in hand", c.open(6), 8)
}

func TestCreditWindowOpenBeyondTarget(t *testing.T) {
	c := newCreditWindow(4, 0)
	for range 10 {
		c.observe(time.Millisecond)
	}
	expectCredit(t, "open at 32 per slot", c.open(0), 4*33)
	c.observe(time.Second) // average 51 ms: 3 per slot
	// A new session with more in hand than the target grants nothing; outcomes shrink it back.
	expectCredit(t, "open beyond the target", c.open(20), 0)
	expectCredit(t, "window", c.window, 20)
	expectCredit(t, "returned", c.returned(3), 0)
	expectCredit(t, "returned", c.returned(3), 2)
	expectCredit(t, "window", c.window, 4*4)
	expectCredit(t, "open within the target", c.open(10), 6)
}

func TestCreditPoolSizedForLargestWindow(t *testing.T) {
	// room for the largest window of the largest size a Resize can ask (maxConcurrency)
	for _, tc := range []struct{ concurrency, prefetch, capacity int }{{4, 0, 1024 * 33}, {3, 5, 1024 + 5}, {2000, 5, 2005}} {
		p := newPool(tc.concurrency, tc.prefetch)
		expectCredit(t, "capacity", p.capacity, tc.capacity)
		expectCredit(t, "ready", cap(p.ready), tc.capacity)
		expectCredit(t, "outcomes", cap(p.outcomes), tc.capacity)
	}

	p := newPool(2, 0) // 8 at first; at most 33,792 held (the largest window at 1,024 at a time)
	assign := func(id string) *pb.Assignment {
		return &pb.Assignment{Task: &pb.Task{Id: id, Spec: &pb.TaskSpec{Queue: "q"}}, LeaseToken: 1}
	}
	for i := range 5 {
		if !p.hold(assign(string(rune('a' + i)))) {
			t.Fatalf("hold %d refused", i)
		}
	}
	expectCredit(t, "credit with 5 held", p.freeCredit(), 8-5)
	for i := 5; i < 66; i++ {
		if !p.hold(assign(string(rune('a' + i)))) {
			t.Fatalf("hold %d refused", i)
		}
	}
	expectCredit(t, "credit with 66 held", p.freeCredit(), 0)
	expectCredit(t, "window", p.credit.window, 66)
	for i := 66; i < p.capacity; i++ {
		if !p.hold(assign(fmt.Sprint("held-", i))) {
			t.Fatalf("hold %d refused", i)
		}
	}
	if p.hold(assign("beyond")) {
		t.Fatal("hold beyond the largest window was accepted")
	}
}
