package tasktide

import (
	"sync"
	"time"
)

// How many assignments a worker asks the registry to keep it supplied with: its credit window.
//
// The window is Concurrency plus a prefetch. A fixed prefetch (WorkerOptions.Prefetch > 0) stays
// as set. The default starts at three tasks per slot and follows the length of the tasks: enough
// for about creditBufferSeconds of work per slot, between creditMinPerSlot and creditMaxPerSlot
// per slot. Short tasks then travel in larger batches (fewer messages and Redis round trips per
// task); long tasks keep a small window, so tasks do not wait behind them in one worker while
// another is free.
//
// The window only moves through the credit the worker grants: a new session grants what tops the
// leases in hand up to the target, and each batch of outcomes returns as much of its credit as
// keeps the window at the target. It grows by granting more than the batch returns and shrinks by
// withholding, never beyond the target, so the worker never holds more than maxWindow leases.
const (
	creditBufferSeconds = 0.05 // of work per slot, when tasks are short
	creditMinPerSlot    = 3
	creditMaxPerSlot    = 32
	creditWeight        = 0.05 // of each new duration in the moving average
)

// creditWindow is a worker's credit window. Executors observe durations; the session grants
// credit: its methods are safe for concurrent use.
type creditWindow struct {
	concurrency int
	fixed       int // prefetch set by the user; 0 follows task length

	mu       sync.Mutex
	window   int     // leases held plus credit granted and not used, as the registry counts them
	average  float64 // seconds per task, moving average
	observed bool    // average holds a duration
}

func newCreditWindow(concurrency, prefetch int) *creditWindow {
	return &creditWindow{concurrency: concurrency, fixed: max(prefetch, 0)}
}

// maxWindow is the largest the window can be: the leases held at most.
func (c *creditWindow) maxWindow() int {
	if c.fixed > 0 {
		return c.concurrency + c.fixed
	}
	return c.concurrency * (1 + creditMaxPerSlot)
}

// target is the window the credit moves toward. Called with mu held.
func (c *creditWindow) target() int {
	if c.fixed > 0 {
		return c.concurrency + c.fixed
	}
	perSlot := creditMinPerSlot
	if c.observed {
		perSlot = int(min(creditBufferSeconds/max(c.average, 1e-6), creditMaxPerSlot))
		perSlot = max(perSlot, creditMinPerSlot)
	}
	return c.concurrency * (1 + perSlot)
}

// open is the credit of a new session, for a worker with inHand leases already (waiting,
// running, or with outcomes still to send, each of which returns its credit when sent): what tops
// them up to the target. With more in hand than the target, the window starts at what is in hand
// and nothing is granted; outcomes then shrink it back, as in returned.
func (c *creditWindow) open(inHand int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.window = max(c.target(), inHand)
	return c.window - inHand
}

// observe records that a task ran for d.
func (c *creditWindow) observe(d time.Duration) {
	s := d.Seconds()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.observed {
		c.average += creditWeight * (s - c.average)
	} else {
		c.average, c.observed = s, true
	}
}

// resize sets the concurrency (a Resize): the credit to grant at once, which tops the window up to
// its new target when it grew. A smaller target grants nothing: outcomes then shrink the window,
// as in returned.
func (c *creditWindow) resize(concurrency int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.concurrency = concurrency
	grant := max(0, c.target()-c.window)
	c.window += grant
	return grant
}

// size is the concurrency now.
func (c *creditWindow) size() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.concurrency
}

// returned is the credit to grant with a batch of n outcomes being sent, which moves the window
// toward its target.
func (c *creditWindow) returned(n int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	grant := max(0, n+c.target()-c.window)
	c.window += grant - n
	return grant
}
