package tasktideotel

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"

	pb "github.com/tasktide/tasktide/clients/go/tasktidepb"
)

const (
	submitMethod      = "/tasktide.v1.Scheduler/Submit"
	submitBatchMethod = "/tasktide.v1.Scheduler/SubmitBatch"
)

func grpcInterceptor(t *Tracing) grpc.DialOption {
	return grpc.WithChainUnaryInterceptor(t.UnaryClientInterceptor())
}

// UnaryClientInterceptor starts the PRODUCER span of a Submit (a CLIENT span with a PRODUCER
// "create" span per task for a SubmitBatch), writes its context into each TaskSpec's headers and
// makes it current for the call. Other methods pass straight through.
func (t *Tracing) UnaryClientInterceptor() grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		switch r := req.(type) {
		case *pb.SubmitRequest:
			if method != submitMethod {
				break
			}
			ctx, end := t.StartSubmit(ctx, r.GetSpec())
			err := invoker(ctx, method, req, reply, cc, opts...)
			resp, _ := reply.(*pb.SubmitResponse)
			end(resp.GetTaskId(), err)
			return err
		case *pb.SubmitBatchRequest:
			if method != submitBatchMethod {
				break
			}
			return t.submitBatch(ctx, r, func(ctx context.Context) error { return invoker(ctx, method, req, reply, cc, opts...) }, reply)
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
}

func (t *Tracing) submitBatch(ctx context.Context, r *pb.SubmitBatchRequest, call func(context.Context) error, reply any) error {
	queues := map[string]bool{}
	for _, s := range r.GetSpecs() {
		queues[queueOf(s.GetQueue())] = true
	}
	name, attrs := "send", attributes("send", "", "", "")
	if len(queues) == 1 {
		for q := range queues {
			name, attrs = SpanName("send", q), attributes("send", q, "", "")
		}
	} else {
		attrs = attrs[:len(attrs)-1] // several queues: no single destination
	}
	attrs = append(attrs, attribute.Int(BatchCount, len(r.GetSpecs())))
	ctx, span := t.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
	defer span.End()
	creates := make([]trace.Span, len(r.GetSpecs()))
	for i, s := range r.GetSpecs() {
		cctx, create := t.tracer.Start(ctx, SpanName("create", s.GetQueue()), trace.WithSpanKind(trace.SpanKindProducer),
			trace.WithAttributes(attributes("create", s.GetQueue(), "", s.GetName())...))
		t.inject(cctx, s)
		creates[i] = create
	}
	err := call(ctx)
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
	} else if resp, ok := reply.(*pb.SubmitBatchResponse); ok {
		for i, res := range resp.GetResults() {
			if i < len(creates) {
				creates[i].SetAttributes(attribute.String(MessageID, res.GetTaskId()))
			}
		}
	}
	for _, c := range creates {
		c.End()
	}
	return err
}

// inject writes the trace context of ctx into the task's headers.
func (t *Tracing) inject(ctx context.Context, spec *pb.TaskSpec) {
	if spec.Headers == nil {
		spec.Headers = map[string]string{}
	}
	t.propagator.Inject(ctx, propagation.MapCarrier(spec.Headers))
}

// StartSubmit starts the PRODUCER span of a task submitted on the stream transport (a
// tasktide.SubmitHook), writes its context into the task's headers and makes it current.
func (t *Tracing) StartSubmit(ctx context.Context, spec *pb.TaskSpec) (context.Context, func(string, error)) {
	ctx, span := t.tracer.Start(ctx, SpanName("send", spec.GetQueue()), trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(attributes("send", spec.GetQueue(), "", spec.GetName())...))
	t.inject(ctx, spec)
	return ctx, func(taskID string, err error) {
		if err != nil {
			span.SetStatus(codes.Error, err.Error())
		} else {
			span.SetAttributes(attribute.String(MessageID, taskID))
		}
		span.End()
	}
}
