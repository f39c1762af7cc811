package tasktide

import (
	"context"
	"fmt"
	"time"
)

// drainQuiet is how long a draining session waits for assignments it may still be sent.
const drainQuiet = 100 * time.Millisecond

// drain releases what was not started, lets running tasks finish (for ShutdownTimeout at most,
// then releases their leases too), flushes their outcomes and closes the stream.
func (s *session) drain(readErr, writeErr chan error, cancelStream context.CancelFunc) error {
	p := s.p
	p.stopping.Store(true)
	p.stop()
	released := s.release(p.takeReady())
	p.mu.Lock()
	running := len(p.running)
	p.mu.Unlock()
	s.w.log.Info("tasktide: draining", "worker", s.w.opts.WorkerID, "released", released, "running", running)
	if !p.waitExecs(context.Background(), s.w.opts.ShutdownTimeout) {
		refs := p.abandon(errShutdown)
		s.w.log.Warn("tasktide: shutdown limit passed; releasing the tasks still running",
			"worker", s.w.opts.WorkerID, "limit", s.w.opts.ShutdownTimeout, "released", len(refs))
		s.release(refs)
		p.execs.Wait() // an abandoned attempt returns at once
	}
	s.release(p.takeReady())
	close(p.outcomes) // every executor has returned: no more senders
	// Released tasks go back to the queue, and the registry may assign them again while it holds
	// credit of this session: those are released as they come (take), until the credit is used
	// up or the registry has sent nothing for a moment.
	for s.granted.Load() > s.received.Load() {
		select {
		case <-s.assigned:
			continue
		case <-time.After(drainQuiet):
		case err := <-readErr:
			s.abort(cancelStream)
			return fmt.Errorf("tasktide: session lost while draining: %w", sessionError(err))
		}
		break
	}
	close(s.closeReq)
	var err error
	select {
	case err = <-writeErr:
	case err = <-readErr: // the stream broke while draining
		s.abort(cancelStream)
		return fmt.Errorf("tasktide: session lost while draining: %w", sessionError(err))
	}
	if err != nil {
		s.abort(cancelStream)
		return err
	}
	_ = s.stream.CloseSend()
	select {
	case <-readErr:
	case <-time.After(2 * time.Second):
	}
	s.abort(cancelStream)
	return nil
}
