package tasktide

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The TASKTIDE_TLS_* variables decide the transport when no option does: none is plaintext, a CA
// file is TLS, and a missing file or half a client certificate is a clear error from Dial.
func TestCredentialsFromEnv(t *testing.T) {
	for _, name := range []string{"TASKTIDE_TLS_CA", "TASKTIDE_TLS_CERT", "TASKTIDE_TLS_KEY"} {
		t.Setenv(name, "")
	}
	creds, err := credentialsFromEnv()
	if err != nil || creds.Info().SecurityProtocol != "insecure" {
		t.Fatalf("no variables: %v, %v", creds, err)
	}

	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ ca, cert, key, want string }{
		{filepath.Join(dir, "missing.pem"), "", "", "cannot read the TLS CA"},
		{notPEM, "", "", "no PEM certificate"},
		{"", notPEM, "", "needs both TASKTIDE_TLS_CERT and TASKTIDE_TLS_KEY"},
		{"", notPEM, notPEM, "cannot load the client certificate"},
	} {
		t.Setenv("TASKTIDE_TLS_CA", tc.ca)
		t.Setenv("TASKTIDE_TLS_CERT", tc.cert)
		t.Setenv("TASKTIDE_TLS_KEY", tc.key)
		if _, err := Dial("127.0.0.1:1"); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: got %v, want an error with %q", tc, err, tc.want)
		}
	}

	// An explicit option wins over the environment (which here names a missing file).
	t.Setenv("TASKTIDE_TLS_CA", filepath.Join(dir, "missing.pem"))
	t.Setenv("TASKTIDE_TLS_CERT", "")
	t.Setenv("TASKTIDE_TLS_KEY", "")
	c, err := Dial("127.0.0.1:1", WithTLS(nil))
	if err != nil {
		t.Fatalf("WithTLS with a bad TASKTIDE_TLS_CA: %v", err)
	}
	_ = c.Close()
}
