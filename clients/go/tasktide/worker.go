package tasktide

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"sync"
	"time"
)

// WorkerOptions configure a Worker. Zero values take the defaults in the comments.
type WorkerOptions struct {
	Queues      []string     // consumed in this order; default ["default"]
	Concurrency int          // tasks run at once; default 4
	Prefetch    int          // assignments held beyond Concurrency; default 3 * Concurrency
	WorkerID    string       // default hostname-pid-random
	MaxBatch    int          // outcomes sent in one message at most; default 256
	Logger      *slog.Logger // default slog.Default()
}

// Worker runs registered Go functions as tasks. It holds one Session stream to the registry:
// it grants credits, runs assignments on Concurrency goroutines, extends its leases with
// heartbeats every third of the lease, and sends outcomes in batches that return their credit.
type Worker struct {
	client *Client
	opts   WorkerOptions
	log    *slog.Logger

	mu      sync.RWMutex
	tasks   map[string]registered
	running bool
}

type registered struct {
	fn  HandlerFunc
	cfg taskConfig
}

// NewWorker creates a worker that reaches the registry through client.
func NewWorker(client *Client, opts WorkerOptions) *Worker {
	if len(opts.Queues) == 0 {
		opts.Queues = []string{"default"}
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 4
	}
	if opts.Prefetch <= 0 {
		opts.Prefetch = 3 * opts.Concurrency
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 256
	}
	if opts.WorkerID == "" {
		host, _ := os.Hostname()
		var b [3]byte
		_, _ = rand.Read(b[:])
		opts.WorkerID = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Worker{client: client, opts: opts, log: log, tasks: map[string]registered{}}
}

// ID is the worker's id, as the registry and task events show it.
func (w *Worker) ID() string { return w.opts.WorkerID }

// Register makes fn run the tasks named name. Register every task before Run.
func (w *Worker) Register(name string, fn HandlerFunc, opts ...TaskOption) {
	var cfg taskConfig
	for _, o := range opts {
		o(&cfg)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.tasks[name] = registered{fn: fn, cfg: cfg}
}

func (w *Worker) lookup(name string) (registered, bool) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	t, ok := w.tasks[name]
	return t, ok
}

func (w *Worker) taskNames() []string {
	w.mu.RLock()
	defer w.mu.RUnlock()
	names := make([]string, 0, len(w.tasks))
	for n := range w.tasks {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

const reconnectMax = 5 * time.Second

// Run consumes tasks until ctx ends or the registry asks the worker to drain, then drains:
// nothing new is taken, leases of tasks not started are released, running tasks finish and their
// outcomes are sent before the stream closes. A lost session is reopened with backoff. Run
// returns nil after a drain.
func (w *Worker) Run(ctx context.Context) error {
	w.mu.Lock()
	if w.running {
		w.mu.Unlock()
		return errors.New("tasktide: worker is already running")
	}
	w.running = true
	w.mu.Unlock()
	defer func() { w.mu.Lock(); w.running = false; w.mu.Unlock() }()

	delay := 200 * time.Millisecond
	for {
		started := time.Now()
		stopped, err := w.session(ctx)
		if stopped || ctx.Err() != nil {
			if err != nil {
				w.log.Warn("tasktide: drained with an error", "worker", w.opts.WorkerID, "error", err)
			}
			return nil
		}
		if time.Since(started) > reconnectMax {
			delay = 200 * time.Millisecond
		}
		w.log.Warn("tasktide: session lost; reconnecting", "worker", w.opts.WorkerID, "error", err, "in", delay)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
		delay = min(delay*2, reconnectMax)
	}
}
