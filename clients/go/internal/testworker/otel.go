package main

import (
	"context"
	"os"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"

	"github.com/tasktide/tasktide/clients/go/tasktide"
	"github.com/tasktide/tasktide/clients/go/tasktideotel"
)

// tracing is set up when OTEL_EXPORTER_OTLP_ENDPOINT is set: spans go to that OTLP/gRPC endpoint
// (plaintext) as service OTEL_SERVICE_NAME (default tasktide-go-worker).
type tracing struct {
	provider *sdktrace.TracerProvider
	plugin   *tasktideotel.Tracing
}

func setupTracing(ctx context.Context) (*tracing, error) {
	if os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" {
		return &tracing{}, nil
	}
	exporter, err := otlptracegrpc.New(ctx, otlptracegrpc.WithInsecure())
	if err != nil {
		return nil, err
	}
	name := os.Getenv("OTEL_SERVICE_NAME")
	if name == "" {
		name = "tasktide-go-worker"
	}
	provider := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exporter, sdktrace.WithBatchTimeout(100*time.Millisecond)),
		sdktrace.WithResource(resource.NewSchemaless(semconv.ServiceName(name))),
	)
	return &tracing{provider: provider, plugin: tasktideotel.New(tasktideotel.WithTracerProvider(provider))}, nil
}

func (t *tracing) dialOptions() []tasktide.DialOption {
	if t.plugin == nil {
		return nil
	}
	return []tasktide.DialOption{t.plugin.DialOption()}
}

func (t *tracing) hooks() []tasktide.WorkerHook {
	if t.plugin == nil {
		return nil
	}
	return []tasktide.WorkerHook{t.plugin}
}

func (t *tracing) shutdown() {
	if t.provider != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = t.provider.Shutdown(ctx)
	}
}
