package tasktide

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime/debug"
	"sync"
	"time"

	pb "github.com/tasktide/tasktide/clients/go/tasktidepb"
)

var (
	errCancelled   = errors.New("tasktide: the task was cancelled")
	errSessionLost = errors.New("tasktide: the worker lost its session; the task will be delivered again")
)

// attempt is a running task, as cancel signals reach it.
type attempt struct {
	cancel context.CancelCauseFunc
	hard   chan struct{} // closed when the cancel grace period is over
	once   sync.Once
}

// signal cancels the task's context and, after grace, stops waiting for it.
func (a *attempt) signal(grace time.Duration) {
	a.cancel(errCancelled)
	a.once.Do(func() { time.AfterFunc(grace, func() { close(a.hard) }) })
}

// execute runs assignments until the session drains or is lost.
func (s *session) execute() {
	for {
		select {
		case <-s.stopExec:
			return
		case <-s.dead:
			return
		case a := <-s.ready:
			if s.stopping.Load() { // taken as the drain began: give it back
				ref := leaseOf(a)
				s.mu.Lock()
				delete(s.held, ref.TaskId)
				s.mu.Unlock()
				s.send(&pb.WorkerMessage{Kind: &pb.WorkerMessage_Release{Release: &pb.Release{Leases: []*pb.LeaseRef{ref}}}})
				return
			}
			out := s.runOne(a)
			s.mu.Lock()
			delete(s.held, a.GetTask().GetId())
			s.mu.Unlock()
			select {
			case s.outcomes <- out:
			case <-s.dead:
				return
			}
		}
	}
}

type handlerResult struct {
	value any
	err   error
	stack string
}

// runOne runs one attempt and turns what happened into an Outcome.
func (s *session) runOne(a *pb.Assignment) *pb.Outcome {
	t := a.GetTask()
	spec := t.GetSpec()
	out := &pb.Outcome{
		TaskId: t.GetId(), Queue: spec.GetQueue(), LeaseToken: a.GetLeaseToken(), Attempt: t.GetAttempt(),
		StartedMs: time.Now().UnixMilli(), WorkerId: s.w.opts.WorkerID,
	}
	defer func() { out.FinishedMs = time.Now().UnixMilli() }()
	s.mu.Lock()
	pending := s.cancelPending[t.GetId()]
	delete(s.cancelPending, t.GetId())
	s.mu.Unlock()
	if pending {
		return fail(out, pb.OutcomeKind_OUTCOME_KIND_CANCELLED, "tasktide.Cancelled", "cancelled before it started", "")
	}
	task, ok := s.w.lookup(spec.GetName())
	if !ok {
		msg := fmt.Sprintf("no task named %q is registered on worker %s", spec.GetName(), s.w.opts.WorkerID)
		return fail(out, pb.OutcomeKind_OUTCOME_KIND_FAILURE, "tasktide.UnknownTask", msg, "")
	}
	args, kwargs, err := decodePayloads(spec)
	if err != nil {
		return fail(out, pb.OutcomeKind_OUTCOME_KIND_FAILURE, "tasktide.BadArguments", err.Error(), "")
	}

	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	if soft := seconds(spec.GetSoftTimeLimit()); soft > 0 {
		var stop context.CancelFunc
		ctx, stop = context.WithTimeout(ctx, soft)
		defer stop()
	}
	lease := leaseOf(a)
	info := &TaskInfo{
		ID: t.GetId(), Name: spec.GetName(), Queue: spec.GetQueue(), Attempt: int(t.GetAttempt()), Delivery: int(a.GetDelivery()),
		report: func(value float64, message string) {
			s.send(&pb.WorkerMessage{Kind: &pb.WorkerMessage_Progress{Progress: &pb.ProgressReport{Lease: lease, Value: value, Message: message}}})
		},
	}
	ctx = context.WithValue(ctx, infoKey{}, info)
	att := &attempt{cancel: cancel, hard: make(chan struct{})}
	s.mu.Lock()
	s.running[t.GetId()] = att
	s.mu.Unlock()
	defer func() { s.mu.Lock(); delete(s.running, t.GetId()); s.mu.Unlock() }()

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
		return s.finish(out, task, a, ctx, r)
	case <-hardLimit: // the handler goes on in the background; its result is dropped
		msg := fmt.Sprintf("the task did not return within its time limit of %gs", spec.GetTimeLimit())
		return fail(out, pb.OutcomeKind_OUTCOME_KIND_TIMEOUT, "tasktide.TimeLimitExceeded", msg, "")
	case <-att.hard:
		return fail(out, pb.OutcomeKind_OUTCOME_KIND_CANCELLED, "tasktide.Cancelled", "cancelled; the task did not stop within the grace period", "")
	}
}

// finish fills out from what the handler returned.
func (s *session) finish(out *pb.Outcome, task registered, a *pb.Assignment, ctx context.Context, r handlerResult) *pb.Outcome {
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
