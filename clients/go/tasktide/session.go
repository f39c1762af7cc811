package tasktide

import (
	"context"
	"errors"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	pb "github.com/tasktide/tasktide/clients/go/tasktidepb"
)

// session is one Session stream: it carries the pool's messages while it lasts.
type session struct {
	w        *Worker
	p        *pool
	stream   pb.Registry_SessionClient
	out      chan *pb.WorkerMessage // every message but outcomes, to the registry
	dead     chan struct{}          // closed when the stream is lost or closed
	drainReq chan struct{}          // the registry asked for a drain
	closeReq chan struct{}          // closed when the writer may finish
	assigned chan struct{}          // a signal per assignment batch received
	lease    atomic.Int64           // lease length in nanoseconds
	granted  atomic.Int64           // credit granted so far
	received atomic.Int64           // assignments received so far

	deadOnce  sync.Once
	drainOnce sync.Once
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
			return false, ctx.Err() // stopped during the handshake: nothing was taken on this session
		}
		return false, err
	}
	s := &session{
		w: w, p: w.pool, stream: stream,
		out:      make(chan *pb.WorkerMessage, 64),
		dead:     make(chan struct{}),
		drainReq: make(chan struct{}),
		closeReq: make(chan struct{}),
		assigned: make(chan struct{}, 1),
	}
	s.setLease(welcome.GetLeaseSeconds())
	// Leases still held from a lost session (running, or their outcomes unsent) keep their credit.
	credit := s.p.freeCredit()
	if credit > 0 {
		if err := stream.Send(&pb.WorkerMessage{Kind: &pb.WorkerMessage_Credit{Credit: uint32(credit)}}); err != nil {
			return false, err
		}
	}
	s.granted.Add(int64(credit))
	w.pool.session.Store(s)
	defer w.pool.session.CompareAndSwap(s, nil)
	readErr, writeErr := make(chan error, 1), make(chan error, 1)
	go func() { readErr <- s.read() }()
	go func() { writeErr <- s.write() }()
	hbDone := make(chan struct{})
	go s.heartbeat(hbDone)
	defer close(hbDone)
	select {
	case <-ctx.Done():
	case <-s.drainReq:
	case err = <-readErr:
		s.abort(cancelStream)
		<-writeErr // the next session's writer must not race this one for outcomes
		return false, sessionError(err)
	case err = <-writeErr:
		s.abort(cancelStream)
		return false, sessionError(err)
	}
	return true, s.drain(readErr, writeErr, cancelStream)
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
		TaskNames: w.taskNames(), Concurrency: uint32(w.pool.credit.size()), Language: "go", Resizable: true,
	}
	if err := stream.Send(&pb.WorkerMessage{Kind: &pb.WorkerMessage_Hello{Hello: hello}}); err != nil {
		if errors.Is(err, io.EOF) { // the stream ended: its status comes with Recv
			_, err = stream.Recv()
		}
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

// abort ends the session's stream. Running tasks go on: their outcomes wait in the pool for the
// next session (the registry takes them by lease token).
func (s *session) abort(cancelStream context.CancelFunc) {
	s.deadOnce.Do(func() { close(s.dead) })
	cancelStream()
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
			s.p.cancelTask(k.Cancel.GetTaskId(), k.Cancel.GetGraceSeconds())
		case *pb.RegistryMessage_Drain:
			s.drainOnce.Do(func() { close(s.drainReq) })
		case *pb.RegistryMessage_Resize:
			n := int(k.Resize.GetConcurrency())
			if n < 1 || s.p.stopping.Load() {
				continue
			}
			if credit := s.w.resize(n); credit > 0 {
				s.granted.Add(int64(credit))
				s.send(&pb.WorkerMessage{Kind: &pb.WorkerMessage_Credit{Credit: uint32(credit)}})
			}
			s.send(&pb.WorkerMessage{Kind: &pb.WorkerMessage_Concurrency{Concurrency: uint32(s.p.credit.size())}})
			s.w.log.Info("tasktide: resized", "worker", s.w.opts.WorkerID, "concurrency", n)
		case *pb.RegistryMessage_Rejected:
			if s.p.doubt.wasResent(k.Rejected.GetLease()) {
				continue // an outcome sent again whose first copy was recorded
			}
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
	if !s.p.stopping.Load() && s.p.hold(a) {
		return
	}
	s.release([]*pb.LeaseRef{leaseOf(a)})
}

// release gives leases back unstarted (the registry then withdraws the session's credit).
func (s *session) release(refs []*pb.LeaseRef) int {
	if len(refs) > 0 {
		s.send(&pb.WorkerMessage{Kind: &pb.WorkerMessage_Release{Release: &pb.Release{Leases: refs}}})
	}
	return len(refs)
}

// write is the only sender on the stream: it batches outcomes, each batch returning credit that
// moves the window toward its target, and passes other messages through, with the latest progress
// reports of the pool. It returns nil once the pool's outcomes are closed and flushed and closeReq
// is closed. A batch it could not send is kept for the next session.
func (s *session) write() error {
	if err := s.flushOthers(); err != nil { // progress left by a lost session first
		return err
	}
	if err := s.resend(); err != nil {
		return err
	}
	if batch := s.p.takeUnsent(); len(batch) > 0 {
		if err := s.sendOutcomes(batch); err != nil {
			return err
		}
	}
	outcomes, closeReq := s.p.outcomes, s.closeReq
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
		case <-s.p.progress.ready:
			if err := s.sendProgress(); err != nil {
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
				case o, ok := <-s.p.outcomes:
					if !ok {
						break more
					}
					batch = append(batch, o)
				default:
					break more
				}
			}
			if err := s.sendOutcomes(batch); err != nil {
				return err
			}
		}
	}
}

