package tasktide

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Sentinels matched by *Error with errors.Is.
var (
	ErrNotFound          = errors.New("tasktide: not found")
	ErrUnavailable       = errors.New("tasktide: platform unavailable")
	ErrInvalidArgument   = errors.New("tasktide: invalid argument")
	ErrResourceExhausted = errors.New("tasktide: resource exhausted")
	ErrUnauthenticated   = errors.New("tasktide: unauthenticated")
	ErrPermissionDenied  = errors.New("tasktide: permission denied")
)

// Error is an error status from the platform. Callers match it with errors.Is against the
// sentinels above, so they never need to import gRPC packages.
type Error struct {
	Op      string // the call, for example "Submit"
	Code    string // the gRPC status code name, for example "NotFound"
	Message string
	code    codes.Code
}

func (e *Error) Error() string {
	return fmt.Sprintf("tasktide: %s: %s: %s", e.Op, e.Code, e.Message)
}

// Is reports whether the error matches one of the package's sentinels.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.code == codes.NotFound
	case ErrUnavailable:
		return e.code == codes.Unavailable
	case ErrInvalidArgument:
		return e.code == codes.InvalidArgument
	case ErrResourceExhausted:
		return e.code == codes.ResourceExhausted
	case ErrUnauthenticated:
		return e.code == codes.Unauthenticated
	case ErrPermissionDenied:
		return e.code == codes.PermissionDenied
	}
	return false
}

// wrap maps an error of a gRPC call to the package's errors; the context's error wins.
func wrap(ctx context.Context, op string, err error) error {
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("tasktide: %s: %w", op, err)
	}
	return &Error{Op: op, Code: st.Code().String(), Message: st.Message(), code: st.Code()}
}

// refused reports whether err is the platform refusing the caller (bad or missing credentials, or
// not allowed): trying again will not help, so a worker stops instead of reconnecting.
func refused(err error) bool {
	switch status.Code(err) {
	case codes.Unauthenticated, codes.PermissionDenied:
		return true
	}
	return false
}

// TaskFailed is returned by Handle.Get when the task ended in a state other than SUCCEEDED:
// it failed, was cancelled, expired, or went to the dead-letter set. Type, Message and Traceback
// are the remote error as data (for a Python task, Type is the exception's qualified name).
type TaskFailed struct {
	TaskID    string
	State     State
	Type      string
	Message   string
	Traceback string
}

func (e *TaskFailed) Error() string {
	return fmt.Sprintf("task %s %s: %s: %s", e.TaskID, e.State, e.Type, e.Message)
}
