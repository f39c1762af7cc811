package tasktide_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/tasktide/tasktide/clients/go/tasktide"
	pb "github.com/tasktide/tasktide/clients/go/tasktidepb"
)

// messagesSent counts, from outside the client (a stream interceptor on its channel), the
// SubmitStream messages it sends and receives and the submissions and answers they carry.
type messagesSent struct {
	messages, submissions, answerMessages, answers atomic.Int64
	largest                                        atomic.Int64 // most submissions in one message
}

func (m *messagesSent) option() tasktide.DialOption {
	return tasktide.WithGRPCOptions(grpc.WithChainStreamInterceptor(
		func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			cs, err := streamer(ctx, desc, cc, method, opts...)
			if err != nil || method != submitStreamMethod {
				return cs, err
			}
			return &countedStream{ClientStream: cs, m: m}, nil
		}))
}

type countedStream struct {
	grpc.ClientStream
	m *messagesSent
}

func (s *countedStream) SendMsg(msg any) error {
	n := int64(max(1, len(msg.(*pb.SubmitStreamRequest).GetBatch())))
	s.m.messages.Add(1)
	s.m.submissions.Add(n)
	for {
		old := s.m.largest.Load()
		if n <= old || s.m.largest.CompareAndSwap(old, n) {
			break
		}
	}
	return s.ClientStream.SendMsg(msg)
}

func (s *countedStream) RecvMsg(msg any) error {
	err := s.ClientStream.RecvMsg(msg)
	if err == nil {
		s.m.answerMessages.Add(1)
		s.m.answers.Add(int64(max(1, len(msg.(*pb.SubmitStreamResponse).GetBatch()))))
	}
	return err
}

// producers submits perProducer tasks from each of producers goroutines, one at a time each;
// task k has args [k]. It returns the ids by k.
func producers(t *testing.T, c *tasktide.Client, q string, producers, perProducer int) []string {
	t.Helper()
	ctx := testContext(t)
	ids := make([]string, producers*perProducer)
	errs := make([]error, producers)
	var wg sync.WaitGroup
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perProducer {
				k := p*perProducer + i
				h, err := c.Submit(ctx, "go.noop", []any{k}, tasktide.WithQueue(q))
				if err != nil {
					errs[p] = err
					return
				}
				ids[k] = h.ID
			}
		}()
	}
	wg.Wait()
	for p, err := range errs {
		if err != nil {
			t.Fatalf("producer %d: %v", p, err)
		}
	}
	return ids
}

// Goroutines each waiting for their own answer share messages: what they submit while a message
// is being sent goes in the next one, so the client sends fewer messages than tasks; every
// submission is answered by its own task's id.
func TestConcurrentSubmitsShareMessages(t *testing.T) {
	addr := os.Getenv("TASKTIDE_ADDRESS")
	if addr == "" {
		t.Skip("TASKTIDE_ADDRESS is not set")
	}
	m := &messagesSent{}
	c, err := tasktide.Dial(addr, m.option())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	const n = 400
	ids := producers(t, c, newQueue(t), 8, n/8)
	seen := map[string]bool{}
	for k, id := range ids {
		if id == "" || seen[id] {
			t.Fatalf("submission %d: id %q empty or given twice", k, id)
		}
		seen[id] = true
	}
	if got := m.submissions.Load(); got != n {
		t.Fatalf("%d submissions sent; want %d", got, n)
	}
	t.Logf("%d messages sent for %d submissions (at most %d in one); %d answer messages", m.messages.Load(), n, m.largest.Load(), m.answerMessages.Load())
	if got := m.messages.Load(); got >= n {
		t.Fatalf("%d messages sent for %d submissions; want fewer", got, n)
	}
	// Each id is the task of the submission it was given to.
	ctx := testContext(t)
	for k, id := range ids {
		task, err := c.SchedulerService().GetTask(ctx, &pb.GetTaskRequest{TaskId: id})
		if err != nil {
			t.Fatalf("task %d: %v", k, err)
		}
		var args []int
		if err := json.Unmarshal(task.GetSpec().GetArgs().GetJson(), &args); err != nil || len(args) != 1 || args[0] != k {
			t.Fatalf("submission %d was given the task with args %s", k, task.GetSpec().GetArgs().GetJson())
		}
	}
}

// batchScheduler answers SubmitStream as a scheduler that announces `announce` in the batch header
// and `size` in the size header (none when empty), records how many submissions each message
// carried (and the bytes of the largest of several), and answers each submission with "task-" and
// its args; a message's answers go back as one message when it carried several.
type batchScheduler struct {
	pb.UnimplementedSchedulerServer
	announce, size string

	mu           sync.Mutex
	entries      []int // submissions per message received
	largestBatch int   // bytes of the largest message of several
}

