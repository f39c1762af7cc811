package tasktide

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"

	pb "github.com/tasktide/tasktide/clients/go/tasktidepb"
)

// How Client.Submit sends a task (SubmitBatch is always one call).
const (
	// TransportStream (the default) sends each task on a long-lived SubmitStream shared by the
	// Client's goroutines and waits for its answer, so a returned Handle is a task the platform
	// holds. Many submissions are in flight at once on one stream; those made while a message is
	// being sent share the next message (when the scheduler takes several per message), and the
	// scheduler writes what arrives together in one Redis round trip.
	TransportStream = "stream"
	// TransportUnary makes one Submit call per task.
	TransportUnary = "unary"
)

// WithSubmitTransport chooses how Submit sends tasks: TransportStream (default) or
// TransportUnary. Without this option TASKTIDE_SUBMIT_TRANSPORT decides; an unknown name is
// Dial's error.
func WithSubmitTransport(name string) DialOption {
	return func(c *dialConfig) { c.submitTransport = name }
}

// SubmitHook sees each task submitted on the stream transport before it is sent: it may write
// into the spec (trace context in its headers) and returns the context the submission runs in
// and a function called with its outcome. Unary Submit and SubmitBatch calls go through gRPC
// interceptors instead (WithGRPCOptions), so a plug-in that traces both provides both.
type SubmitHook interface {
	StartSubmit(ctx context.Context, spec *pb.TaskSpec) (context.Context, func(taskID string, err error))
}

// WithSubmitHook adds a hook for submissions on the stream transport; hooks run in order.
func WithSubmitHook(h SubmitHook) DialOption {
	return func(c *dialConfig) { c.submitHooks = append(c.submitHooks, h) }
}

// streamChosen reports whether the named transport is the stream one.
func streamChosen(name string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(name)) {
	case "", TransportStream:
		return true, nil
	case TransportUnary:
		return false, nil
	}
	return false, fmt.Errorf("tasktide: unknown submit transport %q (%s or %s)", name, TransportStream, TransportUnary)
}

// submitOne sends one task by the Client's transport.
func (c *Client) submitOne(ctx context.Context, spec *pb.TaskSpec) (*pb.SubmitResponse, error) {
	if c.stream == nil || c.stream.unsupported.Load() {
		resp, err := c.scheduler.Submit(ctx, &pb.SubmitRequest{Spec: spec})
		return resp, wrap(ctx, "Submit", err)
	}
	ends := make([]func(string, error), 0, len(c.hooks))
	hctx := ctx
	for _, h := range c.hooks {
		var end func(string, error)
		hctx, end = h.StartSubmit(hctx, spec)
		ends = append(ends, end)
	}
	resp, err := c.stream.submit(hctx, spec)
	for i := len(ends) - 1; i >= 0; i-- {
		ends[i](resp.GetTaskId(), err)
	}
	var e *Error
	if errors.As(err, &e) && e.Op == "SubmitStream" && e.code == codes.Unimplemented {
		// A scheduler without SubmitStream refused the stream itself, so this task was not
		// taken: it and every later one go by Submit calls.
		c.stream.unsupported.Store(true)
		return c.submitOne(ctx, spec)
	}
	return resp, err
}
