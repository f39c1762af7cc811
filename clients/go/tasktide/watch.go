package tasktide

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"iter"
	"time"

	pb "github.com/tasktide/tasktide/clients/go/tasktidepb"
)

// Event is one entry of a task's event log: a change of state, or a progress report.
type Event struct {
	TaskID       string
	Cursor       string // resume a Watch after this event with WatchOptions.Cursors
	State        State
	At           time.Time
	Attempt      int
	Name         string
	Queue        string
	WorkerID     string
	Result       json.RawMessage // with a SUCCEEDED event
	Error        *TaskFailed     // with a failed, cancelled, expired or dead event
	Progress     float64
	Message      string
	ProgressOnly bool // a progress report, not a change of state
}

// WatchOptions tune Watch. The zero value streams every event until each task is final.
type WatchOptions struct {
	Cursors   map[string]string // task id -> cursor of the last event already seen
	FinalOnly bool              // only the final event of each task
	KeepOpen  bool              // keep streaming after every task is final, until ctx ends
}

// Watch streams the events of the given tasks, from the start of their logs (or after the given
// cursors), so nothing is lost for a late subscriber. The sequence ends when every task is final,
// when ctx ends, or with an error.
func (c *Client) Watch(ctx context.Context, taskIDs []string, opts WatchOptions) iter.Seq2[*Event, error] {
	return func(yield func(*Event, error) bool) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stream, err := c.results.Watch(ctx, &pb.WatchRequest{
			TaskIds: taskIDs, Cursors: opts.Cursors, UntilFinal: !opts.KeepOpen, FinalOnly: opts.FinalOnly,
		})
		if err != nil {
			yield(nil, wrap(ctx, "Watch", err))
			return
		}
		for {
			ev, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				yield(nil, wrap(ctx, "Watch", err))
				return
			}
			if !yield(eventFromProto(ev), nil) {
				return
			}
		}
	}
}

func eventFromProto(ev *pb.TaskEvent) *Event {
	e := &Event{
		TaskID: ev.GetTaskId(), Cursor: ev.GetCursor(), State: State(ev.GetState()),
		At: time.UnixMilli(ev.GetAtMs()), Attempt: int(ev.GetAttempt()), Name: ev.GetName(),
		Queue: ev.GetQueue(), WorkerID: ev.GetWorkerId(), Progress: ev.GetProgress(),
		Message: ev.GetMessage(), ProgressOnly: ev.GetProgressOnly(),
	}
	if e.State == StateSucceeded && !e.ProgressOnly {
		e.Result = payloadJSON(ev.GetResult(), "null")
	}
	if te := ev.GetError(); te != nil && (te.GetType() != "" || te.GetMessage() != "") {
		e.Error = &TaskFailed{TaskID: e.TaskID, State: e.State, Type: te.GetType(), Message: te.GetMessage(), Traceback: te.GetTraceback()}
	}
	return e
}
