package tasktide

import (
	"sync"
	"time"

	pb "github.com/tasktide/tasktide/clients/go/tasktidepb"
)

// maxInDoubt bounds the outcomes kept for sending again, whatever the lease.
const maxInDoubt = 10_000

// inDoubt keeps the outcomes written on a session during the last lease, to send them again on the
// next session when that one is lost. The registry answers an outcome with nothing when all is
// well and records it after reading it, so a registry that dies or freezes after the write (its
// connection still open, the outcome in a socket buffer) loses it, and its task would wait for its
// lease to expire and run again. Sending one twice is harmless: an outcome whose lease has ended is
// refused as stale and nothing is recorded, and a task keeps its first final result. Older outcomes
// are not kept: their leases have expired, and their tasks are delivered again whatever is sent.
//
// Each outcome written costs O(1): the oldest are let go from the front of `kept` by moving `head`,
// and the slice is compacted only once most of it lies before `head`.
type inDoubt struct {
	mu     sync.Mutex
	kept   []keptOutcome // kept[head:] are the outcomes kept, oldest first
	head   int
	resent map[leaseKey]bool
	limit  int
}

type keptOutcome struct {
	at time.Time
	o  *pb.Outcome
}

type leaseKey struct {
	taskID string
	token  uint64
}

func newInDoubt(limit int) *inDoubt { return &inDoubt{resent: map[leaseKey]bool{}, limit: limit} }

// written notes outcomes written on a session whose lease is `horizon`, and lets go of those
// written longer than that before now.
func (d *inDoubt) written(batch []*pb.Outcome, horizon time.Duration, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, o := range batch {
		d.kept = append(d.kept, keptOutcome{at: now, o: o})
	}
	d.forget(horizon, now)
}

// take returns the outcomes written within `horizon` (the lease) before now, to send on a new
// session; they stay kept until the horizon passes, so a session lost again sends them again.
func (d *inDoubt) take(horizon time.Duration, now time.Time) []*pb.Outcome {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.forget(horizon, now)
	live := d.kept[d.head:]
	out := make([]*pb.Outcome, len(live))
	d.resent = make(map[leaseKey]bool, len(live))
	for j, k := range live {
		out[j] = k.o
		d.resent[leaseKey{k.o.GetTaskId(), k.o.GetLeaseToken()}] = true
	}
	return out
}

// forget lets go of the outcomes beyond the limit or older than the horizon (d.mu held).
func (d *inDoubt) forget(horizon time.Duration, now time.Time) {
	for d.head < len(d.kept) && (len(d.kept)-d.head > d.limit || now.Sub(d.kept[d.head].at) > horizon) {
		d.kept[d.head] = keptOutcome{} // the outcome's memory goes with it
		d.head++
	}
	if d.head > 0 && d.head >= len(d.kept)/2 {
		n := copy(d.kept, d.kept[d.head:])
		clear(d.kept[n:])
		d.kept, d.head = d.kept[:n], 0
	}
}

// size is the count of outcomes kept.
func (d *inDoubt) size() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.kept) - d.head
}

// wasResent tells whether a refusal concerns an outcome sent again (expected when the first one
// was recorded: not worth a warning).
func (d *inDoubt) wasResent(ref *pb.LeaseRef) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.resent[leaseKey{ref.GetTaskId(), ref.GetLeaseToken()}]
}
