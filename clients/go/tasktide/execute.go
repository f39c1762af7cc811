package tasktide

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"runtime/debug"
	"sync"
	"time"

	pb "github.com/tasktide/tasktide/clients/go/tasktidepb"
)

var (
	errCancelled = errors.New("tasktide: the task was cancelled")
	errStopped   = errors.New("tasktide: the worker stopped while it had no session; the task will be delivered again")
	errShutdown  = errors.New("tasktide: the worker's shutdown limit passed; the task was released")
)

// attempt is a running task, as cancel signals reach it.
type attempt struct {
	ctx         context.Context // the handler's context, before its soft time limit
	cancel      context.CancelCauseFunc
	hard        chan struct{} // closed when the cancel grace period is over
	abandoned   chan struct{} // closed when the worker gives the task up (its lease is released)
	once        sync.Once
	abandonOnce sync.Once
}

func newAttempt(ctx context.Context, cancel context.CancelCauseFunc) *attempt {
	return &attempt{ctx: ctx, cancel: cancel, hard: make(chan struct{}), abandoned: make(chan struct{})}
}

// abandon ends the task's context and stops waiting for it; its outcome is not sent.
func (a *attempt) abandon(cause error) {
	a.cancel(cause)
	a.abandonOnce.Do(func() { close(a.abandoned) })
}

// signal cancels the task's context and, after grace, stops waiting for it.
func (a *attempt) signal(grace time.Duration) {
	a.cancel(errCancelled)
	a.once.Do(func() { time.AfterFunc(grace, func() { close(a.hard) }) })
}

// execute runs assignments until the worker drains, one at a time, each with a permit of the pool's
// gate. Executors outlive sessions: a task running when a session is lost finishes, and its
// outcome goes out on the next one.
func (w *Worker) execute() {
	p := w.pool
	for p.gate.acquire() {
		more := w.executeOne()
		p.gate.release()
		if !more {
			return
		}
	}
}

// executeOne takes the next assignment and runs it; false when the executor is to end.
func (w *Worker) executeOne() bool {
	p := w.pool
	select {
	case <-p.stopExec:
		return false
	case <-p.gate.recheck: // the pool shrank: give the permit up and take one again
		return true
	case a := <-p.ready:
		if p.stopping.Load() { // taken as the drain began: give it back
			ref := leaseOf(a)
			p.mu.Lock()
			delete(p.held, ref.TaskId)
			p.mu.Unlock()
			p.send(&pb.WorkerMessage{Kind: &pb.WorkerMessage_Release{Release: &pb.Release{Leases: []*pb.LeaseRef{ref}}}})
			return false
		}
		if out := w.runOne(a); out != nil {
			p.outcomes <- out // never blocks: it holds no more than the leases held
		}
		return true
	}
}

// resize lets n tasks run at a time from now on (a Resize): executors are started up to n, the
// gate lets n take assignments, and the credit the larger window needs is returned, to grant at
// once.
func (w *Worker) resize(n int) int {
	p := w.pool
	n = max(n, 1)
	p.gate.resize(n)
	p.mu.Lock()
	for ; p.executors < n; p.executors++ {
		p.execs.Add(1)
		go func() { defer p.execs.Done(); w.execute() }()
	}
	p.mu.Unlock()
	return p.credit.resize(n)
}

type handlerResult struct {
	value any
	err   error
	stack string
}

