package tasktide

import (
	"context"
	"errors"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/tasktide/tasktide/clients/go/tasktidepb"
)

// How Handle.Get hears that a task is final: one Results.Follow stream per Client, shared by every
// waiting Get. A Get names its task id on the stream (ids named while a request is being sent
// travel together in the next one) and returns when the server answers that id with its final
// result; a Get whose context ends is taken off, and the id is forgotten on the stream once no Get
// waits for it. The stream opens on first use and is ended after followLinger with none waiting.
//
// A lost stream (a restarted or unreachable results service) is opened again after a pause
// (followRetry, x1.6 per failure in a row, at most followRetryMax) and every id still awaited is
// named again: a Get outlives a restart. The service accepts a stream by sending followHeader in
// its headers at once. Once it has accepted one of this Client's streams, a lost service is a
// service restarting: streams are opened again while Gets wait, each Get ending with its context.
// A platform never reached is reported instead: after maxFollowFailures streams in a row refused
// (about 3 s), the Gets go to Wait calls, which report the error of each one (ErrUnavailable), as
// any refusal of the stream (credentials, a limit) does; a server without Follow (UNIMPLEMENTED, an
// older version) gets Wait calls for good.

const (
	maxFollowed    = 10_000 // ids followed at once (the server's default batch limit); more Gets use Wait
	followLinger   = 200 * time.Millisecond
	followRetry    = 200 * time.Millisecond
	followRetryMax = 5 * time.Second
	// streams refused in a row, the service never reached, before the Gets use Wait
	maxFollowFailures = 5
	// in the headers the service sends as it accepts a Follow stream
	followHeader = "tasktide-follow"
)

var (
	errUseWait  = errors.New("tasktide: waiting by Wait calls")
	taskIDShape = regexp.MustCompile(`^[0-9a-f]{32}$`)
)

// follower is the Client's Follow stream and the Gets waiting on it.
type follower struct {
	results     pb.ResultsClient
	unsupported atomic.Bool // the server answered Follow with UNIMPLEMENTED
	opened      atomic.Int64

	mu       sync.Mutex // guards everything below
	waiters  map[string]map[*followWaiter]struct{}
	toFollow map[string]struct{} // ids to name in the next request
	toForget map[string]struct{}
	cur      *followStream // nil: none open
	linger   *time.Timer
	retry    *time.Timer
	failures int
	reached  bool // the service has accepted a stream of this Client
	closed   bool
}

type followWaiter struct{ ch chan *pb.TaskResult } // nil: wait by Wait calls

// followStream is one Follow call; its sender goroutine sends what `kick` announces.
type followStream struct {
	ctx    context.Context
	cancel context.CancelFunc
	kick   chan struct{}
}

func newFollower(results pb.ResultsClient) *follower {
	return &follower{
		results:  results,
		waiters:  map[string]map[*followWaiter]struct{}{},
		toFollow: map[string]struct{}{},
		toForget: map[string]struct{}{},
	}
}

// wait returns the final result of taskID, ctx's error, or errUseWait when the stream cannot
// serve it.
func (f *follower) wait(ctx context.Context, taskID string) (*pb.TaskResult, error) {
	if f.unsupported.Load() || !taskIDShape.MatchString(taskID) {
		return nil, errUseWait
	}
	w := &followWaiter{ch: make(chan *pb.TaskResult, 1)}
	f.mu.Lock()
	set := f.waiters[taskID]
	if f.closed || (set == nil && len(f.waiters) >= maxFollowed) {
		f.mu.Unlock()
		return nil, errUseWait
	}
	if set == nil {
		set = map[*followWaiter]struct{}{}
		f.waiters[taskID] = set
		delete(f.toForget, taskID)
		f.toFollow[taskID] = struct{}{}
	}
	set[w] = struct{}{}
	if f.linger != nil {
		f.linger.Stop()
		f.linger = nil
	}
	if f.cur == nil && f.retry == nil {
		f.openLocked()
	} else if f.cur != nil {
		f.cur.wake()
	}
	f.mu.Unlock()
	select {
	case res := <-w.ch:
		if res == nil {
			return nil, errUseWait
		}
		return res, nil
	case <-ctx.Done():
		f.drop(taskID, w)
		return nil, ctx.Err()
	}
}

// drop takes a waiting Get off; the id is forgotten on the stream when no Get waits for it.
func (f *follower) drop(taskID string, w *followWaiter) {
	f.mu.Lock()
	defer f.mu.Unlock()
	set := f.waiters[taskID]
	if _, ok := set[w]; !ok {
		return // answered meanwhile
	}
	delete(set, w)
	if len(set) > 0 {
		return
	}
	delete(f.waiters, taskID)
	if _, queued := f.toFollow[taskID]; queued {
		delete(f.toFollow, taskID) // never named: nothing to forget
	} else {
		f.toForget[taskID] = struct{}{}
	}
	if f.cur != nil {
		f.cur.wake()
	}
	f.idleLocked()
}

