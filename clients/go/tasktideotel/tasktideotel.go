// Package tasktideotel traces tasktide's Go client and worker with OpenTelemetry, as the Python
// client's tasktide.contrib.opentelemetry does, with the same span names and messaging attributes,
// so one trace runs across languages: a submit is a PRODUCER span whose W3C trace context travels
// in the task's headers, and each attempt on a worker is a CONSUMER span, its child.
//
//	tracing := tasktideotel.New()                          // the global tracer provider
//	client, err := tasktide.Dial("", tracing.DialOption())  // Submit and SubmitBatch traced
//	worker := tasktide.NewWorker(client, tasktide.WorkerOptions{Hooks: []tasktide.WorkerHook{tracing}})
//
// The core package (tasktide) does not import OpenTelemetry; only programs that import this
// package build it in.
package tasktideotel

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/tasktide/tasktide/clients/go/tasktide"
)

// Tracing holds the tracer and the propagator; it is a tasktide.WorkerHook.
type Tracing struct {
	tracer     trace.Tracer
	propagator propagation.TextMapPropagator
}

// Option configures New.
type Option func(*config)

type config struct {
	provider   trace.TracerProvider
	propagator propagation.TextMapPropagator
}

// WithTracerProvider sends spans to tp instead of the global tracer provider.
func WithTracerProvider(tp trace.TracerProvider) Option { return func(c *config) { c.provider = tp } }

// WithPropagator writes and reads trace context with p instead of W3C trace context and baggage.
func WithPropagator(p propagation.TextMapPropagator) Option {
	return func(c *config) { c.propagator = p }
}

// New returns the tracing plug-in.
func New(opts ...Option) *Tracing {
	c := config{
		provider:   otel.GetTracerProvider(),
		propagator: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
	}
	for _, o := range opts {
		o(&c)
	}
	return &Tracing{tracer: c.provider.Tracer("tasktide"), propagator: c.propagator}
}

// DialOption traces the client's Submit and SubmitBatch calls: on the stream transport by its
// submit hook (StartSubmit), otherwise by UnaryClientInterceptor.
func (t *Tracing) DialOption() tasktide.DialOption {
	return tasktide.DialOptions(tasktide.WithGRPCOptions(grpcInterceptor(t)), tasktide.WithSubmitHook(t))
}

// StartAttempt starts the CONSUMER span of one attempt, a child of the context in the task's
// headers, and makes it current in the handler's context.
func (t *Tracing) StartAttempt(ctx context.Context, info tasktide.TaskInfo) (context.Context, func(tasktide.AttemptOutcome)) {
	parent := t.propagator.Extract(ctx, propagation.MapCarrier(info.Headers))
	attrs := append(attributes("process", info.Queue, info.ID, info.Name),
		attribute.Int(TaskAttempt, info.Attempt),
		attribute.Int(TaskDelivery, info.Delivery),
		attribute.String(ClientID, info.WorkerID),
	)
	ctx, span := t.tracer.Start(parent, SpanName("process", info.Queue),
		trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(attrs...))
	return ctx, func(o tasktide.AttemptOutcome) {
		recordOutcome(span, o)
		span.End()
	}
}

// recordOutcome puts the attempt's outcome, and its error when it failed, on its span.
func recordOutcome(span trace.Span, o tasktide.AttemptOutcome) {
	span.SetAttributes(attribute.String(Outcome, o.Kind))
	switch o.Kind {
	case "failure", "retry", "timeout":
		span.AddEvent("exception", trace.WithAttributes(
			attribute.String("exception.type", o.ErrorType),
			attribute.String("exception.message", o.ErrorMessage),
			attribute.String("exception.stacktrace", o.Traceback),
		))
		span.SetStatus(codes.Error, o.ErrorType+": "+o.ErrorMessage)
	}
}