// runOne runs one attempt and turns what happened into an Outcome; nil when the worker gave the
// task up (its lease was released).
func (w *Worker) runOne(a *pb.Assignment) (outcome *pb.Outcome) {
	t := a.GetTask()
	spec := t.GetSpec()
	out := &pb.Outcome{
		TaskId: t.GetId(), Queue: spec.GetQueue(), LeaseToken: a.GetLeaseToken(), Attempt: t.GetAttempt(),
		StartedMs: time.Now().UnixMilli(), WorkerId: w.opts.WorkerID,
	}
	lease := leaseOf(a)
	info := &TaskInfo{
		ID: t.GetId(), Name: spec.GetName(), Queue: spec.GetQueue(), Attempt: int(t.GetAttempt()),
		Delivery: int(a.GetDelivery()), WorkerID: w.opts.WorkerID, Headers: maps.Clone(spec.GetHeaders()),
		report: func(value float64, message string) {
			w.pool.progress.put(&pb.ProgressReport{Lease: lease, Value: value, Message: message})
		},
	}
	if info.Headers == nil {
		info.Headers = map[string]string{}
	}
	ctx, cancel := context.WithCancelCause(w.base)
	defer cancel(nil)
	ctx = context.WithValue(ctx, infoKey{}, info)
	att := newAttempt(ctx, cancel)
	if w.pool.begin(t.GetId(), att) {
		out.FinishedMs = time.Now().UnixMilli()
		return fail(out, pb.OutcomeKind_OUTCOME_KIND_CANCELLED, "tasktide.Cancelled", "cancelled before it started", "")
	}
	defer w.pool.end(t.GetId(), att)
	started := time.Now()
	defer func() { w.pool.credit.observe(time.Since(started)) }() // the run, hooks included
	for _, h := range w.opts.Hooks {
		var finished func(AttemptOutcome)
		ctx, finished = h.StartAttempt(ctx, *info)
		if finished != nil {
			defer func() { finished(attemptOutcome(outcome)) }()
		}
	}
	defer func() {
		if outcome != nil {
			outcome.FinishedMs = time.Now().UnixMilli()
		}
	}()
	task, ok := w.lookup(spec.GetName())
	if !ok {
		msg := fmt.Sprintf("no task named %q is registered on worker %s", spec.GetName(), w.opts.WorkerID)
		return fail(out, pb.OutcomeKind_OUTCOME_KIND_FAILURE, "tasktide.UnknownTask", msg, "")
	}
	args, kwargs, err := decodePayloads(spec)
	if err != nil {
		return fail(out, pb.OutcomeKind_OUTCOME_KIND_FAILURE, "tasktide.BadArguments", err.Error(), "")
	}
	if errors.Is(context.Cause(ctx), errCancelled) { // cancelled while it was being prepared
		return fail(out, pb.OutcomeKind_OUTCOME_KIND_CANCELLED, "tasktide.Cancelled", "cancelled before it started", "")
	}
	if soft := seconds(spec.GetSoftTimeLimit()); soft > 0 {
		var stop context.CancelFunc
		ctx, stop = context.WithTimeout(ctx, soft)
		defer stop()
	}

	done := make(chan handlerResult, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				err, ok := p.(error)
				if !ok {
					err = NewError("go.panic", fmt.Sprint(p))
				}
				done <- handlerResult{err: err, stack: string(debug.Stack())}
			}
		}()
		v, err := task.fn(ctx, args, kwargs)
		done <- handlerResult{value: v, err: err}
	}()
	var hardLimit <-chan time.Time
	if hard := seconds(spec.GetTimeLimit()); hard > 0 {
		timer := time.NewTimer(hard)
		defer timer.Stop()
		hardLimit = timer.C
	}
	select {
	case r := <-done:
		return finish(out, task, a, ctx, r)
	case <-hardLimit: // the handler goes on in the background; its result is dropped
		msg := fmt.Sprintf("the task did not return within its time limit of %gs", spec.GetTimeLimit())
		return fail(out, pb.OutcomeKind_OUTCOME_KIND_TIMEOUT, "tasktide.TimeLimitExceeded", msg, "")
	case <-att.hard:
		return fail(out, pb.OutcomeKind_OUTCOME_KIND_CANCELLED, "tasktide.Cancelled", "cancelled; the task did not stop within the grace period", "")
	case <-att.abandoned: // the handler goes on in the background; its lease was released
		return nil
	}
}

// finish fills out from what the handler returned.
func finish(out *pb.Outcome, task registered, a *pb.Assignment, ctx context.Context, r handlerResult) *pb.Outcome {
	if r.err == nil {
		b, err := json.Marshal(r.value)
		if err != nil {
			return fail(out, pb.OutcomeKind_OUTCOME_KIND_FAILURE, errorType(err), "the result is not JSON-compatible: "+err.Error(), "")
		}
		out.Kind = pb.OutcomeKind_OUTCOME_KIND_SUCCESS
		out.Result = &pb.Payload{Kind: &pb.Payload_Json{Json: b}}
		return out
	}
	if errors.Is(context.Cause(ctx), errCancelled) {
		return fail(out, pb.OutcomeKind_OUTCOME_KIND_CANCELLED, "tasktide.Cancelled", r.err.Error(), r.stack)
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fail(out, pb.OutcomeKind_OUTCOME_KIND_TIMEOUT, "tasktide.SoftTimeLimitExceeded", r.err.Error(), r.stack)
	}
	var retry *RetryError
	if !errors.As(r.err, &retry) {
		return fail(out, pb.OutcomeKind_OUTCOME_KIND_FAILURE, errorType(r.err), r.err.Error(), r.stack)
	}
	cause := retry.Cause
	if cause == nil {
		cause = retry
	}
	fail(out, pb.OutcomeKind_OUTCOME_KIND_FAILURE, errorType(cause), cause.Error(), r.stack)
	policy := retryPolicy(a.GetTask().GetSpec().GetRetry(), task.cfg)
	attemptNo := a.GetTask().GetAttempt()
	if attemptNo >= policy.GetMaxRetries() {
		out.RetriesExhausted = policy.GetMaxRetries() > 0
		return out
	}
	out.Kind = pb.OutcomeKind_OUTCOME_KIND_RETRY
	if retry.Countdown >= 0 {
		out.RetryCountdown = retry.Countdown.Seconds()
	} else {
		out.RetryCountdown = backoff(policy, attemptNo)
	}
	return out
}

