package tasktide

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"time"

	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	pb "github.com/tasktide/tasktide/clients/go/tasktidepb"
)

// DefaultAddress is used when neither Dial's address nor TASKTIDE_ADDRESS is given.
const DefaultAddress = "127.0.0.1:50051"

const maxMessageBytes = 16 * 1024 * 1024

// DialOption configures Dial.
type DialOption func(*dialConfig)

// DialOptions combines several options into one, for plug-ins that need more than one.
func DialOptions(opts ...DialOption) DialOption {
	return func(c *dialConfig) {
		for _, o := range opts {
			o(c)
		}
	}
}

type dialConfig struct {
	scheduler, registry, results string
	grpcOptions                  []grpc.DialOption
	creds                        credentials.TransportCredentials
	token                        string
	keepalive                    keepalive.ClientParameters
	submitTransport              string
	submitHooks                  []SubmitHook
}

// DefaultKeepalive pings a connection every 10 s while calls are open on it and drops it when a
// ping is not answered within 5 s: a server that froze (SIGSTOP, a host that stopped answering)
// keeps its connection open, and calls sent there would otherwise wait as long as it does. The
// call then fails Unavailable and the next goes to another replica. The policy of the Python and
// Node.js clients and of the services' calls to each other; the platform's servers accept pings
// every 5 s (gRPC's default refuses them more often than every 5 minutes on a call that sends no
// data). WithKeepalive changes it, e.g. for a proxy in between with a policy of its own.
var DefaultKeepalive = keepalive.ClientParameters{Time: 10 * time.Second, Timeout: 5 * time.Second}

// reconnect is how a connection reconnects after it fails (the service stopped, restarted or is out
// of reach): each new attempt waits from 200 ms, 1.6 times longer after each failure (20 % jitter),
// up to 5 s, the policy of the Python and Node.js clients and of the services' calls to each other.
// grpc-go's default (1 s up to 120 s) grows to tens of seconds during a long outage, and calls then
// fail ErrUnavailable well after the service is back. A connection attempt may take up to 20 s
// (gRPC's default), whatever the backoff. WithGRPCOptions(grpc.WithConnectParams(...)) replaces it.
var reconnect = grpc.ConnectParams{
	Backoff:           grpcbackoff.Config{BaseDelay: 200 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 5 * time.Second},
	MinConnectTimeout: 20 * time.Second,
}

// WithTLS connects over TLS with the given configuration (nil: the system's roots). Without this
// option or WithTransportCredentials, TASKTIDE_TLS_CA, TASKTIDE_TLS_CERT and TASKTIDE_TLS_KEY
// decide (see Dial).
func WithTLS(cfg *tls.Config) DialOption {
	return func(c *dialConfig) { c.creds = credentials.NewTLS(cfg) }
}

// WithTransportCredentials connects with the given gRPC transport credentials (mTLS, ALTS...).
func WithTransportCredentials(creds credentials.TransportCredentials) DialOption {
	return func(c *dialConfig) { c.creds = creds }
}

// WithToken sends "authorization: Bearer TOKEN" with every call and stream (by default the token
// is read from TASKTIDE_TOKEN; an empty token sends none).
func WithToken(token string) DialOption { return func(c *dialConfig) { c.token = token } }

// WithKeepalive replaces DefaultKeepalive.
func WithKeepalive(p keepalive.ClientParameters) DialOption {
	return func(c *dialConfig) { c.keepalive = p }
}

// WithSchedulerAddress, WithRegistryAddress and WithResultsAddress override the address of one
// service (by default every service is reached at Dial's address).
func WithSchedulerAddress(addr string) DialOption { return func(c *dialConfig) { c.scheduler = addr } }

// WithRegistryAddress overrides the worker registry's address.
func WithRegistryAddress(addr string) DialOption { return func(c *dialConfig) { c.registry = addr } }

// WithResultsAddress overrides the results service's address.
func WithResultsAddress(addr string) DialOption { return func(c *dialConfig) { c.results = addr } }

// WithGRPCOptions adds options to every gRPC connection (interceptors, call options...); they
// come after the package's own, so they win. Without TLS (WithTLS, WithTransportCredentials, a
// credentials option here or the TASKTIDE_TLS_* variables), connections are plaintext.
func WithGRPCOptions(opts ...grpc.DialOption) DialOption {
	return func(c *dialConfig) { c.grpcOptions = append(c.grpcOptions, opts...) }
}

