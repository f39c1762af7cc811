package tasktide

import (
	"encoding/json"
	"fmt"
	"time"

	pb "github.com/tasktide/tasktide/clients/go/tasktidepb"
)

// SubmitOption sets one option of a submitted task.
type SubmitOption func(*pb.TaskSpec) error

// WithQueue sends the task to a named queue (default "default").
func WithQueue(queue string) SubmitOption {
	return func(s *pb.TaskSpec) error { s.Queue = queue; return nil }
}

// WithPriority sets the priority, -100..100; higher runs first within a queue.
func WithPriority(priority int) SubmitOption {
	return func(s *pb.TaskSpec) error { s.Priority = int32(priority); return nil }
}

// WithCountdown delays the task; the delay is held by the scheduler, not by a worker.
func WithCountdown(d time.Duration) SubmitOption {
	return func(s *pb.TaskSpec) error { s.Countdown = d.Seconds(); return nil }
}

// WithETA runs the task not before t.
func WithETA(t time.Time) SubmitOption {
	return func(s *pb.TaskSpec) error { s.EtaMs = t.UnixMilli(); return nil }
}

// WithExpires marks the task EXPIRED, never run, if it has not started by t.
func WithExpires(t time.Time) SubmitOption {
	return func(s *pb.TaskSpec) error { s.ExpiresMs = t.UnixMilli(); return nil }
}

// WithExpiresIn marks the task EXPIRED if it has not started d from now (Python: a number for
// expires, in seconds).
func WithExpiresIn(d time.Duration) SubmitOption {
	return func(s *pb.TaskSpec) error { s.ExpiresMs = time.Now().Add(d).UnixMilli(); return nil }
}

// WithIdempotencyKey makes a second submission with the same key return the existing task.
func WithIdempotencyKey(key string) SubmitOption {
	return func(s *pb.TaskSpec) error { s.IdempotencyKey = key; return nil }
}

// WithKwargs passes keyword arguments (a JSON object).
func WithKwargs(kwargs map[string]any) SubmitOption {
	return func(s *pb.TaskSpec) error {
		b, err := json.Marshal(kwargs)
		if err != nil {
			return fmt.Errorf("tasktide: kwargs are not JSON-compatible: %w", err)
		}
		s.Kwargs = &pb.Payload{Kind: &pb.Payload_Json{Json: b}}
		return nil
	}
}

// Retry policy of a submission when no option changes it, as the Python client sends it: no
// retries; if a task asks for some, backoff from 1 s doubling up to 10 minutes, with full jitter.
const (
	DefaultRetryBackoff    = time.Second
	DefaultRetryBackoffMax = 10 * time.Minute
)

func retryOf(s *pb.TaskSpec) *pb.RetryPolicy {
	if s.Retry == nil {
		s.Retry = &pb.RetryPolicy{BackoffBase: DefaultRetryBackoff.Seconds(), BackoffMax: DefaultRetryBackoffMax.Seconds(), Jitter: true}
	}
	return s.Retry
}

// WithMaxRetries allows up to n retries (Python: max_retries).
func WithMaxRetries(n int) SubmitOption {
	return func(s *pb.TaskSpec) error {
		if n < 0 {
			return fmt.Errorf("tasktide: max retries must not be negative, got %d", n)
		}
		retryOf(s).MaxRetries = uint32(n)
		return nil
	}
}

// WithRetryBackoff sets the wait before the first retry, doubling each retry up to backoffMax
// (Python: retry_backoff, retry_backoff_max, in seconds).
func WithRetryBackoff(backoff, backoffMax time.Duration) SubmitOption {
	return func(s *pb.TaskSpec) error {
		r := retryOf(s)
		r.BackoffBase, r.BackoffMax = backoff.Seconds(), backoffMax.Seconds()
		return nil
	}
}

// WithRetryJitter draws each retry's wait between zero and its backoff when on (the default), so
// tasks failing together do not retry together (Python: retry_jitter).
func WithRetryJitter(on bool) SubmitOption {
	return func(s *pb.TaskSpec) error { retryOf(s).Jitter = on; return nil }
}

// WithRetries allows up to max retries, the first after backoff, doubling up to backoffMax
// (WithMaxRetries and WithRetryBackoff in one).
func WithRetries(max int, backoff, backoffMax time.Duration) SubmitOption {
	return func(s *pb.TaskSpec) error {
		if err := WithMaxRetries(max)(s); err != nil {
			return err
		}
		return WithRetryBackoff(backoff, backoffMax)(s)
	}
}

// WithRateLimit limits how often tasks of this name start, across every worker: "100/s",
// "10/m", "500/h" (Python: rate_limit).
func WithRateLimit(limit string) SubmitOption {
	return func(s *pb.TaskSpec) error { s.RateLimit = limit; return nil }
}

// WithLinks names the tasks this task is linked to (as workflows do).
func WithLinks(taskIDs ...string) SubmitOption {
	return func(s *pb.TaskSpec) error { s.Link = append(s.Link, taskIDs...); return nil }
}

// WithSoftTimeLimit ends the task's context after d (Python: soft_time_limit).
func WithSoftTimeLimit(d time.Duration) SubmitOption {
	return func(s *pb.TaskSpec) error { s.SoftTimeLimit = d.Seconds(); return nil }
}

// WithTimeLimit records the task TIMEOUT after d; the worker stops waiting for it (Python: time_limit).
func WithTimeLimit(d time.Duration) SubmitOption {
	return func(s *pb.TaskSpec) error { s.TimeLimit = d.Seconds(); return nil }
}

// WithTimeLimits sets the soft limit (the task's context ends) and the hard limit (the worker
// stops waiting for it); zero leaves a limit unset.
func WithTimeLimits(soft, hard time.Duration) SubmitOption {
	return func(s *pb.TaskSpec) error { s.SoftTimeLimit, s.TimeLimit = soft.Seconds(), hard.Seconds(); return nil }
}

// WithHeaders adds headers, for example trace context.
func WithHeaders(headers map[string]string) SubmitOption {
	return func(s *pb.TaskSpec) error {
		if s.Headers == nil {
			s.Headers = map[string]string{}
		}
		for k, v := range headers {
			s.Headers[k] = v
		}
		return nil
	}
}
