package tasktide

import (
	"os"
	"testing"
)

// platformClient is a Client of the platform the tests run against (TASKTIDE_ADDRESS), closed when
// the test ends; the test is skipped without one.
func platformClient(t *testing.T) *Client {
	t.Helper()
	addr := os.Getenv("TASKTIDE_ADDRESS")
	if addr == "" {
		t.Skip("TASKTIDE_ADDRESS is not set")
	}
	c, err := Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}
