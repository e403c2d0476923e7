// Package testetcd runs a real one-member etcd inside a test, on free
// loopback ports, for the unit tests of packages that talk to etcd.
package testetcd

import (
	"net"
	"net/url"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// readyLimit is a hang guard, not a speed claim.
const readyLimit = 30 * time.Second

// FreeURL is scheme://127.0.0.1:port with a port free a moment ago.
func FreeURL(t *testing.T, scheme string) url.URL {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return url.URL{Scheme: scheme, Host: l.Addr().String()}
}

// Member is a started etcd.
type Member struct {
	ClientURL, PeerURL string
	Etcd               *embed.Etcd
}

// Start runs member "m1" with its data in t.TempDir(), no fsync, and
// etcd's warnings in the test log; setup may change the config first (TLS,
// gRPC options), and peerScheme is "http" or "https". It stops with t.
func Start(t *testing.T, peerScheme string, setup func(*embed.Config)) Member {
	t.Helper()
	peer, client := FreeURL(t, peerScheme), FreeURL(t, "http")
	cfg := embed.NewConfig()
	cfg.Name = "m1"
	cfg.Dir = t.TempDir()
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.UnsafeNoFsync = true
	cfg.Logger = "zap"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)))
	if setup != nil {
		setup(cfg)
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
	case <-time.After(readyLimit):
		t.Fatalf("etcd not ready within %s", readyLimit)
	}
	return Member{ClientURL: client.String(), PeerURL: peer.String(), Etcd: e}
}
