package tasktide

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	pb "github.com/tasktide/tasktide/clients/go/tasktidepb"
)

// echoScheduler announces batches of 10 on SubmitStream, answers each submission with "task-"
// and its args, and records the args it received.
type echoScheduler struct {
	pb.UnimplementedSchedulerServer
	mu   sync.Mutex
	seen []string
}

func (e *echoScheduler) SubmitStream(stream grpc.BidiStreamingServer[pb.SubmitStreamRequest, pb.SubmitStreamResponse]) error {
	if err := stream.SendHeader(metadata.Pairs(batchHeader, "10")); err != nil {
		return err
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
		for _, en := range entries {
			args := string(en.GetSpec().GetArgs().GetJson())
			e.mu.Lock()
			e.seen = append(e.seen, args)
			e.mu.Unlock()
			if err := stream.Send(&pb.SubmitStreamResponse{Seq: en.GetSeq(), Result: &pb.SubmitResponse{TaskId: "task-" + args}}); err != nil {
				return err
			}
		}
	}
}

// heldStream holds its first message in SendMsg until release is closed, after closing entered.
type heldStream struct {
	grpc.ClientStream
	once             *sync.Once
	entered, release chan struct{}
}

func (h *heldStream) SendMsg(m any) error {
	h.once.Do(func() {
		close(h.entered)
		<-h.release
	})
	return h.ClientStream.SendMsg(m)
}

// A submission whose context ends while it waits for its turn to be sent is never sent; the
// submission being sent meanwhile, and the next ones, are answered.
func TestASubmissionGivenUpBeforeItWasSentIsNotSent(t *testing.T) {
	for _, k := range []string{"TASKTIDE_SCHEDULER_ADDRESS", "TASKTIDE_REGISTRY_ADDRESS", "TASKTIDE_RESULTS_ADDRESS"} {
		t.Setenv(k, "")
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &echoScheduler{}
	srv := grpc.NewServer()
	pb.RegisterSchedulerServer(srv, e)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	var once sync.Once
	entered, release := make(chan struct{}), make(chan struct{})
	hold := grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		cs, err := streamer(ctx, desc, cc, method, opts...)
		if err != nil {
			return nil, err
		}
		return &heldStream{ClientStream: cs, once: &once, entered: entered, release: release}, nil
	})
	c, err := Dial(lis.Addr().String(), WithGRPCOptions(hold))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	first := make(chan error, 1)
	go func() {
		h, err := c.Submit(ctx, "x", []any{"a"})
		if err == nil && h.ID != `task-["a"]` {
			err = errors.New("answered with " + h.ID)
		}
		first <- err
	}()
	<-entered // the first submission's message is being sent: the send turn is taken
	bctx, giveUp := context.WithCancel(ctx)
	second := make(chan error, 1)
	go func() {
		_, err := c.Submit(bctx, "x", []any{"b"})
		second <- err
	}()
	waitFor(ctx, t, func() *struct{} { // the second waits in the stream's queue
		st := c.stream.cur
		st.mu.Lock()
		defer st.mu.Unlock()
		if len(st.queue) == 1 {
			return &struct{}{}
		}
		return nil
	})
	giveUp()
	if err := <-second; !errors.Is(err, context.Canceled) {
		t.Fatalf("the submission given up: %v", err)
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatalf("the submission being sent: %v", err)
	}
	if h, err := c.Submit(ctx, "x", []any{"c"}); err != nil || h.ID != `task-["c"]` {
		t.Fatalf("the next submission: %v %v", h, err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.seen) != 2 || e.seen[0] != `["a"]` || e.seen[1] != `["c"]` {
		t.Fatalf("the scheduler received %v; want the first and the third only", e.seen)
	}
}
