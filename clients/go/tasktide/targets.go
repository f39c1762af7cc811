package tasktide

// Where a connection goes: one address, a resolver target, or a comma list of the replicas of a
// service, as the Python and Node.js clients take them:
//
//   - one address ("host:port", "unix:/path", any gRPC target such as "dns:///svc.ns:50051"): a
//     resolver target ("dns:///...") may name several replicas and is balanced round robin; one
//     plain address keeps gRPC's default policy (pick_first);
//   - a comma list of the replicas of one service: "10.0.0.5:50051,10.0.0.6:50051",
//     "unix:/run/a.sock,unix:/run/b.sock", "[fd00::5]:50051,[fd00::6]:50051" or names
//     ("sched-a:50051,sched-b:50051", each name looked up when its connection is made). gRPC's own
//     list forms "ipv4:A,B", "ipv6:A,B" and "unix:/a,/b" are taken too.
//
// A list is balanced with gRPC's round_robin policy: each call (a stream: for its whole life) goes
// to a replica that is connected, and a replica that goes away is left out until it is back. With
// TLS, the certificate is checked against the first name of a list (else its first address; for
// unix sockets, "localhost"), so the replicas' certificates must all carry it.

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
)

// roundRobin is the service config of a list or a resolver target.
const roundRobin = `{"loadBalancingConfig":[{"round_robin":{}}]}`

// listScheme names the resolver of a list; each connection has a resolver of its own (passed
// with grpc.WithResolvers), so nothing is registered globally.
const listScheme = "tasktide-replicas"

// target is what grpc.NewClient is given for one address setting.
type target struct {
	name string
	opts []grpc.DialOption
}

func badAddress(address, why string) error {
	if len(address) > 200 {
		address = address[:200]
	}
	return fmt.Errorf("tasktide: invalid address list %q: %s", address, why)
}

// parseTarget reads an address setting (see above); an error says what is wrong with a list.
func parseTarget(address string) (target, error) {
	entries := strings.Split(address, ",")
	for i, e := range entries {
		entries[i] = strings.TrimSpace(e)
	}
	// gRPC's own list forms, read as lists: ipv4:A,B / ipv6:A,B / unix:/a,/b
	for _, scheme := range []string{"ipv4:", "ipv6:"} {
		if strings.HasPrefix(entries[0], scheme) {
			entries[0] = strings.TrimPrefix(entries[0], scheme)
		}
	}
	if len(entries) > 1 && strings.HasPrefix(entries[0], "unix:") {
		for i := 1; i < len(entries); i++ {
			if strings.HasPrefix(entries[i], "/") {
				entries[i] = "unix:" + entries[i]
			}
		}
	}
	if len(entries) == 1 {
		one := entries[0]
		switch {
		case one == "":
			return target{}, badAddress(address, "empty")
		case strings.HasPrefix(address, "ipv4:") || strings.HasPrefix(address, "ipv6:"):
			return listTarget(address, entries)
		case strings.Contains(one, "/") && !strings.HasPrefix(one, "unix:"):
			// A resolver target (dns:///...) may name several replicas: balanced.
			return target{name: one, opts: []grpc.DialOption{grpc.WithDefaultServiceConfig(roundRobin)}}, nil
		}
		// One address keeps pick_first, which reconnects when the next call comes.
		return target{name: one}, nil
	}
	return listTarget(address, entries)
}

// listTarget balances the entries of a list over a resolver of its own.
func listTarget(address string, entries []string) (target, error) {
	unix := 0
	for _, e := range entries {
		if e == "" {
			return target{}, badAddress(address, "an empty entry")
		}
		if strings.HasPrefix(e, "unix:") {
			unix++
		}
	}
	if unix > 0 && unix < len(entries) {
		return target{}, badAddress(address, "unix sockets and TCP addresses cannot be mixed")
	}
	addrs := make([]resolver.Address, 0, len(entries))
	authority := ""
	if unix > 0 {
		for _, e := range entries {
			path := strings.TrimPrefix(strings.TrimPrefix(e, "unix:"), "//")
			if path == "" {
				return target{}, badAddress(address, fmt.Sprintf("%q names no socket path", e))
			}
			addrs = append(addrs, resolver.Address{Addr: path})
		}
		authority = "localhost"
	} else {
		first := ""
		for _, e := range entries {
			if strings.Contains(e, "/") {
				return target{}, badAddress(address, "a list takes HOST:PORT entries; for a resolver target (dns:///...) give it alone")
			}
			host, port, err := net.SplitHostPort(e)
			if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n <= 0 || n >= 65536 {
				return target{}, badAddress(address, fmt.Sprintf("%q is not HOST:PORT (or unix:/path)", e))
			}
			if first == "" && net.ParseIP(host) == nil {
				first = e // the first name: the certificates name the host
			}
			addrs = append(addrs, resolver.Address{Addr: e})
		}
		authority = first
		if authority == "" {
			authority = entries[0]
		}
	}
	r := manual.NewBuilderWithScheme(listScheme)
	r.InitialState(resolver.State{Addresses: addrs})
	opts := []grpc.DialOption{
		grpc.WithResolvers(r),
		grpc.WithDefaultServiceConfig(roundRobin),
		grpc.WithAuthority(authority),
	}
	if unix > 0 {
		opts = append(opts, grpc.WithContextDialer(func(ctx context.Context, path string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", path)
		}))
	}
	return target{name: listScheme + ":///replicas", opts: opts}, nil
}
