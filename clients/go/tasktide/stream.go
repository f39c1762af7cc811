package tasktide

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/tasktide/tasktide/clients/go/tasktidepb"
)

// MaxInFlight bounds the submissions a Client has queued or sent on its stream and not seen
// answered; a Submit beyond it waits (or returns its context's error) until an answer frees a place.
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
// Submissions made while a message is being sent go together in the next one, when the scheduler
// takes several per message (openstream.go). The stream opens on first use; when it breaks, the
// submissions in flight fail with its error (ErrUnavailable) and the next submission opens a new
// stream.
type streamSubmitter struct {
	scheduler   pb.SchedulerClient
	unsupported atomic.Bool   // the scheduler answered SubmitStream with UNIMPLEMENTED
	slots       chan struct{} // one per submission in flight
	mu          sync.Mutex    // guards seq and cur
	seq         uint64
	cur         *openStream
}

func newStreamSubmitter(scheduler pb.SchedulerClient) *streamSubmitter {
	return &streamSubmitter{scheduler: scheduler, slots: make(chan struct{}, MaxInFlight)}
}

// submit sends spec and waits for its answer, or for ctx to end (the answer is then dropped when
// it arrives: the task may have been accepted; one not sent yet is not sent).
func (s *streamSubmitter) submit(ctx context.Context, spec *pb.TaskSpec) (*pb.SubmitResponse, error) {
	size := proto.Size(spec) + entryOverhead
	if size > maxMessageBytes {
		msg := fmt.Sprintf("the task takes %d bytes; a message takes at most %d", size, maxMessageBytes)
		return nil, &Error{Op: "Submit", Code: codes.ResourceExhausted.String(), Message: msg, code: codes.ResourceExhausted}
	}
	select {
	case s.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-s.slots }()
	st, seq, done, turn, err := s.register(spec, size)
	if err != nil {
		return nil, err
	}
	if turn {
		st.sendTurn(ctx, done)
	}
	select {
	case a := <-done:
		return a.resp, a.err
	case <-ctx.Done():
		st.forget(seq)
		return nil, ctx.Err()
	}
}

// register picks the stream (opening one if there is none, it broke, or it sat idle too long),
// queues a new submission on it and reports whether the caller takes the send turn.
func (s *streamSubmitter) register(spec *pb.TaskSpec, size int) (*openStream, uint64, chan answer, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if st := s.cur; st != nil {
		st.mu.Lock()
		stale := st.open && len(st.pending) == 0 && now.Sub(st.used) > maxIdle
		if st.open && !stale {
			s.seq++
			done, turn := st.enqueue(s.seq, spec, size, now)
			st.mu.Unlock()
			return st, s.seq, done, turn, nil
		}
		st.mu.Unlock()
		if stale {
			st.closeSend()
		}
	}
	st, err := s.open()
	if err != nil {
		return nil, 0, nil, false, err
	}
	s.cur = st
	s.seq++
	st.mu.Lock()
	done, turn := st.enqueue(s.seq, spec, size, now)
	st.mu.Unlock()
	go st.read() // only now: a stream that fails at once fails this submission too
	return st, s.seq, done, turn, nil
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
	return newOpenStream(call, cancel), nil
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
