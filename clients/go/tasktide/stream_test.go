package tasktide_test

import (
	"context"
	"errors"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tasktide/tasktide/clients/go/tasktide"
	pb "github.com/tasktide/tasktide/clients/go/tasktidepb"
)

// callCounter counts the scheduler calls and streams a client opens, by method.
type callCounter struct {
	mu    sync.Mutex
	calls map[string]int
}

func (c *callCounter) add(method string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls[method]++
}

func (c *callCounter) count(method string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[method]
}

func (c *callCounter) option() tasktide.DialOption {
	return tasktide.WithGRPCOptions(
		grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			c.add(method)
			return invoker(ctx, method, req, reply, cc, opts...)
		}),
		grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			c.add(method)
			return streamer(ctx, desc, cc, method, opts...)
		}),
	)
}

func dialCounted(t *testing.T, opts ...tasktide.DialOption) (*tasktide.Client, *callCounter) {
	t.Helper()
	addr := os.Getenv("TASKTIDE_ADDRESS")
	if addr == "" {
		t.Skip("TASKTIDE_ADDRESS is not set")
	}
	counter := &callCounter{calls: map[string]int{}}
	c, err := tasktide.Dial(addr, append([]tasktide.DialOption{counter.option()}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, counter
}

const (
	submitMethod       = "/tasktide.v1.Scheduler/Submit"
	submitStreamMethod = "/tasktide.v1.Scheduler/SubmitStream"
)

// Submissions from many goroutines share one stream, each confirmed with its own task's id.
func TestConcurrentSubmitsShareOneStream(t *testing.T) {
	c, counter := dialCounted(t)
	ctx := testContext(t)
	q := newQueue(t)
	const n = 300
	ids := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h, err := c.Submit(ctx, "go.noop", []any{i}, tasktide.WithQueue(q))
			if err == nil {
				ids[i] = h.ID
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("submission %d: %v", i, err)
		}
		if ids[i] == "" || seen[ids[i]] {
			t.Fatalf("submission %d: id %q empty or given twice", i, ids[i])
		}
		seen[ids[i]] = true
	}
	if s, u := counter.count(submitStreamMethod), counter.count(submitMethod); s != 1 || u != 0 {
		t.Fatalf("%d streams and %d Submit calls; want 1 stream and no Submit call", s, u)
	}
	// Every answer is a task the platform holds, with its arguments.
	for _, i := range []int{0, n / 2, n - 1} {
		task, err := c.SchedulerService().GetTask(ctx, &pb.GetTaskRequest{TaskId: ids[i]})
		if err != nil {
			t.Fatalf("task %d: %v", i, err)
		}
		if got := string(task.GetSpec().GetArgs().GetJson()); got != "["+strconv.Itoa(i)+"]" {
			t.Fatalf("task %d has args %s", i, got)
		}
	}
}

// A refused submission gets its own error; the stream goes on and the next one is accepted on it.
func TestRefusedSubmissionLeavesTheStreamOpen(t *testing.T) {
	c, counter := dialCounted(t)
	ctx := testContext(t)
	q := newQueue(t)
	_, err := c.Submit(ctx, "go.noop", nil, tasktide.WithQueue(q), tasktide.WithPriority(500))
	if !errors.Is(err, tasktide.ErrInvalidArgument) {
		t.Fatalf("priority 500: %v; want ErrInvalidArgument", err)
	}
	var e *tasktide.Error
	if !errors.As(err, &e) || e.Message == "" {
		t.Fatalf("the refusal says nothing: %#v", err)
	}
	if _, err := c.Submit(ctx, "go.noop", nil, tasktide.WithQueue(q)); err != nil {
		t.Fatal(err)
	}
	if s := counter.count(submitStreamMethod); s != 1 {
		t.Fatalf("%d streams opened; the refusal must not end the stream", s)
	}
}

// TransportUnary (or TASKTIDE_SUBMIT_TRANSPORT=unary) makes a Submit call per task; an unknown
// transport is Dial's error.
func TestSubmitTransportChoice(t *testing.T) {
	c, counter := dialCounted(t, tasktide.WithSubmitTransport(tasktide.TransportUnary))
	ctx := testContext(t)
	if _, err := c.Submit(ctx, "go.noop", nil, tasktide.WithQueue(newQueue(t))); err != nil {
		t.Fatal(err)
	}
	if s, u := counter.count(submitStreamMethod), counter.count(submitMethod); s != 0 || u != 1 {
		t.Fatalf("%d streams and %d Submit calls; want a Submit call", s, u)
	}
	t.Setenv("TASKTIDE_SUBMIT_TRANSPORT", "carrier-pigeon")
	if _, err := tasktide.Dial("127.0.0.1:1"); err == nil {
		t.Fatal("Dial accepted an unknown submit transport")
	}
}

// A context that ends before the answer ends the wait with its error; the client goes on.
func TestSubmitStreamContextEnds(t *testing.T) {
	c := dial(t)
	ctx, cancel := context.WithCancel(testContext(t))
	cancel()
	if _, err := c.Submit(ctx, "go.noop", nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled context: %v", err)
	}
	if _, err := c.Submit(testContext(t), "go.noop", nil, tasktide.WithQueue(newQueue(t))); err != nil {
		t.Fatal(err)
	}
}

// unaryOnly is a scheduler without SubmitStream (an older platform): it answers Submit only.
type unaryOnly struct {
	pb.UnimplementedSchedulerServer
	submits atomic.Int32
}

func (u *unaryOnly) Submit(context.Context, *pb.SubmitRequest) (*pb.SubmitResponse, error) {
	u.submits.Add(1)
	return &pb.SubmitResponse{TaskId: "t1"}, nil
}

// Against a scheduler that does not know SubmitStream, submissions go by Submit calls.
func TestSchedulerWithoutStreamGetsSubmitCalls(t *testing.T) {
	u := &unaryOnly{}
	c := serveScheduler(t, u)
	for range 2 {
		h, err := c.Submit(testContext(t), "go.x", nil)
		if err != nil || h.ID != "t1" {
			t.Fatalf("Submit: %v %v", h, err)
		}
	}
	if n := u.submits.Load(); n != 2 {
		t.Fatalf("%d Submit calls; want 2", n)
	}
}

// breakingScheduler ends its first SubmitStream with UNAVAILABLE once a request arrives (a
// scheduler going away mid-stream) and answers every later stream.
type breakingScheduler struct {
	pb.UnimplementedSchedulerServer
	streams atomic.Int32
}

func (b *breakingScheduler) SubmitStream(stream grpc.BidiStreamingServer[pb.SubmitStreamRequest, pb.SubmitStreamResponse]) error {
	first := b.streams.Add(1) == 1
	for {
		req, err := stream.Recv()
		if err != nil {
			return nil
		}
		if first {
			return status.Error(codes.Unavailable, "scheduler going away")
		}
		if err := stream.Send(&pb.SubmitStreamResponse{Seq: req.GetSeq(), Result: &pb.SubmitResponse{TaskId: "t2"}}); err != nil {
			return err
		}
	}
}

// A stream that breaks fails the submissions in flight with ErrUnavailable; the next submission
// opens a new stream.
func TestBrokenStreamFailsItsSubmissionsAndReopens(t *testing.T) {
	b := &breakingScheduler{}
	c := serveScheduler(t, b)
	ctx := testContext(t)
	if _, err := c.Submit(ctx, "go.x", nil); !errors.Is(err, tasktide.ErrUnavailable) {
		t.Fatalf("submission on the broken stream: %v; want ErrUnavailable", err)
	}
	h, err := c.Submit(ctx, "go.x", nil)
	if err != nil || h.ID != "t2" {
		t.Fatalf("submission after the break: %v %v", h, err)
	}
	if n := b.streams.Load(); n != 2 {
		t.Fatalf("%d streams opened; want 2", n)
	}
}
