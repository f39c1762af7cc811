package tasktide

import (
	"context"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"

	pb "github.com/tasktide/tasktide/clients/go/tasktidepb"
)

// batchHeader is the initial metadata of a SubmitStream by which the scheduler announces that one
// message may carry several submissions, and how many at most. A scheduler that does not send it
// gets one submission per message.
const batchHeader = "tasktide-submit-batch"

// bytesHeader is the initial metadata of a SubmitStream by which the scheduler announces the
// largest message it takes (its gRPC receive limit). A message of several submissions stays under
// it and under maxBatchBytes; a scheduler that does not send it (or sends no decimal number) gets
// messages under maxBatchBytes.
const bytesHeader = "tasktide-submit-bytes"

// maxPerMessage caps the submissions of one message, whatever the scheduler announces.
const maxPerMessage = 1_000

// maxBatchBytes bounds a message of several submissions (a scheduler takes 16 MiB by default, and
// may be configured lower: it then announces less); a submission larger than the bound goes alone.
const maxBatchBytes = 1 << 20

// entryOverhead bounds what a submission adds to a message beside its spec: its seq and the
// field tags and lengths around it.
const entryOverhead = 24

// queued is a submission waiting for its turn to be sent, with its size in a message.
type queued struct {
	req  *pb.SubmitStreamRequest
	size int
}

// openStream is one SubmitStream call, the submissions queued to be sent on it and those waiting
// for its answers.
//
// Sending: a submission is queued; the goroutine that finds nobody sending takes the send turn
// and sends what is queued as one message (up to what the scheduler announced and what a message
// may weigh), again and again until nothing is left. So a caller alone sends its own submission
// at once, and the submissions of goroutines that come while a message is being sent go together
// in the next one. The answers of such a message may come back in one message too (the reader
// takes both shapes).
type openStream struct {
	call       pb.Scheduler_SubmitStreamClient
	cancel     context.CancelFunc
	sendMu     sync.Mutex   // gRPC allows one sender at a time: the turn's holder, or closeSend
	perMessage atomic.Int32 // submissions one message may carry: 1 until the scheduler announces more
	batchBytes atomic.Int32 // bytes a message of several may weigh: maxBatchBytes unless announced less
	mu         sync.Mutex   // guards the fields below
	pending    map[uint64]chan answer
	queue      []queued // registered and not yet sent, in order; each holds a slot (MaxInFlight)
	sending    bool     // a goroutine holds the send turn
	open       bool
	used       time.Time
}

func newOpenStream(call pb.Scheduler_SubmitStreamClient, cancel context.CancelFunc) *openStream {
	st := &openStream{call: call, cancel: cancel, pending: map[uint64]chan answer{}, open: true}
	st.perMessage.Store(1)
	st.batchBytes.Store(maxBatchBytes)
	return st
}

// enqueue records a submission (st.mu held) and reports whether its caller takes the send turn.
func (st *openStream) enqueue(seq uint64, spec *pb.TaskSpec, size int, now time.Time) (chan answer, bool) {
	done := make(chan answer, 1)
	st.pending[seq] = done
	st.queue = append(st.queue, queued{req: &pb.SubmitStreamRequest{Seq: seq, Spec: spec}, size: size})
	st.used = now
	turn := !st.sending
	st.sending = true
	return done, turn
}

// sendTurn is the work of the send turn's holder: it sends what is queued until nothing is. A
// caller holding it (own: its answer, ctx: its context) passes the turn to a new goroutine once
// its own answer came or its context ended, so it does not go on sending for the others.
func (st *openStream) sendTurn(ctx context.Context, own chan answer) {
	for {
		st.mu.Lock()
		if len(st.queue) > 0 && len(st.pending) > 1 && st.perMessage.Load() > 1 {
			// Others in flight: let goroutines woken by their answers queue their next submissions,
			// so they go in this message rather than each in one of its own.
			st.mu.Unlock()
			runtime.Gosched()
			st.mu.Lock()
		}
		if len(st.queue) == 0 { // (a submission given up while the turn's holder yielded is gone)
			st.sending = false
			st.mu.Unlock()
			return
		}
		if own != nil && (len(own) > 0 || ctx.Err() != nil) {
			st.mu.Unlock()
			go st.sendTurn(context.Background(), nil)
			return
		}
		batch := st.take()
		st.mu.Unlock()
		st.sendMu.Lock()
		err := st.call.Send(message(batch))
		st.sendMu.Unlock()
		if err != nil {
			// The stream is done: its reader fails every submission still registered with the
			// stream's status (Send only says io.EOF), so those queued are not sent.
			st.mu.Lock()
			st.queue = nil
			st.sending = false
			st.mu.Unlock()
			return
		}
	}
}

