package tasktide

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "github.com/tasktide/tasktide/clients/go/tasktidepb"
)

func followed(c *Client) int {
	c.follow.mu.Lock()
	defer c.follow.mu.Unlock()
	return len(c.follow.waiters)
}

// Many Gets at once wait on one Follow stream, each answered with its own task's result.
func TestManyGetsShareOneFollowStream(t *testing.T) {
	c := platformClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	q := "go-follow-" + time.Now().Format("150405.000000")
	w := NewWorker(c, WorkerOptions{Queues: []string{q}, Concurrency: 4})
	w.Register("go.double", func(_ context.Context, args []json.RawMessage, _ map[string]json.RawMessage) (any, error) {
		var n int
		if err := json.Unmarshal(args[0], &n); err != nil {
			return nil, err
		}
		return 2 * n, nil
	})
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	defer func() { stop(); <-done }()

	const n = 200
	handles := make([]*Handle, n)
	for i := range n {
		h, err := c.Submit(ctx, "go.double", []any{i}, WithQueue(q))
		if err != nil {
			t.Fatal(err)
		}
		handles[i] = h
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i, h := range handles {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := Result[int](ctx, h)
			if err != nil || got != 2*i {
				errs <- fmt.Errorf("task %d: %v %v", i, got, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if opened := c.follow.opened.Load(); opened != 1 {
		t.Fatalf("%d Follow streams opened for %d concurrent Gets; want 1", opened, n)
	}
	if left := followed(c); left != 0 {
		t.Fatalf("%d ids still followed after every Get returned", left)
	}
	// An id answered already is answered again when a Get names it again.
	if got, err := Result[int](ctx, handles[7]); err != nil || got != 14 {
		t.Fatalf("second Get of a finished task: %v %v", got, err)
	}
}

// A Get whose context ends returns its error and leaves nothing followed; a later Get of the same
// task is answered once it runs.
func TestAGetThatGivesUpIsForgotten(t *testing.T) {
	c := platformClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	q := "go-follow-late-" + time.Now().Format("150405.000000")
	h, err := c.Submit(ctx, "go.late", []any{}, WithQueue(q))
	if err != nil {
		t.Fatal(err)
	}
	short, stopShort := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err = h.Get(short)
	stopShort()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Get of a task no worker runs: %v; want DeadlineExceeded", err)
	}
	if left := followed(c); left != 0 {
		t.Fatalf("%d ids followed after the Get gave up", left)
	}
	w := NewWorker(c, WorkerOptions{Queues: []string{q}, Concurrency: 1})
	w.Register("go.late", func(context.Context, []json.RawMessage, map[string]json.RawMessage) (any, error) { return "late", nil })
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	defer func() { stop(); <-done }()
	if got, err := Result[string](ctx, h); err != nil || got != "late" {
		t.Fatalf("Get once a worker runs it: %v %v", got, err)
	}
}

// standIn is a results service on loopback for the cases the platform does not show on demand:
// an older server without Follow, and a Follow stream that breaks.
type standIn struct {
	pb.UnimplementedResultsServer
	follow  bool         // serve Follow (else UNIMPLEMENTED)
	streams atomic.Int32 // Follow streams opened
	waits   atomic.Int32 // Wait calls
	named   sync.Map     // task id -> times named on a Follow stream
}

func (s *standIn) Wait(_ context.Context, req *pb.WaitRequest) (*pb.TaskResult, error) {
	s.waits.Add(1)
	return final(req.GetTaskId()), nil
}

func final(id string) *pb.TaskResult {
	return &pb.TaskResult{TaskId: id, Found: true, State: pb.TaskState_TASK_STATE_SUCCEEDED, Result: &pb.Payload{Kind: &pb.Payload_Json{Json: []byte(`"` + id[:4] + `"`)}}}
}

// Follow: the first stream breaks (UNAVAILABLE, a service going away) once it has been named an
// id; every later stream answers each id named on it.
func (s *standIn) Follow(stream grpc.BidiStreamingServer[pb.FollowRequest, pb.FollowResponse]) error {
	if !s.follow {
		return status.Error(codes.Unimplemented, "unknown method Follow")
	}
	first := s.streams.Add(1) == 1
	for {
		req, err := stream.Recv()
		if err != nil {
			return nil
		}
		for _, id := range req.GetTaskIds() {
			n, _ := s.named.LoadOrStore(id, new(atomic.Int32))
			n.(*atomic.Int32).Add(1)
		}
		if first {
			return status.Error(codes.Unavailable, "results service going away")
		}
		resp := &pb.FollowResponse{}
		for _, id := range req.GetTaskIds() {
			resp.Results = append(resp.Results, final(id))
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

// loneListener is a loopback listener for a stand-in service, with every service of a Dial at its
// address (no per-service address from the environment).
func loneListener(t *testing.T) net.Listener {
	t.Helper()
	for _, k := range []string{"TASKTIDE_SCHEDULER_ADDRESS", "TASKTIDE_REGISTRY_ADDRESS", "TASKTIDE_RESULTS_ADDRESS"} {
		t.Setenv(k, "")
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return lis
}

func startStandIn(t *testing.T, s *standIn) *Client {
	t.Helper()
	lis := loneListener(t)
	serveResults(t, lis, s)
	return dialFor(t, lis.Addr().String())
}

// dialFor is a Client of addr, closed when the test ends.
func dialFor(t *testing.T, addr string) *Client {
	t.Helper()
	c, err := Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

const idA, idB = "aaaa0000000000000000000000000000", "bbbb0000000000000000000000000000"

// A server without Follow answers the Gets by Wait calls, and the client stops trying the stream.
func TestGetFallsBackToWaitWithoutFollow(t *testing.T) {
	s := &standIn{}
	c := startStandIn(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, id := range []string{idA, idB} {
		if got, err := Result[string](ctx, c.Handle(id)); err != nil || got != id[:4] {
			t.Fatalf("Get %s: %v %v", id, got, err)
		}
	}
	if !c.follow.unsupported.Load() {
		t.Fatal("the client did not note that the server has no Follow")
	}
	if streams, waits := s.streams.Load(), s.waits.Load(); streams != 0 || waits != 2 {
		// streams counts served Follow calls only; UNIMPLEMENTED ones return before counting
		t.Fatalf("%d Follow streams served, %d Wait calls; want 0 and 2", streams, waits)
	}
}

// A Follow stream that breaks is opened again and names the ids still awaited, which are then
// answered: the Get does not fail.
func TestAGetOutlivesABrokenFollowStream(t *testing.T) {
	s := &standIn{follow: true}
	c := startStandIn(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if got, err := Result[string](ctx, c.Handle(idA)); err != nil || got != "aaaa" {
		t.Fatalf("Get across a broken stream: %v %v", got, err)
	}
	if streams := s.streams.Load(); streams != 2 {
		t.Fatalf("%d Follow streams; want 2 (the broken one, then its replacement)", streams)
	}
	n, _ := s.named.Load(idA)
	if n == nil || n.(*atomic.Int32).Load() != 2 {
		t.Fatalf("the id was not named again on the new stream")
	}
	if waits := s.waits.Load(); waits != 0 {
		t.Fatalf("%d Wait calls; the stream should have served the Get", waits)
	}
}

// A malformed id never reaches the stream (one bad id would end it for every Get): its Get makes
// a Wait call, which reports the error of that call alone.
func TestAMalformedIDIsNotNamedOnTheStream(t *testing.T) {
	s := &standIn{follow: true}
	c := startStandIn(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, _ = c.Handle("not-a-task-id").Get(ctx)
	if streams, waits := s.streams.Load(), s.waits.Load(); streams != 0 || waits != 1 {
		t.Fatalf("%d Follow streams, %d Wait calls; want 0 and 1", streams, waits)
	}
}

// Nothing answers at the address: after a few streams lost in a row the Get goes to a Wait call,
// which reports ErrUnavailable, rather than waiting for as long as ctx allows.
func TestGetOnAnUnreachablePlatformReportsIt(t *testing.T) {
	lis := loneListener(t)
	addr := lis.Addr().String()
	_ = lis.Close() // a port nothing listens on
	c := dialFor(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := c.Handle(idA).Get(ctx); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Get with nothing at %s: %v; want ErrUnavailable", addr, err)
	}
	if ctx.Err() != nil {
		t.Fatal("the Get waited until its context ended")
	}
}

// accepting is a results service on loopback whose Follow accepts each stream at once (the header
// the platform sends) and, when answer is set, answers each id named on it.
type accepting struct {
	pb.UnimplementedResultsServer
	answer bool
}

func (s *accepting) Follow(stream grpc.BidiStreamingServer[pb.FollowRequest, pb.FollowResponse]) error {
	if err := stream.SendHeader(metadata.Pairs(followHeader, "1")); err != nil {
		return err
	}
	for {
		req, err := stream.Recv()
		if err != nil {
			return nil
		}
		if !s.answer {
			continue
		}
		resp := &pb.FollowResponse{}
		for _, id := range req.GetTaskIds() {
			resp.Results = append(resp.Results, final(id))
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

func serveResults(t *testing.T, lis net.Listener, s pb.ResultsServer) *grpc.Server {
	t.Helper()
	srv := grpc.NewServer()
	pb.RegisterResultsServer(srv, s)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return srv
}

// The service accepted the Client's stream, then went away for longer than a platform never
// reached is tried for (maxFollowFailures streams refused, about 3 s): the Get waits for it to be
// back and is answered on a new stream, not sent to Wait calls (which would fail: nothing serves
// Wait here).
func TestAGetOutlivesASlowRestartOfAServiceThatAcceptedItsStream(t *testing.T) {
	lis := loneListener(t)
	addr := lis.Addr().String()
	srv := serveResults(t, lis, &accepting{})
	c := dialFor(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	type outcome struct {
		got string
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		got, err := Result[string](ctx, c.Handle(idA))
		done <- outcome{got, err}
	}()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		c.follow.mu.Lock()
		reached := c.follow.reached
		c.follow.mu.Unlock()
		if reached {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the service's header did not mark the stream accepted")
		}
	}
	srv.Stop()
	time.Sleep(4 * time.Second)
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	serveResults(t, lis, &accepting{answer: true})
	if o := <-done; o.err != nil || o.got != "aaaa" {
		t.Fatalf("Get across a slow restart: %q %v", o.got, o.err)
	}
	if opened := c.follow.opened.Load(); opened < 3 {
		t.Fatalf("%d Follow streams; want the first and the ones opened through the outage", opened)
	}
}