// retryPolicy is the submitted policy when it allows retries, else the one the task registered.
func retryPolicy(submitted *pb.RetryPolicy, cfg taskConfig) *pb.RetryPolicy {
	if submitted.GetMaxRetries() > 0 {
		return submitted
	}
	return &pb.RetryPolicy{MaxRetries: uint32(cfg.maxRetries), BackoffBase: cfg.backoff.Seconds(), BackoffMax: cfg.backoffMax.Seconds()}
}

// backoff is the seconds before attempt+1: exponential, capped, with full jitter if asked.
func backoff(p *pb.RetryPolicy, attemptNo uint32) float64 {
	if p.GetBackoffBase() <= 0 {
		return 0
	}
	d := p.GetBackoffBase() * math.Pow(2, float64(attemptNo))
	if p.GetBackoffMax() > 0 {
		d = min(d, p.GetBackoffMax())
	}
	if p.GetJitter() {
		return rand.Float64() * d
	}
	return d
}

// attemptOutcome describes an outcome for hooks; nil is a task given up (its lease released).
func attemptOutcome(out *pb.Outcome) AttemptOutcome {
	if out == nil {
		return AttemptOutcome{Kind: "released"}
	}
	o := AttemptOutcome{Kind: outcomeNames[out.GetKind()]}
	if e := out.GetError(); e != nil {
		o.ErrorType, o.ErrorMessage, o.Traceback = e.GetType(), e.GetMessage(), e.GetTraceback()
	}
	return o
}

var outcomeNames = map[pb.OutcomeKind]string{
	pb.OutcomeKind_OUTCOME_KIND_SUCCESS: "success", pb.OutcomeKind_OUTCOME_KIND_FAILURE: "failure",
	pb.OutcomeKind_OUTCOME_KIND_RETRY: "retry", pb.OutcomeKind_OUTCOME_KIND_CANCELLED: "cancelled",
	pb.OutcomeKind_OUTCOME_KIND_TIMEOUT: "timeout",
}

func fail(out *pb.Outcome, kind pb.OutcomeKind, typ, message, traceback string) *pb.Outcome {
	out.Kind = kind
	out.Error = &pb.TaskError{Type: typ, Message: message, Traceback: traceback}
	return out
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// decodePayloads reads the JSON arguments of a task (an array and an object).
func decodePayloads(spec *pb.TaskSpec) ([]json.RawMessage, map[string]json.RawMessage, error) {
	args := []json.RawMessage{}
	kwargs := map[string]json.RawMessage{}
	if spec.GetArgs().GetMessage() != nil || spec.GetKwargs().GetMessage() != nil {
		return nil, nil, errors.New("protobuf message payloads are not supported by the Go worker; send JSON")
	}
	if b := spec.GetArgs().GetJson(); len(b) > 0 {
		if err := json.Unmarshal(b, &args); err != nil {
			return nil, nil, fmt.Errorf("args are not a JSON array: %w", err)
		}
	}
	if b := spec.GetKwargs().GetJson(); len(b) > 0 {
		if err := json.Unmarshal(b, &kwargs); err != nil {
			return nil, nil, fmt.Errorf("kwargs are not a JSON object: %w", err)
		}
	}
	if args == nil {
		args = []json.RawMessage{}
	}
	if kwargs == nil {
		kwargs = map[string]json.RawMessage{}
	}
	return args, kwargs, nil
}
