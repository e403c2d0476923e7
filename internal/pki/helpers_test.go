package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// ioTimeout only keeps a broken test from hanging; nothing asserts on it.
const ioTimeout = 30 * time.Second

func newTestCA(t *testing.T, cn string) *KeyPair {
	t.Helper()
	ca, err := NewCA(cn, DefaultCAValidity)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func mustIssue(t *testing.T, ca *KeyPair, req Request) *KeyPair {
	t.Helper()
	kp, err := Issue(ca, req)
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

// writeTestPair writes kp as dir/name.crt and dir/name.key.
func writeTestPair(t *testing.T, dir, name string, kp *KeyPair) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile, err := WritePair(dir, name, kp, false)
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// writeTestCA writes the CA's certificate alone, as a member has it.
func writeTestCA(t *testing.T, dir string, ca *KeyPair) string {
	t.Helper()
	path := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(path, ca.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

var loopback = net.IPv4(127, 0, 0, 1)

// serveTLS accepts connections on 127.0.0.1 with cfg, echoes one byte on
// each, and sends each connection's handshake result on the channel, in
// the order the connections arrive.
func serveTLS(t *testing.T, cfg *tls.Config) (addr string, results <-chan error) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan error, 16)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			// One connection at a time keeps the results in dial order.
			func() {
				defer c.Close()
				tc := c.(*tls.Conn)
				tc.SetDeadline(time.Now().Add(ioTimeout))
				err := tc.Handshake()
				if err == nil {
					b := make([]byte, 1)
					if _, err := io.ReadFull(tc, b); err == nil {
						tc.Write(b)
					}
				}
				out <- err
			}()
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().String(), out
}

// roundTrip dials addr, writes a byte and reads it back. On TLS 1.3 the
// client's handshake completes before the server has checked the client's
// certificate, so only the read shows the server's refusal.
func roundTrip(addr string, cfg *tls.Config) error {
	d := &net.Dialer{Timeout: ioTimeout}
	conn, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(ioTimeout))
	if _, err := conn.Write([]byte{'x'}); err != nil {
		return err
	}
	b := make([]byte, 1)
	if _, err := io.ReadFull(conn, b); err != nil {
		return err
	}
	if b[0] != 'x' {
		return errors.New("echo came back wrong")
	}
	return nil
}

func loadPair(t *testing.T, certFile, keyFile string) tls.Certificate {
	t.Helper()
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func loadPool(t *testing.T, caFile string) *x509.CertPool {
	t.Helper()
	data, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		t.Fatalf("no certificate in %s", caFile)
	}
	return pool
}

// serverConfig is etcd's listener with client-cert-auth on.
func serverConfig(t *testing.T, certFile, keyFile, caFile string, version uint16) *tls.Config {
	t.Helper()
	return &tls.Config{
		Certificates: []tls.Certificate{loadPair(t, certFile, keyFile)},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    loadPool(t, caFile),
		MinVersion:   version,
		MaxVersion:   version,
	}
}

// clientConfig trusts caFile and presents the pair, if any, whatever CAs
// the server says it accepts: a plain Certificates list would leave a
// foreign certificate unsent, and the test would not see the server
// refuse it.
func clientConfig(t *testing.T, caFile, certFile, keyFile string) *tls.Config {
	t.Helper()
	cfg := &tls.Config{RootCAs: loadPool(t, caFile)}
	if certFile != "" {
		c := loadPair(t, certFile, keyFile)
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &c, nil }
	}
	return cfg
}

// splitErrors returns the errors an errors.Join holds, or err alone.
func splitErrors(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
