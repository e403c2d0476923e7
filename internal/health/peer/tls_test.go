package peer

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/etcdvisor/etcdvisor/internal/pki"
)

// testTLS is a CA and two peer certificates for 127.0.0.1, as two members
// have them.
type testTLS struct {
	server *tls.Config // requires a client certificate from the CA
	client *tls.Config // the other member's peer cert + the CA

	// Files of the serving member, for etcd's TLSInfo.
	certFile, keyFile, caFile string
}

func newTestTLS(t *testing.T) *testTLS {
	t.Helper()
	ca, err := pki.NewCA("peer-test-ca", pki.DefaultCAValidity)
	if err != nil {
		t.Fatal(err)
	}
	issue := func(name string) (*pki.KeyPair, tls.Certificate) {
		kp, err := pki.Issue(ca, pki.Request{Kind: pki.Peer, CommonName: name, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
		if err != nil {
			t.Fatal(err)
		}
		c, err := tls.X509KeyPair(kp.CertPEM, kp.KeyPEM)
		if err != nil {
			t.Fatal(err)
		}
		return kp, c
	}
	serverKP, serverCert := issue("m1")
	_, clientCert := issue("m2")
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)

	dir := t.TempDir()
	certFile, keyFile, err := pki.WritePair(dir, "peer", serverKP, false)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caFile, ca.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return &testTLS{
		server: &tls.Config{
			Certificates: []tls.Certificate{serverCert},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    pool,
		},
		client:   &tls.Config{Certificates: []tls.Certificate{clientCert}, RootCAs: pool},
		certFile: certFile, keyFile: keyFile, caFile: caFile,
	}
}

func TestTLSPeerIsProbedWithTheGivenClientCertificate(t *testing.T) {
	tc := newTestTLS(t)
	fp := newFakePeer(t, tc, nil)
	p := New(Options{Interval: 10 * time.Millisecond, Timeout: hangGuard, TLS: tc.client})
	p.SetPeers(map[string][]string{"m1": {fp.URL}})
	run(t, p)

	eventually(t, "three samples over TLS", func() bool { return stats(p, "m1").RTT.Count >= 3 })
	if got := stats(p, "m1"); got.Losses != 0 {
		t.Fatalf("losses = %d (last error %q), want 0", got.Losses, got.LastError)
	}
}

func TestTLSPeerRefusesAProberWithoutAClientCertificate(t *testing.T) {
	tc := newTestTLS(t)
	fp := newFakePeer(t, tc, nil)
	noCert := &tls.Config{RootCAs: tc.client.RootCAs}
	p := New(Options{Interval: 10 * time.Millisecond, TLS: noCert})
	p.SetPeers(map[string][]string{"m1": {fp.URL}})
	run(t, p)

	eventually(t, "a loss", func() bool { return stats(p, "m1").Losses > 0 })
	got := stats(p, "m1")
	if got.RTT.Count != 0 || got.LastError == "" {
		t.Fatalf("got %d samples, last error %q; want none and an error", got.RTT.Count, got.LastError)
	}
	if n := fp.requests.Load(); n != 0 {
		t.Fatalf("the peer served %d requests to a prober without a certificate", n)
	}
}

func TestTLSPeerOfferingHTTP2IsProbedOverHTTP1(t *testing.T) {
	tc := newTestTLS(t)
	var mu sync.Mutex
	protos := map[string]int{}
	fp := newFakePeer(t, tc, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		protos[r.Proto]++
		mu.Unlock()
	}, func(s *httptest.Server) { s.EnableHTTP2 = true })
	// A caller's config may offer h2 too, as a config built for a gRPC or
	// HTTP/2 client would.
	clientTLS := tc.client.Clone()
	clientTLS.NextProtos = []string{"h2", "http/1.1"}
	p := New(Options{Interval: 10 * time.Millisecond, Timeout: hangGuard, TLS: clientTLS})
	p.SetPeers(map[string][]string{"m1": {fp.URL}})
	run(t, p)

	eventually(t, "three samples", func() bool { return stats(p, "m1").RTT.Count >= 3 })
	mu.Lock()
	defer mu.Unlock()
	if len(protos) != 1 || protos["HTTP/1.1"] == 0 {
		t.Fatalf("protocols served: %v, want HTTP/1.1 only", protos)
	}
	if got := stats(p, "m1"); got.Losses != 0 {
		t.Fatalf("losses = %d (last error %q), want 0", got.Losses, got.LastError)
	}
}