// Client submits tasks and reads their results. It is safe for concurrent use; keep one per
// process and Close it when done.
type Client struct {
	conns     []*grpc.ClientConn
	scheduler pb.SchedulerClient
	registry  pb.RegistryClient
	results   pb.ResultsClient
	stream    *streamSubmitter // nil: a Submit call per task (TransportUnary)
	follow    *follower        // the Follow stream Handle.Get waits on (follow.go)
	hooks     []SubmitHook
}

// Dial connects to the platform at addr: "host:port", "unix:/path", a resolver target such as
// "dns:///tasktide.ns.svc:50051", or a comma list of replicas ("10.0.0.5:50051,10.0.0.6:50051",
// "unix:/run/a.sock,unix:/run/b.sock"), balanced round robin over the replicas that are up (see
// targets.go); a list that cannot be used is Dial's error. An empty addr reads TASKTIDE_ADDRESS, then
// falls back to DefaultAddress; TASKTIDE_SCHEDULER_ADDRESS, TASKTIDE_REGISTRY_ADDRESS and
// TASKTIDE_RESULTS_ADDRESS override single services unless an option does; TASKTIDE_TOKEN is the
// bearer token unless WithToken gives one; TASKTIDE_SUBMIT_TRANSPORT chooses how Submit sends
// (see WithSubmitTransport). Unless WithTLS or WithTransportCredentials is given,
// TASKTIDE_TLS_CA turns TLS on with that CA file, and TASKTIDE_TLS_CERT and TASKTIDE_TLS_KEY add a
// client certificate for mutual TLS; a file that cannot be read is Dial's error. Connections are made lazily, so Dial does not fail when
// the platform is down; calls then return ErrUnavailable.
func Dial(addr string, opts ...DialOption) (*Client, error) {
	if addr == "" {
		addr = os.Getenv("TASKTIDE_ADDRESS")
	}
	if addr == "" {
		addr = DefaultAddress
	}
	cfg := dialConfig{
		scheduler:       os.Getenv("TASKTIDE_SCHEDULER_ADDRESS"),
		registry:        os.Getenv("TASKTIDE_REGISTRY_ADDRESS"),
		results:         os.Getenv("TASKTIDE_RESULTS_ADDRESS"),
		token:           os.Getenv("TASKTIDE_TOKEN"),
		keepalive:       DefaultKeepalive,
		submitTransport: os.Getenv("TASKTIDE_SUBMIT_TRANSPORT"),
	}
	for _, o := range opts {
		o(&cfg)
	}
	stream, err := streamChosen(cfg.submitTransport)
	if err != nil {
		return nil, err
	}
	if cfg.creds == nil {
		creds, err := credentialsFromEnv()
		if err != nil {
			return nil, err
		}
		cfg.creds = creds
	}
	grpcOpts := []grpc.DialOption{
		grpc.WithTransportCredentials(cfg.creds),
		grpc.WithKeepaliveParams(cfg.keepalive),
		grpc.WithConnectParams(reconnect),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMessageBytes), grpc.MaxCallSendMsgSize(maxMessageBytes)),
	}
	if cfg.token != "" {
		grpcOpts = append(grpcOpts, grpc.WithPerRPCCredentials(bearer{token: cfg.token}))
	}
	grpcOpts = append(grpcOpts, cfg.grpcOptions...)
	c := &Client{hooks: cfg.submitHooks}
	byAddr := map[string]*grpc.ClientConn{}
	conn := func(a string) (*grpc.ClientConn, error) {
		if a == "" {
			a = addr
		}
		if cc, ok := byAddr[a]; ok {
			return cc, nil
		}
		t, err := parseTarget(a)
		if err != nil {
			return nil, err
		}
		cc, err := grpc.NewClient(t.name, append(t.opts, grpcOpts...)...)
		if err != nil {
			return nil, err
		}
		byAddr[a] = cc
		c.conns = append(c.conns, cc)
		return cc, nil
	}
	sched, err := conn(cfg.scheduler)
	if err == nil {
		c.scheduler = pb.NewSchedulerClient(sched)
		if stream {
			c.stream = newStreamSubmitter(c.scheduler)
		}
		var reg, res *grpc.ClientConn
		if reg, err = conn(cfg.registry); err == nil {
			c.registry = pb.NewRegistryClient(reg)
			if res, err = conn(cfg.results); err == nil {
				c.results = pb.NewResultsClient(res)
				c.follow = newFollower(c.results)
			}
		}
	}
	if err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

