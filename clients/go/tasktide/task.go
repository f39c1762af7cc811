package tasktide

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// HandlerFunc runs one task attempt. args are the positional arguments as JSON values, kwargs the
// keyword arguments. The return value is encoded as JSON and becomes the task's result; an error
// (or a panic) becomes a FAILURE with the error's type and message, unless it is a *RetryError.
// ctx ends when the task is cancelled or its soft time limit passes; TaskInfoFrom(ctx) describes
// the attempt and Progress(ctx, ...) reports progress.
type HandlerFunc func(ctx context.Context, args []json.RawMessage, kwargs map[string]json.RawMessage) (any, error)

// TaskOption sets an option of a registered task.
type TaskOption func(*taskConfig)

type taskConfig struct {
	maxRetries int
	backoff    time.Duration
	backoffMax time.Duration
}

// MaxRetries lets the task ask for up to n retries (by returning Retry) when the submission did
// not set a retry policy of its own; retries wait backoff, doubling each attempt, up to 10 minutes.
func MaxRetries(n int, backoff time.Duration) TaskOption {
	return func(c *taskConfig) { c.maxRetries, c.backoff, c.backoffMax = n, backoff, 10*time.Minute }
}

// RetryError asks for another attempt of the task.
type RetryError struct {
	Countdown time.Duration // < 0: the retry policy's backoff
	Cause     error
}

func (e *RetryError) Error() string {
	if e.Cause == nil {
		return "retry requested"
	}
	return "retry requested: " + e.Cause.Error()
}

func (e *RetryError) Unwrap() error { return e.Cause }

// Retry returns an error asking for another attempt after countdown (a negative countdown uses
// the retry policy's backoff). When no retries are left the task fails with cause.
func Retry(countdown time.Duration, cause error) error {
	return &RetryError{Countdown: countdown, Cause: cause}
}

// TypedError lets an error name its type in the task's outcome (by default the Go type's name).
type TypedError interface {
	error
	ErrorType() string
}

// NewError returns an error whose outcome carries the given type, for example "shop.OutOfStock".
func NewError(typ, message string) error { return &namedError{typ: typ, msg: message} }

type namedError struct{ typ, msg string }

func (e *namedError) Error() string     { return e.msg }
func (e *namedError) ErrorType() string { return e.typ }

// errorType names an error for an outcome: ErrorType() if it has one, else its Go type.
func errorType(err error) string {
	var t TypedError
	if errors.As(err, &t) {
		return t.ErrorType()
	}
	name := fmt.Sprintf("%T", err)
	if len(name) > 0 && name[0] == '*' {
		name = name[1:]
	}
	return name
}

// TaskInfo describes the attempt a handler runs.
type TaskInfo struct {
	ID       string
	Name     string
	Queue    string
	Attempt  int               // 0 for the first attempt
	Delivery int               // 1 for the first delivery
	WorkerID string            // the worker running it
	Headers  map[string]string // the task's headers (W3C trace context, user headers); a copy
	report   func(value float64, message string)
}

// WorkerHook observes a worker's attempts; the tracing plug-in (package tasktideotel) is one.
// StartAttempt is called before the handler runs, with the handler's context, and returns the
// context the handler gets (for example with a span in it) and a function called once with the
// attempt's outcome (nil: nothing to call).
type WorkerHook interface {
	StartAttempt(ctx context.Context, info TaskInfo) (context.Context, func(AttemptOutcome))
}

// AttemptOutcome is how an attempt ended, for hooks.
type AttemptOutcome struct {
	Kind         string // "success", "failure", "retry", "cancelled", "timeout", or "released" (given up at shutdown)
	ErrorType    string
	ErrorMessage string
	Traceback    string
}

type infoKey struct{}

// TaskInfoFrom gives the attempt's description from a handler's context.
func TaskInfoFrom(ctx context.Context) (TaskInfo, bool) {
	info, ok := ctx.Value(infoKey{}).(*TaskInfo)
	if !ok {
		return TaskInfo{}, false
	}
	return *info, true
}

// Progress reports progress of the running task (streamed to watchers); a no-op outside a task.
func Progress(ctx context.Context, value float64, message string) {
	if info, ok := ctx.Value(infoKey{}).(*TaskInfo); ok && info.report != nil {
		info.report(value, message)
	}
}

// DecodeArgs decodes positional arguments into dst, one pointer per argument, in order.
func DecodeArgs(args []json.RawMessage, dst ...any) error {
	if len(args) != len(dst) {
		return NewError("tasktide.BadArguments", fmt.Sprintf("expected %d arguments, got %d", len(dst), len(args)))
	}
	for i, d := range dst {
		if err := json.Unmarshal(args[i], d); err != nil {
			return NewError("tasktide.BadArguments", fmt.Sprintf("argument %d: %v", i, err))
		}
	}
	return nil
}
