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
type inDoubt struct {
	mu     sync.Mutex
	kept   []keptOutcome
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

// written notes outcomes written on a session.
func (d *inDoubt) written(batch []*pb.Outcome, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, o := range batch {
		d.kept = append(d.kept, keptOutcome{at: now, o: o})
	}
	if extra := len(d.kept) - d.limit; extra > 0 {
		d.kept = append(d.kept[:0:0], d.kept[extra:]...)
	}
}

// take returns the outcomes written within `horizon` (the lease) before now, to send on a new
// session; they stay kept until the horizon passes, so a session lost again sends them again.
func (d *inDoubt) take(horizon time.Duration, now time.Time) []*pb.Outcome {
	d.mu.Lock()
	defer d.mu.Unlock()
	i := 0
	for i < len(d.kept) && now.Sub(d.kept[i].at) > horizon {
		i++
	}
	d.kept = append(d.kept[:0:0], d.kept[i:]...)
	out := make([]*pb.Outcome, len(d.kept))
	d.resent = make(map[leaseKey]bool, len(d.kept))
	for j, k := range d.kept {
		out[j] = k.o
		d.resent[leaseKey{k.o.GetTaskId(), k.o.GetLeaseToken()}] = true
	}
	return out
}

// wasResent tells whether a refusal concerns an outcome sent again (expected when the first one
// was recorded: not worth a warning).
func (d *inDoubt) wasResent(ref *pb.LeaseRef) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.resent[leaseKey{ref.GetTaskId(), ref.GetLeaseToken()}]
}
