package peer

import (
	"crypto/tls"
	"fmt"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"

	"github.com/etcdvisor/etcdvisor/internal/testetcd"
)

// startEtcd runs a one-member etcd on free loopback ports and returns its
// peer URL. With tc its peer listener serves TLS and requires a client
// certificate.
func startEtcd(t *testing.T, tc *testTLS) string {
	t.Helper()
	scheme := "http"
	if tc != nil {
		scheme = "https"
	}
	return testetcd.Start(t, scheme, func(cfg *embed.Config) {
		if tc != nil {
			cfg.PeerTLSInfo = transport.TLSInfo{
				CertFile:       tc.certFile,
				KeyFile:        tc.keyFile,
				TrustedCAFile:  tc.caFile,
				ClientCertAuth: true,
			}
		}
	}).PeerURL
}

func TestEmbeddedEtcdPeerListenerAnswersProbes(t *testing.T) {
	tests := []struct {
		name string
		tls  bool
	}{
		{"http", false},
		{"https with client certificates required", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var tc *testTLS
			var clientTLS *tls.Config
			if tt.tls {
				tc = newTestTLS(t)
				clientTLS = tc.client
			}
			peerURL := startEtcd(t, tc)
			p := New(Options{Interval: 10 * time.Millisecond, Timeout: hangGuard, TLS: clientTLS})
			p.SetPeers(map[string][]string{"m1": {peerURL}})
			run(t, p)

			eventually(t, "three samples from etcd", func() bool { return stats(p, "m1").RTT.Count >= 3 })
			got := stats(p, "m1")
			if got.Losses != 0 {
				t.Fatalf("losses = %d (last error %q), want 0", got.Losses, got.LastError)
			}
			if want := fmt.Sprintf("%s%s", peerURL, ProbePath); got.URL != want {
				t.Fatalf("URL = %q, want %q", got.URL, want)
			}
		})
	}
}
