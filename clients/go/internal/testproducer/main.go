// A Go producer for the repository's Python tests (tests/test_polyglot_replicas.py), which kill
// service replicas under it: it submits TASKTIDE_TEST_COUNT tasks named TASKTIDE_TEST_TASK with
// arguments [i, 1] to the queue TASKTIDE_QUEUES, one every TASKTIDE_TEST_PACE_MS milliseconds, then
// reads every result and checks it is i+1. A call refused as unavailable (its replica died) is made
// again; an idempotency key per task keeps a submission the platform took before refusing from
// running twice. It prints "submitted I ID" as it goes and "done N" at the end; any other end is an
// exit code 1.
//
//	TASKTIDE_ADDRESS=a,b TASKTIDE_QUEUES=q TASKTIDE_TEST_TASK=gotest.add TASKTIDE_TEST_COUNT=60 go run ./internal/testproducer
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"strconv"
	"time"

	"github.com/tasktide/tasktide/clients/go/tasktide"
)

const retries = 600 // 30 s of refusals at 50 ms

func main() {
	client, err := tasktide.Dial("")
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	name, queue := os.Getenv("TASKTIDE_TEST_TASK"), os.Getenv("TASKTIDE_QUEUES")
	count, _ := strconv.Atoi(os.Getenv("TASKTIDE_TEST_COUNT"))
	pace, _ := strconv.Atoi(os.Getenv("TASKTIDE_TEST_PACE_MS"))
	refused := 0
	again := func(what string, call func(ctx context.Context) error) {
		for range retries {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			err := call(ctx)
			cancel()
			if err == nil {
				return
			}
			if !errors.Is(err, tasktide.ErrUnavailable) {
				log.Fatalf("%s: %v", what, err)
			}
			refused++
			time.Sleep(50 * time.Millisecond)
		}
		log.Fatalf("%s: refused %d times", what, retries)
	}
	handles := make([]*tasktide.Handle, count)
	for i := range count {
		again("submit", func(ctx context.Context) (err error) {
			key := fmt.Sprintf("%s-%d", queue, i)
			handles[i], err = client.Submit(ctx, name, []any{i, 1}, tasktide.WithQueue(queue), tasktide.WithIdempotencyKey(key))
			return err
		})
		fmt.Printf("submitted %d %s\n", i, handles[i].ID)
		time.Sleep(time.Duration(pace) * time.Millisecond)
	}
	for i, h := range handles {
		var got int
		again("get", func(ctx context.Context) error { return h.GetInto(ctx, &got) })
		if got != i+1 {
			log.Fatalf("task %d (%s): %d, want %d", i, h.ID, got, i+1)
		}
	}
	fmt.Printf("done %d (%d refused calls made again)\n", count, refused)
}
