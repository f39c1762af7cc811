package tasktide

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// credentialsFromEnv are the transport credentials Dial uses when no option gives any, read from
// the variables the Python and Node.js clients read too: TASKTIDE_TLS_CA (a PEM file of the CA
// that signs the platform's certificates) turns TLS on, and TASKTIDE_TLS_CERT with TASKTIDE_TLS_KEY
// add a client certificate for mutual TLS (with the system's roots when TASKTIDE_TLS_CA is unset).
// With none of them set, connections are plaintext.
func credentialsFromEnv() (credentials.TransportCredentials, error) {
	ca, cert, key := os.Getenv("TASKTIDE_TLS_CA"), os.Getenv("TASKTIDE_TLS_CERT"), os.Getenv("TASKTIDE_TLS_KEY")
	if ca == "" && cert == "" && key == "" {
		return insecure.NewCredentials(), nil
	}
	if (cert == "") != (key == "") {
		return nil, fmt.Errorf("tasktide: a client certificate needs both TASKTIDE_TLS_CERT and TASKTIDE_TLS_KEY")
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, fmt.Errorf("tasktide: cannot read the TLS CA (TASKTIDE_TLS_CA): %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tasktide: no PEM certificate in the TLS CA %s (TASKTIDE_TLS_CA)", ca)
		}
		cfg.RootCAs = pool
	}
	if cert != "" {
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, fmt.Errorf("tasktide: cannot load the client certificate (TASKTIDE_TLS_CERT, TASKTIDE_TLS_KEY): %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return credentials.NewTLS(cfg), nil
}
