// A Go worker for the repository's Python tests (tests/test_go_*.py), which restart services under
// it and read what it did from its results:
//
//	TASKTIDE_QUEUES=q TASKTIDE_TEST_CONCURRENCY=1 go run ./internal/testworker
//
// With OTEL_EXPORTER_OTLP_ENDPOINT set it traces through tasktideotel (see otel.go).
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tasktide/tasktide/clients/go/tasktide"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	tracing, err := setupTracing(ctx)
	if err != nil {
		log.Fatal(err)
	}
	client, err := tasktide.Dial("", tracing.dialOptions()...)
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	concurrency, _ := strconv.Atoi(os.Getenv("TASKTIDE_TEST_CONCURRENCY"))
	worker := tasktide.NewWorker(client, tasktide.WorkerOptions{
		Queues: strings.Split(os.Getenv("TASKTIDE_QUEUES"), ","), Concurrency: concurrency, Hooks: tracing.hooks(),
	})
	var c counters
	worker.Register("gotest.stubborn", c.stubborn)
	worker.Register("gotest.headers", func(ctx context.Context, _ []json.RawMessage, _ map[string]json.RawMessage) (any, error) {
		info, _ := tasktide.TaskInfoFrom(ctx)
		return info.Headers, nil
	})
	worker.Register("gotest.add", tasktide.Func2(func(_ context.Context, x, y int) (int, error) { return x + y, nil }))
	worker.Register("gotest.submit", func(ctx context.Context, args []json.RawMessage, _ map[string]json.RawMessage) (any, error) {
		var name, queue string
		var taskArgs []any
		if err := tasktide.DecodeArgs(args, &name, &queue, &taskArgs); err != nil {
			return nil, err
		}
		h, err := client.Submit(ctx, name, taskArgs, tasktide.WithQueue(queue))
		if err != nil {
			return nil, err
		}
		return h.ID, nil
	})
	worker.Register("gotest.chatty", func(ctx context.Context, args []json.RawMessage, _ map[string]json.RawMessage) (any, error) {
		return chatty(ctx, worker, args)
	})
	fmt.Fprintf(os.Stderr, "worker %s ready\n", worker.ID())
	err = worker.Run(ctx)
	tracing.shutdown()
	if err != nil {
		log.Fatal(err)
	}
}

// counters see every attempt of the process.
type counters struct {
	running, most atomic.Int64
	mu            sync.Mutex
	runs          map[string]int
}

// stubborn sleeps for its argument (seconds) and ignores its context; it returns how many tasks
// ran at once at most in this process, its delivery, and how often this process ran the task.
func (c *counters) stubborn(ctx context.Context, args []json.RawMessage, _ map[string]json.RawMessage) (any, error) {
	var seconds float64
	if err := tasktide.DecodeArgs(args, &seconds); err != nil {
		return nil, err
	}
	info, _ := tasktide.TaskInfoFrom(ctx)
	now := c.running.Add(1)
	for {
		most := c.most.Load()
		if now <= most || c.most.CompareAndSwap(most, now) {
			break
		}
	}
	c.mu.Lock()
	if c.runs == nil {
		c.runs = map[string]int{}
	}
	c.runs[info.ID]++
	c.mu.Unlock()
	if dir := os.Getenv("TASKTIDE_TEST_MARKERS"); dir != "" { // tells the test the task started
		_ = os.WriteFile(filepath.Join(dir, info.ID), nil, 0o644)
	}
	time.Sleep(time.Duration(seconds * float64(time.Second)))
	c.running.Add(-1)
	c.mu.Lock()
	defer c.mu.Unlock()
	return map[string]any{"most_at_once": c.most.Load(), "delivery": info.Delivery, "runs": c.runs[info.ID]}, nil
}

// chatty says it started (folder/started), waits for folder/go, reports progress n times, writes
// how many messages then wait to be written (Worker.OutboxSize) to folder/reported, waits for
// folder/finish and returns n.
func chatty(ctx context.Context, worker *tasktide.Worker, args []json.RawMessage) (any, error) {
	var folder string
	var n int
	if err := tasktide.DecodeArgs(args, &folder, &n); err != nil {
		return nil, err
	}
	waitFor := func(name string) {
		for {
			if _, err := os.Stat(filepath.Join(folder, name)); err == nil {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	_ = os.WriteFile(filepath.Join(folder, "started"), nil, 0o644)
	waitFor("go")
	for i := 1; i <= n; i++ {
		tasktide.Progress(ctx, float64(i)/float64(n), fmt.Sprintf("report %d", i))
	}
	_ = os.WriteFile(filepath.Join(folder, "reported"), []byte(strconv.Itoa(worker.OutboxSize())), 0o644)
	waitFor("finish")
	return n, nil
}
