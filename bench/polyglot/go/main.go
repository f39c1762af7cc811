// polybench-go measures one system from Go and prints one JSON line of figures: the tasktide Go
// client (producer and worker) or Asynq, on the Redis server the driver (bench/polyglot) started.
//
//	polybench-go -system tasktide -address 127.0.0.1:50051
//	polybench-go -system asynq -redis 127.0.0.1:6379 -db 1
//
// Workloads (each on queues of its own, so no run sees another's tasks):
//
//	one_by_one      tasks/s, one producer submitting one task at a time, each confirmed
//	one_by_one_x8   tasks/s, 8 goroutines doing the same at once
//	bulk            tasks/s, -bulk tasks submitted in one go (tasktide: SubmitBatch; Asynq has no
//	                batch call: Enqueue from 16 goroutines)
//	end_to_end      tasks/s, -e2e tasks submitted as in bulk while a worker in this process
//	                (-concurrency) runs them (no-op), until the last handler returned
//	rtt_p50_ms/p99  one task submitted and its completion seen by the producer, worker idle
//	                (after warmRoundTrips not measured)
//	                (tasktide: Handle.Get; Asynq: Inspector.GetTaskInfo polled every 250 µs
//	                until completed, with TaskCheckInterval 1 ms, its fastest pickup)
//
// With -floor-port it measures nothing: it serves the floor of a submission (floor.go) for
// bench/onebyone.py --floor.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

type figures map[string]float64

// system is one task platform, driven through its Go API.
type system interface {
	submitOne(queue string) error               // one task, confirmed
	submitMany(queue, name string, n int) error // n tasks, the system's fastest way
	// startWorker runs bench.noop and bench.count (which calls done) from queue.
	startWorker(queue string, concurrency int, done func()) (stop func(), err error)
	roundTrip(queue string) error // submit one, return once its completion is seen
	close()
}

// warmRoundTrips are made before the round trips measured.
const warmRoundTrips = 10

func main() {
	name := flag.String("system", "tasktide", "tasktide or asynq")
	address := flag.String("address", "", "tasktide's address")
	redisAddr := flag.String("redis", "127.0.0.1:6379", "Redis host:port (Asynq's, and whose CPU time is counted)")
	db := flag.Int("db", 1, "Redis database (asynq)")
	n1 := flag.Int("one", 2000, "tasks of the one-by-one rows")
	bulk := flag.Int("bulk", 5000, "tasks of the bulk row")
	e2e := flag.Int("e2e", 10000, "tasks of the end-to-end row")
	rtt := flag.Int("rtt", 300, "round trips measured")
	concurrency := flag.Int("concurrency", 8, "worker concurrency")
	prefetch := flag.Int("prefetch", 0, "tasktide worker prefetch (0: its default)")
	rows := flag.String("rows", "all", "all, or submit (the one-by-one rows only)")
	tag := flag.String("tag", "", "a suffix making this run's queue names unique")
	serverPid := flag.Int("server-pid", 0, "the tasktide server's pid, whose CPU time is counted too")
	floorPort := flag.Int("floor-port", 0, "serve the floor of a submission on this port instead (floor.go)")
	floorRedis := flag.String("floor-redis", "", "the floor's Redis URL (none: it answers at once)")
	flag.Parse()
	if *floorPort != 0 {
		log.Fatal(serveFloor(*floorPort, *floorRedis))
	}

	var sys system
	var err error
	switch *name {
	case "tasktide":
		sys, err = newTasktide(*address, *prefetch)
	case "asynq":
		sys = newAsynq(*redisAddr, *db)
	default:
		err = fmt.Errorf("unknown system %q", *name)
	}
	if err != nil {
		log.Fatal(err)
	}
	defer sys.close()
	q := func(row string) string { return "pb-" + row + "-" + *tag }
	out := figures{}
	must := func(err error) {
		if err != nil {
			log.Fatal(err)
		}
	}
	meter := cpuMeter{serverPid: *serverPid, redis: redis.NewClient(&redis.Options{Addr: *redisAddr})}
	// rate runs f once: n tasks/s by wall time, and CPU µs per task of every process involved.
	rate := func(row string, n int, f func() error) {
		cpu, start := meter.seconds(), time.Now()
		must(f())
		out[row] = float64(n) / time.Since(start).Seconds()
		out["cpu_us_"+row] = (meter.seconds() - cpu) / float64(n) * 1e6
	}

	must(sys.submitOne(q("warm"))) // connections open, not measured
	rate("one_by_one", *n1, func() error {
		for range *n1 {
			if err := sys.submitOne(q("one")); err != nil {
				return err
			}
		}
		return nil
	})
	rate("one_by_one_x8", *n1, func() error { return parallel(8, *n1, func() error { return sys.submitOne(q("one8")) }) })
	if *rows == "submit" {
		emit(*name, out)
		return
	}
	rate("bulk", *bulk, func() error { return sys.submitMany(q("bulk"), "bench.noop", *bulk) })

	var wg sync.WaitGroup
	wg.Add(*e2e)
	stop, err := sys.startWorker(q("run"), *concurrency, wg.Done)
	must(err)
	must(sys.roundTrip(q("run"))) // the worker is connected and warm
	rate("end_to_end", *e2e, func() error {
		if err := sys.submitMany(q("run"), "bench.count", *e2e); err != nil {
			return err
		}
		wg.Wait()
		return nil
	})
	// Not measured, as in bench/workloads.py's latency row: the end-to-end row's last outcomes are
	// still being recorded as it ends.
	for range warmRoundTrips {
		must(sys.roundTrip(q("run")))
	}
	cpu := meter.seconds()
	samples := make([]float64, *rtt)
	for i := range samples {
		start := time.Now()
		must(sys.roundTrip(q("run")))
		samples[i] = float64(time.Since(start).Microseconds()) / 1000
	}
	out["cpu_us_rtt"] = (meter.seconds() - cpu) / float64(*rtt) * 1e6
	sort.Float64s(samples)
	out["rtt_p50_ms"] = samples[len(samples)/2]
	out["rtt_p99_ms"] = samples[len(samples)*99/100]
	stop()
	emit(*name, out)
}

// parallel runs f n times from the given number of goroutines.
func parallel(goroutines, n int, f func() error) error {
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		count := n / goroutines
		if g < n%goroutines {
			count++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range count {
				if err := f(); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func emit(name string, out figures) {
	line, _ := json.Marshal(map[string]any{"lang": "go", "system": name, "figures": out})
	fmt.Fprintln(os.Stdout, string(line))
}
