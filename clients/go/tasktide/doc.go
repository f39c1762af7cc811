// Package tasktide is the Go client of the tasktide task platform: it submits tasks by name and
// reads their results, and it runs Go functions as tasks in a worker that speaks the registry's
// Session protocol. Tasks and workers in any language interoperate: a Go program can submit a task
// that a Python worker runs, and a Go worker can run tasks submitted from Python.
//
// Payloads are JSON: positional arguments are a JSON array, keyword arguments a JSON object, and
// results any JSON value. Func, Func2 and Func3 adapt typed functions (arguments decoded into
// parameters or a struct, the result encoded). WorkerHook observes attempts; package
// tasktideotel is the OpenTelemetry plug-in (this package does not import OpenTelemetry). Errors come back as data (a type, a message and a traceback), returned
// by Handle.Get as a *TaskFailed.
//
// Errors of this package:
//
//	*TaskFailed   the task ran and failed, was cancelled, expired or is dead; carries the remote error
//	*Error        the platform answered with an error status; matches ErrNotFound, ErrUnavailable,
//	              ErrInvalidArgument, ErrResourceExhausted, ErrUnauthenticated,
//	              ErrPermissionDenied with errors.Is (Worker.Run returns the last two)
//	ctx.Err()     the caller's context ended first
package tasktide
