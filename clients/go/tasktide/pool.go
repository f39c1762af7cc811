package tasktide

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	pb "github.com/tasktide/tasktide/clients/go/tasktidepb"
)

// pool is what a worker holds across sessions. The registry checks a lease by its token, not by
// the session it was given on, so when a session is lost the tasks running go on, their outcomes
// wait here and are sent on the next session, which is granted only the credit not taken by
// them: a registry restart neither runs a task twice nor runs more than Concurrency at once.
type pool struct {
	credit   *creditWindow           // the credit granted, and what it moves toward
	capacity int                     // the largest credit window: leases held at most, at any size
	gate     *gate                   // executors taking assignments at a time (Resize changes it)
	ready    chan *pb.Assignment     // assignments not started yet
	outcomes chan *pb.Outcome        // finished attempts not sent yet
	stopExec chan struct{}           // closed on drain: executors take nothing new
	execs    sync.WaitGroup          // the executors
	stopping atomic.Bool             // draining: outcomes return no credit
	session  atomic.Pointer[session] // the session messages go out on; nil while reconnecting

	mu            sync.Mutex
	executors     int                     // executors started: the largest size the pool had
	held          map[string]*pb.LeaseRef // every lease held: waiting, running, or its outcome unsent
	running       map[string]*attempt
	cancelPending map[string]bool // cancelled while waiting: never started
	unsent        []*pb.Outcome   // a batch whose send failed when a session was lost
	progress      *progressBox    // the latest progress of each attempt, not yet written
	doubt         *inDoubt        // outcomes written during the last lease, sent again after a lost session
	stopOnce      sync.Once
}

func newPool(concurrency, prefetch int) *pool {
	credit := newCreditWindow(concurrency, prefetch)
	// room for the window of the largest size a Resize can ask
	capacity := newCreditWindow(max(concurrency, maxConcurrency), prefetch).maxWindow()
	return &pool{
		credit:   credit,
		capacity: capacity,
		gate:     newGate(concurrency),
		ready:    make(chan *pb.Assignment, capacity),
		outcomes: make(chan *pb.Outcome, capacity),
		stopExec: make(chan struct{}),
		progress: newProgressBox(),
		doubt:    newInDoubt(maxInDoubt),
		held:     map[string]*pb.LeaseRef{}, running: map[string]*attempt{}, cancelPending: map[string]bool{},
	}
}

// freeCredit is the credit a new session may grant: what the leases still held (waiting,
// running, or their outcomes unsent) leave free of the window's target; none beyond it.
func (p *pool) freeCredit() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.credit.open(len(p.held))
}

// hold records an assignment; false when the pool is full (the registry sent more than granted).
func (p *pool) hold(a *pb.Assignment) bool {
	ref := leaseOf(a)
	p.mu.Lock()
	p.held[ref.TaskId] = ref
	p.mu.Unlock()
	select {
	case p.ready <- a:
		return true
	default:
	}
	p.mu.Lock()
	delete(p.held, ref.TaskId)
	p.mu.Unlock()
	return false
}

// begin marks a task running, unless a cancel came while it waited: checked and marked under one
// lock, so a cancel arriving meanwhile finds it either pending or running, never neither.
func (p *pool) begin(taskID string, att *attempt) (cancelled bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cancelPending[taskID] {
		delete(p.cancelPending, taskID)
		return true
	}
	p.running[taskID] = att
	return false
}

// end forgets a finished attempt (not a later delivery of the same task that replaced it).
func (p *pool) end(taskID string, att *attempt) {
	p.mu.Lock()
	if p.running[taskID] == att {
		delete(p.running, taskID)
	}
	p.mu.Unlock()
}

// cancelTask signals a running task; one still waiting is marked so that it never starts.
func (p *pool) cancelTask(taskID string, grace float64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if a, ok := p.running[taskID]; ok {
		a.signal(time.Duration(grace * float64(time.Second)))
	} else if _, ok := p.held[taskID]; ok {
		p.cancelPending[taskID] = true
	}
}

// settled forgets the leases of outcomes the registry was sent.
func (p *pool) settled(batch []*pb.Outcome) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, o := range batch {
		// A lease that expired while the worker was cut off may have been delivered again, here:
		// the new lease stays held.
		if ref, ok := p.held[o.GetTaskId()]; ok && ref.GetLeaseToken() == o.GetLeaseToken() {
			delete(p.held, o.GetTaskId())
			delete(p.cancelPending, o.GetTaskId())
		}
	}
}

// leases are the leases to extend with a heartbeat.
func (p *pool) leases() []*pb.LeaseRef {
	p.mu.Lock()
	defer p.mu.Unlock()
	refs := make([]*pb.LeaseRef, 0, len(p.held))
	for _, ref := range p.held {
		refs = append(refs, ref)
	}
	return refs
}

// takeReady empties the assignments not started; their leases are forgotten.
func (p *pool) takeReady() []*pb.LeaseRef {
	var refs []*pb.LeaseRef
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		select {
		case a := <-p.ready:
			ref := leaseOf(a)
			delete(p.held, ref.TaskId)
			delete(p.cancelPending, ref.TaskId)
			refs = append(refs, ref)
		default:
			return refs
		}
	}
}

// abandon gives up the running tasks (the shutdown limit passed): their contexts end, their
// outcomes will not be sent, and their leases are returned for release.
func (p *pool) abandon(cause error) []*pb.LeaseRef {
	p.mu.Lock()
	defer p.mu.Unlock()
	var refs []*pb.LeaseRef
	for id, a := range p.running {
		a.abandon(cause)
		if ref, ok := p.held[id]; ok {
			refs = append(refs, ref)
			delete(p.held, id)
		}
		delete(p.running, id)
	}
	return refs
}

// takeUnsent gives the batch a lost session could not send, to send first.
func (p *pool) takeUnsent() []*pb.Outcome {
	p.mu.Lock()
	defer p.mu.Unlock()
	b := p.unsent
	p.unsent = nil
	return b
}

func (p *pool) keepUnsent(batch []*pb.Outcome) {
	p.mu.Lock()
	p.unsent = append(p.unsent, batch...)
	p.mu.Unlock()
}

// stop closes stopExec and the gate once.
func (p *pool) stop() {
	p.stopOnce.Do(func() {
		close(p.stopExec)
		p.gate.close()
	})
}

// waitExecs waits for the executors; false when limit (> 0) passed first.
func (p *pool) waitExecs(ctx context.Context, limit time.Duration) bool {
	done := make(chan struct{})
	go func() { p.execs.Wait(); close(done) }()
	var timeout <-chan time.Time
	if limit > 0 {
		t := time.NewTimer(limit)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-done:
		return true
	case <-timeout:
		return false
	case <-ctx.Done():
		return false
	}
}

// waiting counts what waits to be written: progress reports (one per attempt at most), outcomes
// and the current session's queued messages.
func (p *pool) waiting() int {
	n := p.progress.len() + len(p.outcomes)
	p.mu.Lock()
	n += len(p.unsent)
	p.mu.Unlock()
	if s := p.session.Load(); s != nil {
		n += len(s.out)
	}
	return n
}

// send queues a message on the current session; false when there is none.
func (p *pool) send(m *pb.WorkerMessage) bool {
	if s := p.session.Load(); s != nil {
		return s.send(m)
	}
	return false
}