func (b *batchScheduler) SubmitStream(stream grpc.BidiStreamingServer[pb.SubmitStreamRequest, pb.SubmitStreamResponse]) error {
	md := metadata.MD{}
	if b.announce != "" {
		md.Set("tasktide-submit-batch", b.announce)
	}
	if b.size != "" {
		md.Set("tasktide-submit-bytes", b.size)
	}
	if len(md) > 0 {
		if err := stream.SendHeader(md); err != nil {
			return err
		}
	}
	for {
		req, err := stream.Recv()
		if err != nil {
			return nil
		}
		entries := req.GetBatch()
		if len(entries) == 0 {
			entries = []*pb.SubmitStreamRequest{req}
		}
		b.mu.Lock()
		b.entries = append(b.entries, len(entries))
		if len(entries) > 1 {
			b.largestBatch = max(b.largestBatch, proto.Size(req))
		}
		b.mu.Unlock()
		answers := make([]*pb.SubmitStreamResponse, len(entries))
		for i, e := range entries {
			id := "task-" + string(e.GetSpec().GetArgs().GetJson())
			answers[i] = &pb.SubmitStreamResponse{Seq: e.GetSeq(), Result: &pb.SubmitResponse{TaskId: id}}
		}
		out := &pb.SubmitStreamResponse{Batch: answers}
		if len(answers) == 1 {
			out = answers[0]
		}
		if err := stream.Send(out); err != nil {
			return err
		}
	}
}

func (b *batchScheduler) perMessage() []int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]int(nil), b.entries...)
}

// serveScheduler serves a test scheduler on loopback (a gRPC server with opts) and returns a
// Client of it.
func serveScheduler(t *testing.T, b pb.SchedulerServer, opts ...grpc.ServerOption) *tasktide.Client {
	t.Helper()
	ownServerOnly(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(opts...)
	pb.RegisterSchedulerServer(srv, b)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	c, err := tasktide.Dial(lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// burst submits n tasks at once from n goroutines (task k has args [k], or [k, pad] when pad is
// not empty) once a first submission opened the stream (and read the scheduler's announcement),
// and checks that each got the answer to its own submission.
func burst(t *testing.T, c *tasktide.Client, n int, pad string) {
	t.Helper()
	ctx := testContext(t)
	if _, err := c.Submit(ctx, "go.x", []any{-1}); err != nil {
		t.Fatal(err)
	}
	start := make(chan struct{})
	errs := make([]error, n)
	var wg sync.WaitGroup
	for k := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			args := []any{k}
			if pad != "" {
				args = append(args, pad)
			}
			h, err := c.Submit(ctx, "go.x", args)
			if err == nil {
				want, _ := json.Marshal(args)
				if h.ID != "task-"+string(want) {
					err = errors.New("answered with " + h.ID)
				}
			}
			errs[k] = err
		}()
	}
	close(start)
	wg.Wait()
	for k, err := range errs {
		if err != nil {
			t.Fatalf("submission %d: %v", k, err)
		}
	}
}

// A scheduler that announces no batches (one from before them) gets one submission per message,
// however many goroutines submit at once.
func TestASchedulerWithoutTheBatchHeaderGetsOneSubmissionPerMessage(t *testing.T) {
	b := &batchScheduler{}
	burst(t, serveScheduler(t, b), 300, "")
	got := b.perMessage()
	for i, n := range got {
		if n != 1 {
			t.Fatalf("message %d carried %d submissions; the scheduler announced no batches", i, n)
		}
	}
	if len(got) != 301 {
		t.Fatalf("%d messages for 301 submissions", len(got))
	}
}

// A scheduler that announces batches of 3 gets several submissions per message, never more than
// 3, and the answers it sends together reach each submission by its seq.
func TestMessagesCarryNoMoreThanTheSchedulerAnnounced(t *testing.T) {
	b := &batchScheduler{announce: "3"}
	burst(t, serveScheduler(t, b), 300, "")
	got := b.perMessage()
	total, most := 0, 0
	for _, n := range got {
		total += n
		most = max(most, n)
	}
	if total != 301 || most > 3 {
		t.Fatalf("%d submissions, at most %d in one message; want 301, at most 3", total, most)
	}
	if most < 2 {
		t.Fatalf("every message carried one submission (%d messages)", len(got))
	}
}

// A task larger than a message may be is refused by itself, with ErrResourceExhausted; the stream
// and the submissions sharing it go on.
func TestATaskTooLargeForAMessageIsRefusedAlone(t *testing.T) {
	c, counter := dialCounted(t)
	ctx := testContext(t)
	q := newQueue(t)
	if _, err := c.Submit(ctx, "go.noop", nil, tasktide.WithQueue(q)); err != nil {
		t.Fatal(err)
	}
	huge := strings.Repeat("x", 17<<20)
	if _, err := c.Submit(ctx, "go.noop", []any{huge}, tasktide.WithQueue(q)); !errors.Is(err, tasktide.ErrResourceExhausted) {
		t.Fatalf("a 17 MB task: %v; want ErrResourceExhausted", err)
	}
	if _, err := c.Submit(ctx, "go.noop", nil, tasktide.WithQueue(q)); err != nil {
		t.Fatal(err)
	}
	if s := counter.count(submitStreamMethod); s != 1 {
		t.Fatalf("%d streams opened; the refusal must not end the stream", s)
	}
}
