package tasktide

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	pb "github.com/tasktide/tasktide/clients/go/tasktidepb"
)

// NewSpec builds the protocol's TaskSpec for a task named name with positional args.
func NewSpec(name string, args []any, opts ...SubmitOption) (*pb.TaskSpec, error) {
	if args == nil {
		args = []any{}
	}
	b, err := json.Marshal(args)
	if err != nil {
		return nil, fmt.Errorf("tasktide: args are not JSON-compatible: %w", err)
	}
	spec := &pb.TaskSpec{
		Name:   name,
		Args:   &pb.Payload{Kind: &pb.Payload_Json{Json: b}},
		Kwargs: &pb.Payload{Kind: &pb.Payload_Json{Json: []byte("{}")}},
	}
	retryOf(spec)
	for _, o := range opts {
		if err := o(spec); err != nil {
			return nil, err
		}
	}
	return spec, nil
}

// Submit submits the task named name with positional args and returns its handle once the
// platform holds the task. It is safe to call from many goroutines: on the default transport
// (TransportStream) their submissions share one stream and are written together.
func (c *Client) Submit(ctx context.Context, name string, args []any, opts ...SubmitOption) (*Handle, error) {
	spec, err := NewSpec(name, args, opts...)
	if err != nil {
		return nil, err
	}
	resp, err := c.submitOne(ctx, spec)
	if err != nil {
		return nil, err
	}
	return &Handle{ID: resp.GetTaskId(), Name: name, Existing: resp.GetExisting(), client: c}, nil
}

// Call is one task of SubmitBatch.
type Call struct {
	Name    string
	Args    []any
	Options []SubmitOption
}

// SubmitBatch submits many tasks in one request; handles come back in the order of calls.
func (c *Client) SubmitBatch(ctx context.Context, calls ...Call) ([]*Handle, error) {
	specs := make([]*pb.TaskSpec, len(calls))
	for i, call := range calls {
		spec, err := NewSpec(call.Name, call.Args, call.Options...)
		if err != nil {
			return nil, err
		}
		specs[i] = spec
	}
	resp, err := c.scheduler.SubmitBatch(ctx, &pb.SubmitBatchRequest{Specs: specs})
	if err != nil {
		return nil, wrap(ctx, "SubmitBatch", err)
	}
	if len(resp.GetResults()) != len(calls) {
		return nil, fmt.Errorf("tasktide: SubmitBatch: %d results for %d tasks", len(resp.GetResults()), len(calls))
	}
	handles := make([]*Handle, len(calls))
	for i, r := range resp.GetResults() {
		handles[i] = &Handle{ID: r.GetTaskId(), Name: calls[i].Name, Existing: r.GetExisting(), client: c}
	}
	return handles, nil
}

// Handle is a submitted task.
type Handle struct {
	ID       string
	Name     string
	Existing bool // the idempotency key named a task that already existed
	client   *Client
}

// Handle gives the handle of a task submitted elsewhere, by its id.
func (c *Client) Handle(taskID string) *Handle { return &Handle{ID: taskID, client: c} }

// waitSlice bounds one Wait call on the server; Get loops for longer waits.
const waitSlice = 30 * time.Second

// Get waits until the task is final and returns its result as JSON text. A task that did not
// succeed returns a *TaskFailed with the remote error. Get waits as long as ctx allows: on the
// Client's Follow stream (follow.go), shared by every Get, or by Wait calls where the stream
// cannot serve it.
func (h *Handle) Get(ctx context.Context) (json.RawMessage, error) {
	if h.client.follow != nil {
		res, err := h.client.follow.wait(ctx, h.ID)
		if err == nil {
			return unwrapResult(res)
		}
		if !errors.Is(err, errUseWait) {
			return nil, err
		}
	}
	for {
		slice := waitSlice
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < slice {
			slice = time.Until(dl)
		}
		if slice <= 0 {
			return nil, context.DeadlineExceeded
		}
		callCtx, cancel := context.WithTimeout(ctx, slice+5*time.Second)
		res, err := h.client.results.Wait(callCtx, &pb.WaitRequest{TaskId: h.ID, Timeout: slice.Seconds()})
		cancel()
		if err != nil {
			return nil, wrap(ctx, "Wait", err)
		}
		if State(res.GetState()).Final() {
			return unwrapResult(res)
		}
	}
}

// GetInto waits like Get and decodes a successful result into dst.
func (h *Handle) GetInto(ctx context.Context, dst any) error {
	raw, err := h.Get(ctx)
	if err != nil {
		return err
	}
	return json.Unmarshal(raw, dst)
}

// Result waits for the task of h and decodes its result as a T.
func Result[T any](ctx context.Context, h *Handle) (T, error) {
	var v T
	err := h.GetInto(ctx, &v)
	return v, err
}

// Status is the task's state now.
func (h *Handle) Status(ctx context.Context) (State, error) { return h.client.Status(ctx, h.ID) }

// Cancel cancels the task; see Client.Cancel.
func (h *Handle) Cancel(ctx context.Context) (State, error) { return h.client.Cancel(ctx, h.ID) }

func unwrapResult(res *pb.TaskResult) (json.RawMessage, error) {
	state := State(res.GetState())
	if state == StateSucceeded {
		return payloadJSON(res.GetResult(), "null"), nil
	}
	e := res.GetError()
	typ := e.GetType()
	if typ == "" {
		typ = state.String()
	}
	return nil, &TaskFailed{TaskID: res.GetTaskId(), State: state, Type: typ, Message: e.GetMessage(), Traceback: e.GetTraceback()}
}

// payloadJSON is the JSON text of a payload, or def when it holds none.
func payloadJSON(p *pb.Payload, def string) json.RawMessage {
	if b := p.GetJson(); len(b) > 0 {
		return json.RawMessage(b)
	}
	return json.RawMessage(def)
}
