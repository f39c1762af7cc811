// A Go worker for tasks submitted from any language:
//
//	TASKTIDE_ADDRESS=127.0.0.1:50051 TASKTIDE_QUEUES=default go run ./examples/worker
//
// and from Python: tasktide.Client().submit("go.add", [2, 3]).get() == 5.
// SIGTERM or Ctrl-C drains the worker: running tasks finish, tasks not started are released.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/tasktide/tasktide/clients/go/tasktide"
)

func main() {
	client, err := tasktide.Dial("") // TASKTIDE_ADDRESS
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	queues := []string{"default"}
	if q := os.Getenv("TASKTIDE_QUEUES"); q != "" {
		queues = strings.Split(q, ",")
	}
	worker := tasktide.NewWorker(client, tasktide.WorkerOptions{Queues: queues, Concurrency: 4})
	worker.Register("go.add", add)
	// Typed: the one positional argument is decoded into s, the result encoded as JSON.
	worker.Register("go.upper", tasktide.Func(func(ctx context.Context, s string) (string, error) {
		return strings.ToUpper(s), nil
	}))
	worker.Register("go.refuse", func(ctx context.Context, args []json.RawMessage, kwargs map[string]json.RawMessage) (any, error) {
		var why string
		if err := tasktide.DecodeArgs(args, &why); err != nil {
			return nil, err
		}
		return nil, tasktide.NewError("go.Refused", why)
	})

	worker.Register("go.sleep", func(ctx context.Context, args []json.RawMessage, kwargs map[string]json.RawMessage) (any, error) {
		var seconds float64
		if err := tasktide.DecodeArgs(args, &seconds); err != nil {
			return nil, err
		}
		select {
		case <-time.After(time.Duration(seconds * float64(time.Second))):
			return fmt.Sprintf("slept %g", seconds), nil
		case <-ctx.Done(): // cancelled, or past its soft time limit
			return nil, context.Cause(ctx)
		}
	})

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	fmt.Fprintf(os.Stderr, "worker %s consuming %s\n", worker.ID(), strings.Join(queues, ","))
	if err := worker.Run(ctx); err != nil {
		log.Fatal(err)
	}
}

// add sums its positional arguments; kwargs may carry "scale".
func add(ctx context.Context, args []json.RawMessage, kwargs map[string]json.RawMessage) (any, error) {
	var x, y int
	if err := tasktide.DecodeArgs(args, &x, &y); err != nil {
		return nil, err
	}
	scale := 1
	if raw, ok := kwargs["scale"]; ok {
		if err := json.Unmarshal(raw, &scale); err != nil {
			return nil, err
		}
	}
	return (x + y) * scale, nil
}
