package tasktide

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	pb "github.com/tasktide/tasktide/clients/go/tasktidepb"
)

// drainQuiet is how long a draining session waits for assignments it may still be sent.
const drainQuiet = 100 * time.Millisecond

// session is one Session stream and what the worker holds on it.
type session struct {
	w        *Worker
	stream   pb.Registry_SessionClient
	ready    chan *pb.Assignment    // assignments not started yet
	outcomes chan *pb.Outcome       // finished attempts, batched by the writer
	out      chan *pb.WorkerMessage // every other message to the registry
	dead     chan struct{}          // closed when the stream is lost
	stopExec chan struct{}          // closed on drain: executors take nothing new
	drainReq chan struct{}          // the registry asked for a drain
	closeReq chan struct{}          // closed when the writer may finish
	assigned chan struct{}          // a signal per assignment batch received
	lease    atomic.Int64           // lease length in nanoseconds
	stopping atomic.Bool
	granted  atomic.Int64 // credit granted so far
	received atomic.Int64 // assignments received so far

	mu            sync.Mutex
	held          map[string]*pb.LeaseRef
	running       map[string]*attempt
	cancelPending map[string]bool
	deadOnce      sync.Once
	drainOnce     sync.Once
}

// session runs one stream; stopped is true when the worker drained and should not reconnect.
func (w *Worker) session(ctx context.Context) (stopped bool, err error) {
	streamCtx, cancelStream := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelStream()
	stream, err := w.client.registry.Session(streamCtx)
	if err != nil {
		return false, err
	}
	unhook := context.AfterFunc(ctx, cancelStream) // ctx ending during the handshake aborts it
	welcome, err := w.handshake(stream)
	if !unhook() || err != nil {
		if ctx.Err() != nil {
			return true, nil // stopped before any task was taken
		}
		return false, err
	}
	credit := w.opts.Concurrency + w.opts.Prefetch
	s := &session{
		w: w, stream: stream,
		ready:    make(chan *pb.Assignment, credit),
		outcomes: make(chan *pb.Outcome, credit),
		out:      make(chan *pb.WorkerMessage, 64),
		dead:     make(chan struct{}),
		stopExec: make(chan struct{}),
		drainReq: make(chan struct{}),
		closeReq: make(chan struct{}),
		assigned: make(chan struct{}, 1),
		held:     map[string]*pb.LeaseRef{}, running: map[string]*attempt{}, cancelPending: map[string]bool{},
	}
	s.setLease(welcome.GetLeaseSeconds())
	if err := stream.Send(&pb.WorkerMessage{Kind: &pb.WorkerMessage_Credit{Credit: uint32(credit)}}); err != nil {
		return false, err
	}
	s.granted.Add(int64(credit))
	readErr, writeErr := make(chan error, 1), make(chan error, 1)
	go func() { readErr <- s.read() }()
	go func() { writeErr <- s.write() }()
	hbDone := make(chan struct{})
	go s.heartbeat(hbDone)
	var execs sync.WaitGroup
	for range w.opts.Concurrency {
		execs.Add(1)
		go func() { defer execs.Done(); s.execute() }()
	}
	select {
	case <-ctx.Done():
	case <-s.drainReq:
	case err = <-readErr:
		s.abort(cancelStream)
		return false, sessionError(err)
	case err = <-writeErr:
		s.abort(cancelStream)
		return false, sessionError(err)
	}
	return true, s.drain(&execs, hbDone, readErr, writeErr, cancelStream)
}

func sessionError(err error) error {
	if err == nil || errors.Is(err, io.EOF) {
		return errors.New("the registry closed the session")
	}
	return err
}

func (w *Worker) handshake(stream pb.Registry_SessionClient) (*pb.Welcome, error) {
	host, _ := os.Hostname()
	hello := &pb.Hello{
		WorkerId: w.opts.WorkerID, Hostname: host, Pid: uint32(os.Getpid()), Queues: w.opts.Queues,
		TaskNames: w.taskNames(), Concurrency: uint32(w.opts.Concurrency), Language: "go",
	}
	if err := stream.Send(&pb.WorkerMessage{Kind: &pb.WorkerMessage_Hello{Hello: hello}}); err != nil {
		return nil, err
	}
	msg, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	if msg.GetWelcome() == nil {
		return nil, errors.New("the registry did not welcome this worker")
	}
	return msg.GetWelcome(), nil
}

