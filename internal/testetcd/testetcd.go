// Package testetcd runs a real one-member etcd inside a test, on free
// loopback ports, for the unit tests of packages that talk to etcd.
package testetcd

import (
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/etcdvisor/etcdvisor/internal/freeport"
)

// readyLimit is a hang guard, not a speed claim.
const readyLimit = 30 * time.Second

// FreeURL is scheme://127.0.0.1:port with a port free a moment ago.
func FreeURL(t *testing.T, scheme string) url.URL {
	t.Helper()
	return url.URL{Scheme: scheme, Host: freeport.TestAddr(t, "127.0.0.1")}
}

// Member is a started etcd.
type Member struct {
	ClientURL, PeerURL string
	Etcd               *embed.Etcd
	Config             *embed.Config // to start it again after Etcd.Close
}

// Start runs member "m1" with its data in t.TempDir(), no fsync, and
// etcd's warnings in the test log; setup may change the config first (TLS,
// gRPC options), and peerScheme is "http" or "https". It stops with t.
func Start(t *testing.T, peerScheme string, setup func(*embed.Config)) Member {
	t.Helper()
	cfg := newConfig(t, "m1", peerScheme)
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	if setup != nil {
		setup(cfg)
	}
	m := Member{ClientURL: cfg.AdvertiseClientUrls[0].String(), PeerURL: cfg.AdvertisePeerUrls[0].String(), Config: cfg}
	m.Etcd = StartMember(t, cfg)
	WaitReady(t, m.Etcd)
	return m
}

// StartCluster runs an n-member cluster (m1, m2, ...) over plain http, as
// Start runs one member; setup may change member i's config first.
func StartCluster(t *testing.T, n int, setup func(i int, cfg *embed.Config)) []Member {
	t.Helper()
	ms := make([]Member, n)
	var initial []string
	for i := range ms {
		cfg := newConfig(t, fmt.Sprintf("m%d", i+1), "http")
		ms[i] = Member{ClientURL: cfg.AdvertiseClientUrls[0].String(), PeerURL: cfg.AdvertisePeerUrls[0].String(), Config: cfg}
		initial = append(initial, cfg.Name+"="+ms[i].PeerURL)
	}
	for i := range ms {
		ms[i].Config.InitialCluster = strings.Join(initial, ",")
		ms[i].Config.InitialClusterToken = t.Name()
		if setup != nil {
			setup(i, ms[i].Config)
		}
		ms[i].Etcd = StartMember(t, ms[i].Config)
	}
	for _, m := range ms {
		WaitReady(t, m.Etcd)
	}
	return ms
}

func newConfig(t *testing.T, name, peerScheme string) *embed.Config {
	peer, client := FreeURL(t, peerScheme), FreeURL(t, "http")
	cfg := embed.NewConfig()
	cfg.Name = name
	cfg.Dir = t.TempDir()
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
	cfg.UnsafeNoFsync = true
	cfg.Logger = "zap"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)))
	return cfg
}

// StartMember starts etcd with cfg (again, after a Close, with the same
// cfg) and closes it with t; it does not wait for it to be ready.
func StartMember(t *testing.T, cfg *embed.Config) *embed.Etcd {
	t.Helper()
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatalf("start etcd %s: %v", cfg.Name, err)
	}
	t.Cleanup(func() { Close(e) })
	return e
}

// closed holds the members Close has closed: embed's Close panics when
// called twice, and a test that stops a member early is cleaned up too.
var closed sync.Map

// Close stops e once, however often it is called.
func Close(e *embed.Etcd) {
	if _, done := closed.LoadOrStore(e, true); !done {
		e.Close()
	}
}

// Leader splits the members of a started cluster into the one ms[0]
// knows as leader and the others.
func Leader(ms []Member) (leader Member, followers []Member) {
	lead := ms[0].Etcd.Server.Lead()
	for _, m := range ms {
		if uint64(m.Etcd.Server.MemberID()) == lead {
			leader = m
		} else {
			followers = append(followers, m)
		}
	}
	return leader, followers
}

// WaitReady waits until e serves.
func WaitReady(t *testing.T, e *embed.Etcd) {
	t.Helper()
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		t.Fatalf("etcd failed before ready: %v", err)
	case <-time.After(readyLimit):
		t.Fatalf("etcd not ready within %s", readyLimit)
	}
}
