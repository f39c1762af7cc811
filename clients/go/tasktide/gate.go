package tasktide

import "sync"

// maxConcurrency is the largest pool a worker can be resized to (as the registry allows).
const maxConcurrency = 1024

// gate lets at most `allowed` executors take assignments at a time; a Resize changes it. An
// executor holds a permit while it waits on the ready queue and runs what it took, and takes a new
// permit for the next. Shrinking leaves the executors beyond the new size waiting for a permit once
// their attempt ends; those idle on the ready queue are woken by a recheck token and give theirs up.
type gate struct {
	mu      sync.Mutex
	cond    *sync.Cond
	allowed int
	holding int
	closed  bool
	recheck chan struct{}
}

func newGate(allowed int) *gate {
	g := &gate{allowed: allowed, recheck: make(chan struct{}, maxConcurrency)}
	g.cond = sync.NewCond(&g.mu)
	return g
}

// acquire waits for a permit; false once the gate is closed (the worker stops).
func (g *gate) acquire() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for g.holding >= g.allowed && !g.closed {
		g.cond.Wait()
	}
	if g.closed {
		return false
	}
	g.holding++
	return true
}

func (g *gate) release() {
	g.mu.Lock()
	g.holding--
	g.mu.Unlock()
	g.cond.Signal()
}

// resize sets how many may hold a permit, and wakes as many executors idle on the ready queue as
// the gate shrank by.
func (g *gate) resize(allowed int) {
	g.mu.Lock()
	shrink := max(0, g.allowed-allowed)
	g.allowed = allowed
	g.mu.Unlock()
	g.cond.Broadcast()
	for range shrink {
		select {
		case g.recheck <- struct{}{}:
		default: // as many tokens wait as there can be executors
		}
	}
}

func (g *gate) close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	g.cond.Broadcast()
}
