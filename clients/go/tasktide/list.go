package tasktide

import (
	"context"
	"time"

	pb "github.com/tasktide/tasktide/clients/go/tasktidepb"
)

// ListOptions filters ListTasks; the zero value lists every task, 100 per page.
type ListOptions struct {
	States    []State   // any of these; none: any state
	Name      string    // task name
	Queue     string    // queue
	WorkerID  string    // worker of the task's latest event
	ErrorType string    // TaskError type, for example "ValueError"
	Since     time.Time // changed at or after this time; zero: the server's index retention
	Until     time.Time // changed before this time; zero: now
	Limit     uint32    // tasks per page (at most 1000); 0: 100
	Cursor    string    // NextCursor of the previous page
	Counts    bool      // also count the tasks by state and by task name
}

// ListTasks lists the tasks that changed within the server's index retention, the latest changed
// first: one page, with NextCursor for the next (empty at the end), and the counts when asked.
func (c *Client) ListTasks(ctx context.Context, opts ListOptions) (*pb.ListTasksResponse, error) {
	req := &pb.ListTasksRequest{
		Name: opts.Name, Queue: opts.Queue, WorkerId: opts.WorkerID, ErrorType: opts.ErrorType,
		Limit: opts.Limit, Cursor: opts.Cursor, Counts: opts.Counts,
	}
	for _, s := range opts.States {
		req.States = append(req.States, pb.TaskState(s))
	}
	if !opts.Since.IsZero() {
		req.SinceMs = opts.Since.UnixMilli()
	}
	if !opts.Until.IsZero() {
		req.UntilMs = opts.Until.UnixMilli()
	}
	resp, err := c.results.ListTasks(ctx, req)
	if err != nil {
		return nil, wrap(ctx, "ListTasks", err)
	}
	return resp, nil
}