// take removes the next message's submissions from the queue (st.mu held): as many as the
// scheduler takes in one message, within the message size limit; at least one.
func (st *openStream) take() []*pb.SubmitStreamRequest {
	limit, most := int(st.perMessage.Load()), int(st.batchBytes.Load())
	n, bytes := 0, 0
	for n < len(st.queue) && n < limit && (n == 0 || bytes+st.queue[n].size <= most) {
		bytes += st.queue[n].size
		n++
	}
	batch := make([]*pb.SubmitStreamRequest, n)
	for i := range n {
		batch[i] = st.queue[i].req
	}
	if n == len(st.queue) {
		clear(st.queue) // the specs sent are not kept alive by the queue
		st.queue = st.queue[:0]
	} else {
		st.queue = st.queue[n:]
	}
	return batch
}

func message(batch []*pb.SubmitStreamRequest) *pb.SubmitStreamRequest {
	if len(batch) == 1 {
		return batch[0]
	}
	return &pb.SubmitStreamRequest{Batch: batch}
}

// announced reads the scheduler's initial metadata (waits for it): how many submissions one
// message may carry, and how many bytes a message of several may weigh. A value that is not a
// decimal number is ignored, as if not announced.
func (st *openStream) announced() {
	md, err := st.call.Header()
	if err != nil {
		return // the stream failed: Recv says how
	}
	if v := md.Get(batchHeader); len(v) > 0 {
		if n, ok := decimal(v[0]); ok && n > 1 {
			st.perMessage.Store(int32(min(n, maxPerMessage)))
		}
	}
	if v := md.Get(bytesHeader); len(v) > 0 {
		if n, ok := decimal(v[0]); ok && n > 0 {
			st.batchBytes.Store(int32(min(n, maxBatchBytes)))
		}
	}
}

// decimal reads a header's value as a whole number: ASCII digits only (no sign, space or unit).
// A number longer than any bound reads as 10^12.
func decimal(v string) (int, bool) {
	if v == "" {
		return 0, false
	}
	for _, c := range []byte(v) {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	if len(v) > 12 {
		return 1_000_000_000_000, true
	}
	n, err := strconv.Atoi(v)
	return n, err == nil
}

// read hands each answer to its submission until the stream ends, then fails those left.
func (st *openStream) read() {
	st.announced()
	var failure error
	for {
		resp, err := st.call.Recv()
		if err != nil {
			failure = streamError(err)
			break
		}
		answers := resp.GetBatch()
		if len(answers) == 0 {
			answers = []*pb.SubmitStreamResponse{resp}
		}
		dones := make([]chan answer, len(answers))
		st.mu.Lock()
		for i, a := range answers {
			dones[i] = st.pending[a.GetSeq()] // nil: its submitter stopped waiting
			delete(st.pending, a.GetSeq())
		}
		st.mu.Unlock()
		for i, done := range dones {
			if done != nil {
				done <- answerOf(answers[i])
			}
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

func answerOf(resp *pb.SubmitStreamResponse) answer {
	if code := resp.GetErrorCode(); code != 0 {
		c := codes.Code(code)
		return answer{err: &Error{Op: "Submit", Code: c.String(), Message: resp.GetErrorMessage(), code: c}}
	}
	return answer{resp: resp.GetResult()}
}

// forget drops a submission whose caller stopped waiting; one still queued is not sent. It
// reports whether the submission was still queued (so never sent).
func (st *openStream) forget(seq uint64) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	delete(st.pending, seq)
	for i, q := range st.queue {
		if q.req.GetSeq() == seq {
			st.queue = append(st.queue[:i], st.queue[i+1:]...)
			return true
		}
	}
	return false
}

// closeSend ends the requests; the reader ends when the scheduler has answered the last of them.
func (st *openStream) closeSend() {
	st.sendMu.Lock()
	_ = st.call.CloseSend()
	st.sendMu.Unlock()
}
