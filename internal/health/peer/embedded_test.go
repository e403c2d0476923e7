package peer

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
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
	peerURL := freeURL(t, scheme)
	clientURL := freeURL(t, "http")
	cfg := embed.NewConfig()
	cfg.Name = "m1"
	cfg.Dir = t.TempDir()
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peerURL}, []url.URL{peerURL}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{clientURL}, []url.URL{clientURL}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.UnsafeNoFsync = true
	cfg.Logger = "zap"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)))
	if tc != nil {
		cfg.PeerTLSInfo = transport.TLSInfo{
			CertFile:       tc.certFile,
			KeyFile:        tc.keyFile,
			TrustedCAFile:  tc.caFile,
			ClientCertAuth: true,
		}
	}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatalf("start etcd: %v", err)
	}
	t.Cleanup(e.Close)
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		t.Fatalf("etcd failed before ready: %v", err)
	case <-time.After(hangGuard):
		t.Fatalf("etcd not ready within %v", hangGuard)
	}
	return peerURL.String()
}

func freeURL(t *testing.T, scheme string) url.URL {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return url.URL{Scheme: scheme, Host: ln.Addr().String()}
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