func (s *followStream) wake() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// openLocked opens a stream that names every id awaited now.
func (f *follower) openLocked() {
	ctx, cancel := context.WithCancel(context.Background())
	s := &followStream{ctx: ctx, cancel: cancel, kick: make(chan struct{}, 1)}
	f.cur = s
	f.toFollow = make(map[string]struct{}, len(f.waiters))
	for id := range f.waiters {
		f.toFollow[id] = struct{}{}
	}
	f.toForget = map[string]struct{}{}
	f.opened.Add(1)
	s.wake()
	go f.run(s)
}

// run is one stream: it opens the call, sends from a goroutine of its own and reads the answers
// until the call ends, then decides what the Gets still waiting do.
func (f *follower) run(s *followStream) {
	call, err := f.results.Follow(s.ctx)
	if err == nil {
		go f.send(s, call)
		if header, herr := call.Header(); herr == nil && len(header.Get(followHeader)) > 0 {
			f.accepted()
		}
		for {
			var resp *pb.FollowResponse
			if resp, err = call.Recv(); err != nil {
				break
			}
			f.answer(resp.GetResults())
		}
	}
	s.cancel()
	f.ended(s, err)
}

func (f *follower) send(s *followStream, call pb.Results_FollowClient) {
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.kick:
		}
		f.mu.Lock()
		req := &pb.FollowRequest{}
		for id := range f.toForget {
			req.Forget = append(req.Forget, id)
		}
		for id := range f.toFollow {
			req.TaskIds = append(req.TaskIds, id)
		}
		f.toFollow, f.toForget = map[string]struct{}{}, map[string]struct{}{}
		f.mu.Unlock()
		if len(req.TaskIds)+len(req.Forget) == 0 {
			continue
		}
		if err := call.Send(req); err != nil {
			return // the reader sees the call end and names the ids again on a new stream
		}
	}
}

// accepted: the service took a stream of this Client.
func (f *follower) accepted() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failures = 0
	f.reached = true
}

func (f *follower) answer(results []*pb.TaskResult) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failures = 0
	f.reached = true // a service that sends no followHeader
	for _, r := range results {
		for w := range f.waiters[r.GetTaskId()] {
			w.ch <- r
		}
		delete(f.waiters, r.GetTaskId())
	}
	f.idleLocked()
}

// ended: the stream's call is over with err (nil when it could not be told apart from a close).
func (f *follower) ended(s *followStream, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cur != s {
		return // ended by this client (idle, or closed)
	}
	f.cur = nil
	code := status.Code(err)
	switch code {
	case codes.Unavailable, codes.Internal, codes.Unknown, codes.Canceled, codes.Aborted, codes.OK:
		if len(f.waiters) == 0 || f.closed {
			return
		}
		if f.failures+1 >= maxFollowFailures && !f.reached {
			f.failures = 0
			f.releaseLocked()
			return
		}
		delay := followRetry
		for i := 0; i < f.failures && delay < followRetryMax; i++ {
			delay = delay * 8 / 5
		}
		f.failures++
		f.retry = time.AfterFunc(min(delay, followRetryMax), f.reopen)
	default:
		if code == codes.Unimplemented {
			f.unsupported.Store(true)
		}
		f.releaseLocked() // each Get's own Wait call reports what is wrong
	}
}

func (f *follower) reopen() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.retry = nil
	if f.cur == nil && !f.closed && len(f.waiters) > 0 {
		f.openLocked()
	}
}

// idleLocked ends the stream after followLinger when no Get waits.
func (f *follower) idleLocked() {
	if len(f.waiters) > 0 || f.cur == nil || f.linger != nil {
		return
	}
	s := f.cur
	f.linger = time.AfterFunc(followLinger, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.linger = nil
		if f.cur == s && len(f.waiters) == 0 {
			f.cur = nil
			s.cancel()
		}
	})
}

// releaseLocked sends every waiting Get to Wait calls.
func (f *follower) releaseLocked() {
	for id, set := range f.waiters {
		for w := range set {
			w.ch <- nil
		}
		delete(f.waiters, id)
	}
	f.toFollow, f.toForget = map[string]struct{}{}, map[string]struct{}{}
}

func (f *follower) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	for _, t := range []*time.Timer{f.linger, f.retry} {
		if t != nil {
			t.Stop()
		}
	}
	if f.cur != nil {
		f.cur.cancel()
		f.cur = nil
	}
	f.releaseLocked()
}
