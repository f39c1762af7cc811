package tasktide

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"sort"
	"sync"
	"time"
)

// WorkerOptions configure a Worker. Zero values take the defaults in the comments.
type WorkerOptions struct {
	Queues      []string     // consumed in this order; default ["default"]
	Concurrency int          // tasks run at once; default 4
	Prefetch    int          // assignments held beyond Concurrency; default follows task length (3 to 32 per slot)
	WorkerID    string       // default hostname-pid-random
	MaxBatch    int          // outcomes sent in one message at most; default 256
	Logger      *slog.Logger // default slog.Default()
	// ShutdownTimeout bounds a drain: past it, tasks still running are given up (their context
	// ends with a cause saying so, their leases are released so another worker runs them) and Run
	// returns. Zero waits for every running task.
	ShutdownTimeout time.Duration
	// BaseContext gives the context every handler's context derives from (values, deadline,
	// cancellation). Default: Run's context without its cancellation, since the end of Run's
	// context starts a drain, in which running tasks finish.
	BaseContext func() context.Context
	Hooks       []WorkerHook // called around every attempt, in order (tracing, metrics...)
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

	pool *pool           // for one Run
	base context.Context // for one Run: what handler contexts derive from
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
	if opts.Prefetch < 0 {
		opts.Prefetch = 0 // follows task length
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

// OutboxSize counts the messages waiting to be written on the session: the latest progress
// report of each attempt (one per attempt, however many reports: they are superseded), outcomes
// not yet sent (one per assignment in hand) and other messages queued. It stays bounded while the
// registry is unreachable.
func (w *Worker) OutboxSize() int {
	w.mu.RLock()
	p := w.pool
	w.mu.RUnlock()
	if p == nil {
		return 0
	}
	return p.waiting()
}

// Concurrency is how many tasks the worker runs at a time: WorkerOptions.Concurrency, or the size
// a Resize from the registry (ResizeWorker) set while it runs.
func (w *Worker) Concurrency() int {
	w.mu.RLock()
	p := w.pool
	w.mu.RUnlock()
	if p == nil {
		return w.opts.Concurrency
	}
	return p.credit.size()
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

// Reconnection backoff: from reconnectMin, doubling up to reconnectMax, each wait drawn between
// half and all of it so that workers cut off together do not come back together.
const (
	reconnectMin = 200 * time.Millisecond
	reconnectMax = 5 * time.Second
)

// Run consumes tasks until ctx ends or the registry asks the worker to drain, then drains:
// nothing new is taken, leases of tasks not started are released, running tasks finish (within
// ShutdownTimeout) and their outcomes are sent before the stream closes. A lost session is
// reopened with jittered backoff; tasks running meanwhile go on and their outcomes are sent on the
// new session. Run returns nil after a drain, and an error matching ErrUnauthenticated or
// ErrPermissionDenied when the registry refuses the worker (reconnecting would not help).
func (w *Worker) Run(ctx context.Context) error {
	w.mu.Lock()
	if w.running {
		w.mu.Unlock()
		return errors.New("tasktide: worker is already running")
	}
	w.running = true
	w.pool = newPool(w.opts.Concurrency, w.opts.Prefetch)
	w.base = context.WithoutCancel(ctx)
	if w.opts.BaseContext != nil {
		w.base = w.opts.BaseContext()
	}
	w.mu.Unlock()
	defer func() { w.mu.Lock(); w.running = false; w.mu.Unlock() }()
	w.resize(w.opts.Concurrency) // starts the executors

	delay := reconnectMin
	for {
		started := time.Now()
		stopped, err := w.session(ctx)
		if stopped {
			if err != nil {
				w.log.Warn("tasktide: drained with an error", "worker", w.opts.WorkerID, "error", err)
			}
			return nil
		}
		if refused(err) {
			w.stopDisconnected()
			return wrap(context.Background(), "Session", err)
		}
		if ctx.Err() != nil {
			w.stopDisconnected()
			return nil
		}
		if time.Since(started) > reconnectMax {
			delay = reconnectMin
		}
		wait := delay/2 + mrand.N(delay/2+1)
		w.log.Warn("tasktide: session lost; reconnecting", "worker", w.opts.WorkerID, "error", err, "in", wait)
		select {
		case <-ctx.Done():
			w.stopDisconnected()
			return nil
		case <-time.After(wait):
		}
		delay = min(delay*2, reconnectMax)
	}
}

// stopDisconnected ends Run without a session: nothing can be sent, so the tasks still held are
// given up (their contexts end) and their leases expire on the registry.
func (w *Worker) stopDisconnected() {
	w.pool.stopping.Store(true)
	w.pool.stop()
	w.pool.takeReady()
	if refs := w.pool.abandon(errStopped); len(refs) > 0 {
		w.log.Warn("tasktide: stopped without a session; tasks still running were given up", "worker", w.opts.WorkerID, "tasks", len(refs))
	}
	w.pool.execs.Wait()
}
