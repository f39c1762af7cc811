package tasktideotel_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/tasktide/tasktide/clients/go/tasktide"
	"github.com/tasktide/tasktide/clients/go/tasktideotel"
)

func attrs(s sdktrace.ReadOnlySpan) map[string]attribute.Value {
	m := map[string]attribute.Value{}
	for _, kv := range s.Attributes() {
		m[string(kv.Key)] = kv.Value
	}
	return m
}

// A Go producer's trace continues on a Go worker: one trace, the process span a child of the send
// span, with the messaging attributes of the Python plug-in.
func TestGoProducerToGoWorker(t *testing.T) {
	addr := os.Getenv("TASKTIDE_ADDRESS")
	if addr == "" {
		t.Skip("TASKTIDE_ADDRESS is not set")
	}
	rec := tracetest.NewSpanRecorder()
	provider := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	tracing := tasktideotel.New(tasktideotel.WithTracerProvider(provider))
	c, err := tasktide.Dial(addr, tracing.DialOption())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	q := "go-otel-" + time.Now().Format("150405.000000")
	w := tasktide.NewWorker(c, tasktide.WorkerOptions{Queues: []string{q}, Hooks: []tasktide.WorkerHook{tracing}})
	inside := make(chan trace.SpanContext, 4)
	w.Register("go.traced", func(ctx context.Context, a []json.RawMessage, _ map[string]json.RawMessage) (any, error) {
		inside <- trace.SpanContextFromContext(ctx)
		if len(a) > 0 {
			return nil, tasktide.NewError("go.Refused", "no")
		}
		return "ok", nil
	})
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(runCtx) }()
	var once sync.Once
	shutdown := func() { once.Do(func() { stop(); <-done }) }
	defer shutdown()

	h, err := c.Submit(ctx, "go.traced", nil, tasktide.WithQueue(q))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Get(ctx); err != nil {
		t.Fatal(err)
	}
	batch, err := c.SubmitBatch(ctx, tasktide.Call{Name: "go.traced", Args: []any{"fail"}, Options: []tasktide.SubmitOption{tasktide.WithQueue(q)}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := batch[0].Get(ctx); !errors.As(err, new(*tasktide.TaskFailed)) {
		t.Fatalf("want a failure, got %v", err)
	}
	shutdown() // every span ended

	byName := map[string][]sdktrace.ReadOnlySpan{}
	for _, s := range rec.Ended() {
		byName[s.Name()] = append(byName[s.Name()], s)
	}
	sends, creates, processes := byName["send "+q], byName["create "+q], byName["process "+q]
	if len(sends) != 2 || len(creates) != 1 || len(processes) != 2 {
		t.Fatalf("spans: %v", byName)
	}
	send, process := sends[0], processes[0]
	if send.SpanKind() != trace.SpanKindProducer || process.SpanKind() != trace.SpanKindConsumer {
		t.Fatalf("kinds: send %v, process %v", send.SpanKind(), process.SpanKind())
	}
	if process.SpanContext().TraceID() != send.SpanContext().TraceID() || process.Parent().SpanID() != send.SpanContext().SpanID() {
		t.Fatalf("process span %v is not a child of send span %v", process.Parent(), send.SpanContext())
	}
	if got := <-inside; got.SpanID() != process.SpanContext().SpanID() {
		t.Fatalf("the handler ran in span %v, not the process span", got)
	}
	want := map[string]string{
		"messaging.system": "tasktide", "messaging.operation.name": "process", "messaging.operation.type": "process",
		"messaging.destination.name": q, "messaging.message.id": h.ID, "tasktide.task.name": "go.traced",
		"messaging.client.id": w.ID(), "tasktide.outcome": "success",
	}
	pa := attrs(process)
	for k, v := range want {
		if pa[k].AsString() != v {
			t.Errorf("process %s = %q, want %q", k, pa[k].AsString(), v)
		}
	}
	if pa["tasktide.task.attempt"].AsInt64() != 0 || pa["tasktide.task.delivery"].AsInt64() != 1 {
		t.Errorf("attempt/delivery: %v", pa)
	}
	if sa := attrs(send); sa["messaging.operation.type"].AsString() != "send" || sa["messaging.message.id"].AsString() != h.ID {
		t.Errorf("send attributes: %v", sa)
	}

	// The batch: a CLIENT send span, a PRODUCER create span per task, the process span its child.
	batchSend, create, failed := sends[1], creates[0], processes[1]
	if batchSend.SpanKind() != trace.SpanKindClient || attrs(batchSend)["messaging.batch.message_count"].AsInt64() != 1 {
		t.Errorf("batch send span: %v %v", batchSend.SpanKind(), attrs(batchSend))
	}
	if create.Parent().SpanID() != batchSend.SpanContext().SpanID() || failed.Parent().SpanID() != create.SpanContext().SpanID() {
		t.Errorf("batch spans not chained: create's parent %v, process's parent %v", create.Parent(), failed.Parent())
	}
	if failed.Status().Code != codes.Error || attrs(failed)["tasktide.outcome"].AsString() != "failure" ||
		len(failed.Events()) != 1 || failed.Events()[0].Name != "exception" {
		t.Errorf("failed attempt: %v %v %v", failed.Status(), attrs(failed), failed.Events())
	}
}