func (s *session) setLease(seconds float64) {
	if seconds <= 0 {
		seconds = 30
	}
	s.lease.Store(int64(seconds * float64(time.Second)))
}

// abort ends a lost session: running tasks are told through their context and their outcomes
// dropped; their leases expire on the registry and the tasks are delivered again.
func (s *session) abort(cancelStream context.CancelFunc) {
	s.deadOnce.Do(func() { close(s.dead) })
	cancelStream()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range s.running {
		a.cancel(errSessionLost)
	}
}

// send queues a message for the writer; false when the session is lost.
func (s *session) send(m *pb.WorkerMessage) bool {
	select {
	case s.out <- m:
		return true
	case <-s.dead:
		return false
	}
}

// read handles the registry's messages until the stream ends.
func (s *session) read() error {
	for {
		msg, err := s.stream.Recv()
		if err != nil {
			return err
		}
		switch k := msg.GetKind().(type) {
		case *pb.RegistryMessage_Assignments:
			s.received.Add(int64(len(k.Assignments.GetAssignments())))
			for _, a := range k.Assignments.GetAssignments() {
				s.take(a)
			}
			select {
			case s.assigned <- struct{}{}:
			default:
			}
		case *pb.RegistryMessage_Welcome:
			s.setLease(k.Welcome.GetLeaseSeconds())
		case *pb.RegistryMessage_Cancel:
			s.cancelTask(k.Cancel.GetTaskId(), k.Cancel.GetGraceSeconds())
		case *pb.RegistryMessage_Drain:
			s.drainOnce.Do(func() { close(s.drainReq) })
		case *pb.RegistryMessage_Rejected:
			s.w.log.Warn("tasktide: lease rejected", "task", k.Rejected.GetLease().GetTaskId(), "reason", k.Rejected.GetReason())
		}
	}
}

func leaseOf(a *pb.Assignment) *pb.LeaseRef {
	t := a.GetTask()
	return &pb.LeaseRef{TaskId: t.GetId(), Queue: t.GetSpec().GetQueue(), LeaseToken: a.GetLeaseToken()}
}

// take holds an assignment for an executor; when draining (or beyond the credit granted) the
// lease goes straight back.
func (s *session) take(a *pb.Assignment) {
	ref := leaseOf(a)
	if !s.stopping.Load() {
		s.mu.Lock()
		s.held[ref.TaskId] = ref
		s.mu.Unlock()
		select {
		case s.ready <- a:
			return
		default:
		}
		s.mu.Lock()
		delete(s.held, ref.TaskId)
		s.mu.Unlock()
	}
	s.send(&pb.WorkerMessage{Kind: &pb.WorkerMessage_Release{Release: &pb.Release{Leases: []*pb.LeaseRef{ref}}}})
}

func (s *session) cancelTask(taskID string, grace float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a, ok := s.running[taskID]; ok {
		a.signal(time.Duration(grace * float64(time.Second)))
	} else if _, ok := s.held[taskID]; ok {
		s.cancelPending[taskID] = true // prefetched, not started: it never runs
	}
}

