package tasktide

import (
	"sync"

	pb "github.com/tasktide/tasktide/clients/go/tasktidepb"
)

// progressBox holds the latest progress report of each attempt not yet written. A report is
// superseded by the next one of the same attempt, so while the session cannot take them (none is
// open, or the stream is held up by flow control) a task reporting in a loop neither grows the
// worker's memory nor waits: the box holds one report per attempt that reported, whatever the
// number of reports, and the next session writes the latest ones (before their attempts' outcomes).
type progressBox struct {
	mu     sync.Mutex
	latest map[progressKey]*pb.ProgressReport
	ready  chan struct{} // holds a signal while reports may wait
}

type progressKey struct {
	taskID string
	token  uint64
}

func newProgressBox() *progressBox {
	return &progressBox{latest: map[progressKey]*pb.ProgressReport{}, ready: make(chan struct{}, 1)}
}

func keyOf(r *pb.ProgressReport) progressKey {
	return progressKey{r.GetLease().GetTaskId(), r.GetLease().GetLeaseToken()}
}

// put replaces the report waiting for the same attempt, if any; it never blocks.
func (b *progressBox) put(r *pb.ProgressReport) {
	b.mu.Lock()
	b.latest[keyOf(r)] = r
	b.mu.Unlock()
	select {
	case b.ready <- struct{}{}:
	default:
	}
}

// take empties the box.
func (b *progressBox) take() []*pb.ProgressReport {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.latest) == 0 {
		return nil
	}
	out := make([]*pb.ProgressReport, 0, len(b.latest))
	for k, r := range b.latest {
		out = append(out, r)
		delete(b.latest, k)
	}
	return out
}

// putBack keeps reports a lost session could not write, unless a newer one of the same attempt
// came meanwhile.
func (b *progressBox) putBack(rs []*pb.ProgressReport) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, r := range rs {
		if _, newer := b.latest[keyOf(r)]; !newer {
			b.latest[keyOf(r)] = r
		}
	}
}

func (b *progressBox) len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.latest)
}