func (s *session) sendOutcomes(batch []*pb.Outcome) error {
	var credit uint32 // draining: no credit returns
	if !s.p.stopping.Load() {
		credit = uint32(s.p.credit.returned(len(batch)))
	}
	// Messages queued before these outcomes, and the progress of the same tasks, go first.
	err := s.flushOthers()
	if err == nil {
		ob := &pb.OutcomeBatch{Outcomes: batch, Credit: credit}
		err = s.stream.Send(&pb.WorkerMessage{Kind: &pb.WorkerMessage_Outcomes{Outcomes: ob}})
	}
	if err != nil {
		s.p.keepUnsent(batch)
		return err
	}
	s.p.doubt.written(batch, time.Duration(s.lease.Load()), time.Now())
	s.p.settled(batch)
	s.granted.Add(int64(credit))
	return nil
}

// resend writes again, on a new session, the outcomes written during the last lease (inDoubt): a
// lost session may have lost them unread. Their credit was returned when they were first sent.
func (s *session) resend() error {
	batch := s.p.doubt.take(time.Duration(s.lease.Load()), time.Now())
	if len(batch) == 0 {
		return nil
	}
	ob := &pb.OutcomeBatch{Outcomes: batch}
	return s.stream.Send(&pb.WorkerMessage{Kind: &pb.WorkerMessage_Outcomes{Outcomes: ob}})
}

func (s *session) flushOthers() error {
	for {
		select {
		case m := <-s.out:
			if err := s.stream.Send(m); err != nil {
				return err
			}
		default:
			return s.sendProgress()
		}
	}
}

// sendProgress writes the latest progress reports waiting; those it could not write stay for the
// next session.
func (s *session) sendProgress() error {
	reports := s.p.progress.take()
	for i, r := range reports {
		if err := s.stream.Send(&pb.WorkerMessage{Kind: &pb.WorkerMessage_Progress{Progress: r}}); err != nil {
			s.p.progress.putBack(reports[i:])
			return err
		}
	}
	return nil
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
		if leases := s.p.leases(); len(leases) > 0 {
			s.send(&pb.WorkerMessage{Kind: &pb.WorkerMessage_Heartbeat{Heartbeat: &pb.Heartbeat{Leases: leases}}})
		}
	}
}
