package tasktide_test

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tasktide/tasktide/clients/go/tasktide"
)

// A list Dial cannot use is its error, saying what is wrong, before any connection is made.
func TestAnAddressListThatCannotBeUsedIsDialsError(t *testing.T) {
	cases := map[string]string{
		"127.0.0.1:7001,":                 "an empty entry",
		"127.0.0.1:7001,,127.0.0.1:7002":  "an empty entry",
		" ":                               "empty",
		"127.0.0.1:7001,nonsense":         `"nonsense" is not HOST:PORT`,
		"127.0.0.1:7001,127.0.0.1:99999":  `"127.0.0.1:99999" is not HOST:PORT`,
		"unix:/run/a.sock,127.0.0.1:7002": "unix sockets and TCP addresses cannot be mixed",
		"dns:///svc:50051,127.0.0.1:7002": "for a resolver target (dns:///...) give it alone",
		"unix:/run/a.sock,unix:":          `"unix:" names no socket path`,
	}
	for address, want := range cases {
		_, err := tasktide.Dial(address, tasktide.WithSchedulerAddress(""), tasktide.WithRegistryAddress(""), tasktide.WithResultsAddress(""))
		if err == nil || !strings.Contains(err.Error(), "invalid address list") || !strings.Contains(err.Error(), want) {
			t.Errorf("Dial(%q): %v, want an error saying %q", address, err, want)
		}
	}
	// A service's own address is read the same way.
	if _, err := tasktide.Dial("127.0.0.1:7001", tasktide.WithRegistryAddress("127.0.0.1:7001,")); err == nil {
		t.Error("a registry address list with an empty entry was taken")
	}
}

// downLike is an address of the same kind as addr (unix socket or TCP) where nothing listens.
func downLike(t *testing.T, addr string) string {
	t.Helper()
	if strings.HasPrefix(addr, "unix:") {
		return "unix:" + filepath.Join(t.TempDir(), "down.sock")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := l.Addr().String()
	_ = l.Close()
	return down
}

// Each service's address listed after a replica that is down: submissions, results and status
// reads reach the replica that is up.
func TestAListWithAReplicaDownUsesTheOneUp(t *testing.T) {
	queue := pythonQueue(t)
	addr := os.Getenv("TASKTIDE_ADDRESS")
	list := func(a string) string {
		if a == "" {
			a = addr
		}
		return downLike(t, a) + "," + a
	}
	c, err := tasktide.Dial(list(addr),
		tasktide.WithSchedulerAddress(list(os.Getenv("TASKTIDE_SCHEDULER_ADDRESS"))),
		tasktide.WithRegistryAddress(list(os.Getenv("TASKTIDE_REGISTRY_ADDRESS"))),
		tasktide.WithResultsAddress(list(os.Getenv("TASKTIDE_RESULTS_ADDRESS"))))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := testContext(t)
	for i := range 10 {
		h, err := c.Submit(ctx, "t.add", []any{i, 1}, tasktide.WithQueue(queue))
		if err != nil {
			t.Fatal(err)
		}
		var got int
		if err := h.GetInto(ctx, &got); err != nil || got != i+1 {
			t.Fatalf("t.add(%d, 1) = %d, %v", i, got, err)
		}
	}
}