// Close closes the client's connections; submissions still waiting for an answer fail.
func (c *Client) Close() error {
	if c.stream != nil {
		c.stream.close()
	}
	if c.follow != nil {
		c.follow.close()
	}
	var first error
	for _, cc := range c.conns {
		if err := cc.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// SchedulerService, RegistryService and ResultsService give the generated stubs, for calls this
// package does not wrap.
func (c *Client) SchedulerService() pb.SchedulerClient { return c.scheduler }

// RegistryService gives the worker registry's generated stub.
func (c *Client) RegistryService() pb.RegistryClient { return c.registry }

// ResultsService gives the results service's generated stub.
func (c *Client) ResultsService() pb.ResultsClient { return c.results }

// Status is the task's state; StateUnknown for an id the platform does not know.
func (c *Client) Status(ctx context.Context, taskID string) (State, error) {
	resp, err := c.results.Get(ctx, &pb.GetRequest{TaskIds: []string{taskID}})
	if err != nil {
		return StateUnknown, wrap(ctx, "Get", err)
	}
	if rs := resp.GetResults(); len(rs) == 1 && rs[0].GetFound() {
		return State(rs[0].GetState()), nil
	}
	task, err := c.scheduler.GetTask(ctx, &pb.GetTaskRequest{TaskId: taskID}) // not dispatched yet
	if err != nil {
		err = wrap(ctx, "GetTask", err)
		if isNotFound(err) {
			return StateUnknown, nil
		}
		return StateUnknown, err
	}
	return State(task.GetState()), nil
}

// Cancel cancels a task: at once when it is delayed or queued; a running task is signalled and
// stopped after a grace period. It returns the task's state after the request.
func (c *Client) Cancel(ctx context.Context, taskID string) (State, error) {
	resp, err := c.scheduler.Cancel(ctx, &pb.CancelRequest{TaskId: taskID})
	if err != nil {
		return StateUnknown, wrap(ctx, "Cancel", err)
	}
	return State(resp.GetState()), nil
}

// Explain says why a task is not running (yet), in one sentence for a person, with the reason.
func (c *Client) Explain(ctx context.Context, taskID string) (*pb.Explanation, error) {
	resp, err := c.scheduler.Explain(ctx, &pb.ExplainRequest{TaskId: taskID})
	if err != nil {
		return nil, wrap(ctx, "Explain", err)
	}
	return resp, nil
}

// DrainWorker stops a worker gracefully, whatever its language: it takes nothing new, gives back
// the tasks it has not started, finishes those running and ends. It returns how many of the
// worker's sessions were asked, or an error that Is ErrNotFound when no worker of that id is
// connected. The caller's token needs the admin role.
func (c *Client) DrainWorker(ctx context.Context, workerID string) (int, error) {
	resp, err := c.registry.DrainWorker(ctx, &pb.DrainWorkerRequest{WorkerId: workerID})
	if err != nil {
		return 0, wrap(ctx, "DrainWorker", err)
	}
	return int(resp.GetSessions()), nil
}

// ResizeWorker grows or shrinks a worker's pool while it runs: from now on it runs at most
// concurrency (1..1024) tasks at a time, and tasks running beyond that finish first. It returns how
// many of the worker's sessions were asked, or an error that Is ErrNotFound when no worker of that
// id is connected (FailedPrecondition when the worker cannot be resized). The caller's token needs
// the admin role.
func (c *Client) ResizeWorker(ctx context.Context, workerID string, concurrency int) (int, error) {
	if concurrency < 1 || concurrency > maxConcurrency {
		return 0, fmt.Errorf("tasktide: a concurrency is 1..%d, not %d", maxConcurrency, concurrency)
	}
	req := &pb.ResizeWorkerRequest{WorkerId: workerID, Concurrency: uint32(concurrency)}
	resp, err := c.registry.ResizeWorker(ctx, req)
	if err != nil {
		return 0, wrap(ctx, "ResizeWorker", err)
	}
	return int(resp.GetSessions()), nil
}

func isNotFound(err error) bool {
	e, ok := err.(*Error)
	return ok && e.Is(ErrNotFound)
}

// bearer sends "authorization: Bearer TOKEN" with every call. Over a plaintext connection too, as
// the other clients do, so a token works with a platform behind a TLS-terminating proxy.
type bearer struct{ token string }

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

func (b bearer) RequireTransportSecurity() bool { return false }
