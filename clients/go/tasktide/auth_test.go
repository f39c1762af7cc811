package tasktide_test

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tasktide/tasktide/clients/go/tasktide"
	pb "github.com/tasktide/tasktide/clients/go/tasktidepb"
)

// refusingPlatform is a gRPC server that records the authorization metadata of every call and
// stream, answers Submit and SubmitStream, and ends every Session with the given status code.
type refusingPlatform struct {
	pb.UnimplementedSchedulerServer
	pb.UnimplementedRegistryServer
	code codes.Code

	mu       sync.Mutex
	auth     map[string][]string // method -> authorization values seen
	sessions int
}

func (p *refusingPlatform) record(ctx context.Context, method string) {
	md, _ := metadata.FromIncomingContext(ctx)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.auth[method] = append(p.auth[method], md.Get("authorization")...)
}

func (p *refusingPlatform) Submit(ctx context.Context, _ *pb.SubmitRequest) (*pb.SubmitResponse, error) {
	p.record(ctx, "Submit")
	return &pb.SubmitResponse{TaskId: "t1"}, nil
}

func (p *refusingPlatform) SubmitStream(stream grpc.BidiStreamingServer[pb.SubmitStreamRequest, pb.SubmitStreamResponse]) error {
	p.record(stream.Context(), "Submit")
	for {
		req, err := stream.Recv()
		if err != nil {
			return nil
		}
		if err := stream.Send(&pb.SubmitStreamResponse{Seq: req.GetSeq(), Result: &pb.SubmitResponse{TaskId: "t1"}}); err != nil {
			return err
		}
	}
}

func (p *refusingPlatform) Session(stream grpc.BidiStreamingServer[pb.WorkerMessage, pb.RegistryMessage]) error {
	p.record(stream.Context(), "Session")
	p.mu.Lock()
	p.sessions++
	p.mu.Unlock()
	return status.Error(p.code, "no entry")
}

func (p *refusingPlatform) sessionCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sessions
}

// ownServerOnly clears the per-service addresses of the environment (set when the suite runs against
// services in separate processes), which Dial would otherwise prefer to the address of a test's
// own server.
func ownServerOnly(t *testing.T) {
	t.Helper()
	for _, k := range []string{"TASKTIDE_SCHEDULER_ADDRESS", "TASKTIDE_REGISTRY_ADDRESS", "TASKTIDE_RESULTS_ADDRESS"} {
		t.Setenv(k, "")
	}
}

func startRefusing(t *testing.T, code codes.Code) (*refusingPlatform, string) {
	t.Helper()
	ownServerOnly(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &refusingPlatform{code: code, auth: map[string][]string{}}
	srv := grpc.NewServer()
	pb.RegisterSchedulerServer(srv, p)
	pb.RegisterRegistryServer(srv, p)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return p, lis.Addr().String()
}

func TestTokenIsSentAndRefusalStopsTheWorker(t *testing.T) {
	for _, tc := range []struct {
		code     codes.Code
		sentinel error
	}{
		{codes.PermissionDenied, tasktide.ErrPermissionDenied},
		{codes.Unauthenticated, tasktide.ErrUnauthenticated},
	} {
		t.Run(tc.code.String(), func(t *testing.T) {
			p, addr := startRefusing(t, tc.code)
			t.Setenv("TASKTIDE_TOKEN", "s3cret")
			c, err := tasktide.Dial(addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if _, err := c.Submit(ctx, "go.x", nil); err != nil {
				t.Fatal(err)
			}
			err = tasktide.NewWorker(c, tasktide.WorkerOptions{}).Run(ctx)
			if !errors.Is(err, tc.sentinel) || ctx.Err() != nil {
				t.Fatalf("Run: %v; want %v before the test's deadline", err, tc.sentinel)
			}
			if n := p.sessionCount(); n != 1 {
				t.Fatalf("%d sessions opened; a refused worker must not reconnect", n)
			}
			p.mu.Lock()
			defer p.mu.Unlock()
			for _, m := range []string{"Submit", "Session"} {
				if got := p.auth[m]; len(got) != 1 || got[0] != "Bearer s3cret" {
					t.Errorf("%s: authorization %q", m, got)
				}
			}
		})
	}
}

// WithToken overrides TASKTIDE_TOKEN; other errors of a session are retried.
func TestOtherSessionErrorsReconnect(t *testing.T) {
	p, addr := startRefusing(t, codes.Internal)
	t.Setenv("TASKTIDE_TOKEN", "from-env")
	c, err := tasktide.Dial(addr, tasktide.WithToken("given"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tasktide.NewWorker(c, tasktide.WorkerOptions{}).Run(ctx) }()
	for p.sessionCount() < 2 {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if got := p.auth["Session"]; len(got) < 2 || got[0] != "Bearer given" {
		t.Errorf("authorization %q", got)
	}
}
