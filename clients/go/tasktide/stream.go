package tasktide

import (
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/tasktide/tasktide/clients/go/tasktidepb"
)

// MaxInFlight bounds the submissions a Client has sent on its stream and not seen answered; a
// Submit beyond it waits (or returns its context's error) until an answer frees a place.
const MaxInFlight = 10_000

// maxIdle: a stream left idle this long is closed before the next submission opens a fresh one,
// so a connection dropped while idle (a proxy's idle timeout, a server restart) costs no task.
const maxIdle = 30 * time.Second

// answer is what a submission on the stream gets back: the scheduler's response or an error.
type answer struct {
	resp *pb.SubmitResponse
	err  error
}

// streamSubmitter sends the tasks submitted one at a time over one long-lived SubmitStream shared
// by every goroutine of the Client. Each submission carries a sequence number; one reader
// goroutine per stream hands each answer to the submission with its number, so many submissions
// are in flight at once and the scheduler writes what arrives together in one Redis round trip.
// The stream opens on first use; when it breaks, the submissions in flight fail with its error
// (ErrUnavailable) and the next submission opens a new stream.
type streamSubmitter struct {
	scheduler   pb.SchedulerClient
	unsupported atomic.Bool   // the scheduler answered SubmitStream with UNIMPLEMENTED
	slots       chan struct{} // one per submission in flight
	mu          sync.Mutex    // guards seq and cur
	seq         uint64
	cur         *openStream
}

// openStream is one SubmitStream call and the submissions waiting for its answers.
type openStream struct {
	call    pb.Scheduler_SubmitStreamClient
	cancel  context.CancelFunc
	sendMu  sync.Mutex // gRPC allows one sender at a time
	mu      sync.Mutex // guards pending, open and used
	pending map[uint64]chan answer
	open    bool
	used    time.Time
}

func newStreamSubmitter(scheduler pb.SchedulerClient) *streamSubmitter {
	return &streamSubmitter{scheduler: scheduler, slots: make(chan struct{}, MaxInFlight)}
}

// submit sends spec and waits for its answer, or for ctx to end (the answer is then dropped when
// it arrives: the task may have been accepted).
func (s *streamSubmitter) submit(ctx context.Context, spec *pb.TaskSpec) (*pb.SubmitResponse, error) {
	select {
	case s.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-s.slots }()
	st, seq, done, err := s.register()
	if err != nil {
		return nil, err
	}
	st.sendMu.Lock()
	// A Send that fails means the stream broke: its reader then fails every submission still
	// registered, this one too, with the stream's status (Send itself only says io.EOF).
	_ = st.call.Send(&pb.SubmitStreamRequest{Seq: seq, Spec: spec})
	st.sendMu.Unlock()
	select {
	case a := <-done:
		return a.resp, a.err
	case <-ctx.Done():
		st.forget(seq)
		return nil, ctx.Err()
	}
}

// register picks the stream (opening one if there is none, it broke, or it sat idle too long) and
// records a new submission on it.
func (s *streamSubmitter) register() (*openStream, uint64, chan answer, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if st := s.cur; st != nil {
		st.mu.Lock()
		stale := st.open && len(st.pending) == 0 && now.Sub(st.used) > maxIdle
		usable := st.open && !stale
		if usable {
			s.seq++
			done := make(chan answer, 1)
			st.pending[s.seq] = done
			st.used = now
			st.mu.Unlock()
			return st, s.seq, done, nil
		}
		st.mu.Unlock()
		if stale {
			st.closeSend()
		}
	}
	st, err := s.open()
	if err != nil {
		return nil, 0, nil, err
	}
	s.cur = st
	s.seq++
	done := make(chan answer, 1)
	st.pending[s.seq] = done
	st.used = now
	go st.read() // only now: a stream that fails at once fails this submission too
	return st, s.seq, done, nil
}

// open starts a stream; the caller starts its reader. The stream outlives the submission that
// opens it, so it runs under its own context, cancelled by close.
func (s *streamSubmitter) open() (*openStream, error) {
	ctx, cancel := context.WithCancel(context.Background())
	call, err := s.scheduler.SubmitStream(ctx)
	if err != nil {
		cancel()
		return nil, streamError(err)
	}
	return &openStream{call: call, cancel: cancel, pending: map[uint64]chan answer{}, open: true}, nil
}

// read hands each answer to its submission until the stream ends, then fails those left.
func (st *openStream) read() {
	var failure error
	for {
		resp, err := st.call.Recv()
		if err != nil {
			failure = streamError(err)
			break
		}
		st.mu.Lock()
		done, ok := st.pending[resp.GetSeq()]
		delete(st.pending, resp.GetSeq())
		st.mu.Unlock()
		if !ok {
			continue // its submitter stopped waiting
		}
		if code := resp.GetErrorCode(); code != 0 {
			c := codes.Code(code)
			done <- answer{err: &Error{Op: "Submit", Code: c.String(), Message: resp.GetErrorMessage(), code: c}}
		} else {
			done <- answer{resp: resp.GetResult()}
		}
	}
	st.mu.Lock()
	st.open = false
	left := st.pending
	st.pending = map[uint64]chan answer{}
	st.mu.Unlock()
	for _, done := range left {
		done <- answer{err: failure}
	}
	st.cancel()
}

func (st *openStream) forget(seq uint64) {
	st.mu.Lock()
	delete(st.pending, seq)
	st.mu.Unlock()
}

// closeSend ends the requests; the reader ends when the scheduler has answered the last of them.
func (st *openStream) closeSend() {
	st.sendMu.Lock()
	_ = st.call.CloseSend()
	st.sendMu.Unlock()
}

// close ends the current stream: submissions still waiting fail with ErrUnavailable.
func (s *streamSubmitter) close() {
	s.mu.Lock()
	st := s.cur
	s.cur = nil
	s.mu.Unlock()
	if st != nil {
		st.cancel()
	}
}

// streamError maps the end of a stream to the package's errors: a stream that ended without a
// status (the scheduler closed it) is ErrUnavailable, like a connection that dropped.
func streamError(err error) error {
	if errors.Is(err, io.EOF) {
		return &Error{Op: "SubmitStream", Code: codes.Unavailable.String(), Message: "the submission stream closed", code: codes.Unavailable}
	}
	st, ok := status.FromError(err)
	if !ok {
		return &Error{Op: "SubmitStream", Code: codes.Unavailable.String(), Message: err.Error(), code: codes.Unavailable}
	}
	return &Error{Op: "SubmitStream", Code: st.Code().String(), Message: st.Message(), code: st.Code()}
}