// write is the only sender on the stream: it batches outcomes, each batch returning its credit,
// and passes other messages through. It returns nil once outcomes is closed and flushed and
// closeReq is closed.
func (s *session) write() error {
	outcomes, closeReq := s.outcomes, s.closeReq
	for {
		select {
		case <-s.dead:
			return nil
		case <-closeReq:
			if outcomes == nil {
				return s.flushOthers()
			}
			closeReq = nil // finish the outcomes first
		case m := <-s.out:
			if err := s.stream.Send(m); err != nil {
				return err
			}
		case o, ok := <-outcomes:
			if !ok {
				outcomes = nil
				if closeReq == nil {
					return s.flushOthers()
				}
				continue
			}
			batch := []*pb.Outcome{o}
		more:
			for len(batch) < s.w.opts.MaxBatch {
				select {
				case o, ok := <-s.outcomes:
					if !ok {
						break more
					}
					batch = append(batch, o)
				default:
					break more
				}
			}
			credit := uint32(len(batch))
			if s.stopping.Load() {
				credit = 0
			}
			// Messages queued before these outcomes (progress of the same tasks) go first.
			if err := s.flushOthers(); err != nil {
				return err
			}
			ob := &pb.OutcomeBatch{Outcomes: batch, Credit: credit}
			if err := s.stream.Send(&pb.WorkerMessage{Kind: &pb.WorkerMessage_Outcomes{Outcomes: ob}}); err != nil {
				return err
			}
			s.granted.Add(int64(credit))
		}
	}
}

func (s *session) flushOthers() error {
	for {
		select {
		case m := <-s.out:
			if err := s.stream.Send(m); err != nil {
				return err
			}
		default:
			return nil
		}
	}
}

// heartbeat extends every held lease each third of the lease, until done closes.
func (s *session) heartbeat(done <-chan struct{}) {
	for {
		every := max(time.Duration(s.lease.Load())/3, 50*time.Millisecond)
		select {
		case <-done:
			return
		case <-s.dead:
			return
		case <-time.After(every):
		}
		s.mu.Lock()
		leases := make([]*pb.LeaseRef, 0, len(s.held))
		for _, ref := range s.held {
			leases = append(leases, ref)
		}
		s.mu.Unlock()
		if len(leases) > 0 {
			s.send(&pb.WorkerMessage{Kind: &pb.WorkerMessage_Heartbeat{Heartbeat: &pb.Heartbeat{Leases: leases}}})
		}
	}
}

// drain releases what was not started, lets running tasks finish, flushes their outcomes and
// closes the stream.
func (s *session) drain(execs *sync.WaitGroup, hbDone chan struct{}, readErr, writeErr chan error, cancelStream context.CancelFunc) error {
	s.stopping.Store(true)
	close(s.stopExec)
	released := s.sweepReady()
	s.mu.Lock()
	running := len(s.running)
	s.mu.Unlock()
	s.w.log.Info("tasktide: draining", "worker", s.w.opts.WorkerID, "released", released, "running", running)
	execs.Wait()
	s.sweepReady()
	close(hbDone)
	close(s.outcomes) // every executor has returned: no more senders
	// Released tasks go back to the queue, and the registry may assign them again while it holds
	// credit of this session: those are released as they come (take), until the credit is used
	// up or the registry has sent nothing for a moment.
	for s.granted.Load() > s.received.Load() {
		select {
		case <-s.assigned:
			continue
		case <-time.After(drainQuiet):
		case err := <-readErr:
			s.abort(cancelStream)
			return fmt.Errorf("tasktide: session lost while draining: %w", sessionError(err))
		}
		break
	}
	close(s.closeReq)
	var err error
	select {
	case err = <-writeErr:
	case err = <-readErr: // the stream broke while draining
		s.abort(cancelStream)
		return fmt.Errorf("tasktide: session lost while draining: %w", sessionError(err))
	}
	if err != nil {
		s.abort(cancelStream)
		return err
	}
	_ = s.stream.CloseSend()
	select {
	case <-readErr:
	case <-time.After(2 * time.Second):
	}
	s.abort(cancelStream)
	return nil
}

// sweepReady releases every assignment not started yet; it returns how many.
func (s *session) sweepReady() int {
	var release []*pb.LeaseRef
	s.mu.Lock()
	for more := true; more; {
		select {
		case a := <-s.ready:
			ref := leaseOf(a)
			delete(s.held, ref.TaskId)
			delete(s.cancelPending, ref.TaskId)
			release = append(release, ref)
		default:
			more = false
		}
	}
	s.mu.Unlock()
	if len(release) > 0 {
		s.send(&pb.WorkerMessage{Kind: &pb.WorkerMessage_Release{Release: &pb.Release{Leases: release}}})
	}
	return len(release)
}
