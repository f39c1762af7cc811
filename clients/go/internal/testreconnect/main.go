// A Go client for the repository's Python test of reconnection (tests/test_fault_reconnect.py),
// which stops services under it and starts them again: every TASKTIDE_TEST_PACE_MS milliseconds it
// makes one call to each service with the one Client it made at the start, and prints a line per
// call, "KIND ok|fail UNIX_MS", where KIND is submit (Submit of TASKTIDE_TEST_TASK to the queue
// TASKTIDE_QUEUES, through the scheduler), results (Get of TASKTIDE_TEST_TASK_ID) or registry
// (QueueStats). It runs until it is signalled.
//
//	TASKTIDE_ADDRESS=... TASKTIDE_QUEUES=q TASKTIDE_TEST_TASK=t.add TASKTIDE_TEST_TASK_ID=ID go run ./internal/testreconnect
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"strconv"
	"time"

	"github.com/tasktide/tasktide/clients/go/tasktide"
	pb "github.com/tasktide/tasktide/clients/go/tasktidepb"
)

func main() {
	client, err := tasktide.Dial("")
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	name, queue, id := os.Getenv("TASKTIDE_TEST_TASK"), os.Getenv("TASKTIDE_QUEUES"), os.Getenv("TASKTIDE_TEST_TASK_ID")
	pace, _ := strconv.Atoi(os.Getenv("TASKTIDE_TEST_PACE_MS"))
	calls := []struct {
		kind string
		call func(ctx context.Context) error
	}{
		{"submit", func(ctx context.Context) error {
			_, err := client.Submit(ctx, name, []any{1, 2}, tasktide.WithQueue(queue))
			return err
		}},
		{"results", func(ctx context.Context) error {
			_, err := client.ResultsService().Get(ctx, &pb.GetRequest{TaskIds: []string{id}})
			return err
		}},
		{"registry", func(ctx context.Context) error {
			_, err := client.RegistryService().QueueStats(ctx, &pb.QueueStatsRequest{})
			return err
		}},
	}
	for {
		for _, c := range calls {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			verdict := "ok"
			if err := c.call(ctx); err != nil {
				verdict = "fail"
			}
			cancel()
			fmt.Printf("%s %s %d\n", c.kind, verdict, time.Now().UnixMilli())
		}
		time.Sleep(time.Duration(pace) * time.Millisecond)
	}
}
