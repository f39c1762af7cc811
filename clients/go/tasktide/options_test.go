package tasktide_test

import (
	"testing"
	"time"

	"github.com/tasktide/tasktide/clients/go/tasktide"
	pb "github.com/tasktide/tasktide/clients/go/tasktidepb"
)

// Every submit option of the Python client reaches the scheduler with the same meaning and units.
func TestSubmitOptionsReachTheScheduler(t *testing.T) {
	c := dial(t)
	ctx := testContext(t)
	q := newQueue(t)
	before := time.Now()
	h, err := c.Submit(ctx, "go.options", []any{1}, tasktide.WithQueue(q), tasktide.WithPriority(7),
		tasktide.WithCountdown(time.Hour), tasktide.WithExpiresIn(2*time.Hour), tasktide.WithIdempotencyKey("k-"+q),
		tasktide.WithMaxRetries(4), tasktide.WithRetryBackoff(2*time.Second, time.Minute), tasktide.WithRetryJitter(false),
		tasktide.WithSoftTimeLimit(1500*time.Millisecond), tasktide.WithTimeLimit(3*time.Second),
		tasktide.WithRateLimit("10/m"), tasktide.WithLinks("a1", "b2"), tasktide.WithHeaders(map[string]string{"x-user": "ada"}),
		tasktide.WithKwargs(map[string]any{"k": "v"}))
	if err != nil {
		t.Fatal(err)
	}
	task, err := c.SchedulerService().GetTask(ctx, &pb.GetTaskRequest{TaskId: h.ID})
	if err != nil {
		t.Fatal(err)
	}
	s := task.GetSpec()
	r := s.GetRetry()
	if s.GetQueue() != q || s.GetPriority() != 7 || s.GetIdempotencyKey() != "k-"+q || s.GetRateLimit() != "10/m" {
		t.Errorf("queue, priority, key, rate limit: %v", s)
	}
	if r.GetMaxRetries() != 4 || r.GetBackoffBase() != 2 || r.GetBackoffMax() != 60 || r.GetJitter() {
		t.Errorf("retry policy: %v", r)
	}
	if s.GetSoftTimeLimit() != 1.5 || s.GetTimeLimit() != 3 {
		t.Errorf("time limits: %v %v", s.GetSoftTimeLimit(), s.GetTimeLimit())
	}
	if len(s.GetLink()) != 2 || s.GetLink()[0] != "a1" || s.GetHeaders()["x-user"] != "ada" || string(s.GetKwargs().GetJson()) != `{"k":"v"}` {
		t.Errorf("links, headers, kwargs: %v", s)
	}
	eta, expires := time.UnixMilli(s.GetEtaMs()), time.UnixMilli(s.GetExpiresMs())
	if eta.Before(before.Add(time.Hour-time.Second)) || expires.Before(before.Add(2*time.Hour-time.Second)) || expires.After(time.Now().Add(2*time.Hour)) {
		t.Errorf("eta %v, expires %v (submitted at %v)", eta, expires, before)
	}
	if _, err := h.Cancel(ctx); err != nil {
		t.Fatal(err)
	}

	// Without options the retry policy is the Python client's default: none, 1 s to 10 min, jitter.
	d, err := tasktide.NewSpec("go.defaults", nil)
	if err != nil {
		t.Fatal(err)
	}
	if r := d.GetRetry(); r.GetMaxRetries() != 0 || r.GetBackoffBase() != 1 || r.GetBackoffMax() != 600 || !r.GetJitter() {
		t.Errorf("default retry policy: %v", r)
	}
	if _, err := tasktide.NewSpec("go.bad", nil, tasktide.WithMaxRetries(-1)); err == nil {
		t.Error("negative retries accepted")
	}
}
