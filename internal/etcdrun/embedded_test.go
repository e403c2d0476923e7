package etcdrun

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/etcdvisor/etcdvisor/internal/config"
)

// testConfig is a single member on free loopback ports in a temp dir.
func testConfig(t *testing.T) *config.Config {
	t.Helper()
	cfg := config.DefaultWithDataDir(t.TempDir())
	client, peer := freePort(t), freePort(t)
	cfg.Etcd.ListenClientURLs = config.URLList{client}
	cfg.Etcd.AdvertiseClientURLs = config.URLList{client}
	cfg.Etcd.ListenPeerURLs = config.URLList{peer}
	cfg.Etcd.InitialAdvertisePeerURLs = config.URLList{peer}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return fmt.Sprintf("http://%s", ln.Addr())
}

func startMember(t *testing.T, cfg *config.Config) *Embedded {
	t.Helper()
	m := NewEmbedded(cfg, zaptest.NewLogger(t).Named("etcd"))
	if err := m.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { m.Stop(context.Background()) })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	select {
	case <-m.Ready():
	case err := <-m.Err():
		t.Fatalf("member failed before ready: %v", err)
	case <-ctx.Done():
		t.Fatal("member not ready within a minute")
	}
	return m
}

func TestEmbeddedMemberServesAndKeepsDataAcrossRestart(t *testing.T) {
	cfg := testConfig(t)
	m := startMember(t, cfg)
	ctx := context.Background()
	if _, err := m.Client().Put(ctx, "/k", "v1"); err != nil {
		t.Fatalf("put: %v", err)
	}
	if err := m.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := m.Stop(ctx); err != ErrStopped {
		t.Fatalf("second Stop: got %v, want ErrStopped", err)
	}
	select {
	case err := <-m.Err():
		t.Fatalf("a requested stop was reported as a failure: %v", err)
	default:
	}

	m2 := startMember(t, cfg)
	resp, err := m2.Client().Get(ctx, "/k")
	if err != nil {
		t.Fatalf("get after restart: %v", err)
	}
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v1" {
		t.Fatalf("got %v after restart, want /k=v1", resp.Kvs)
	}
}

func TestEmbeddedStartNamesTheURLWhosePortIsTaken(t *testing.T) {
	cfg := testConfig(t)
	u := strings.TrimPrefix(cfg.Etcd.ListenPeerURLs[0], "http://")
	ln, err := net.Listen("tcp", u)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	m := NewEmbedded(cfg, zaptest.NewLogger(t))
	err = m.Start(context.Background())
	if err == nil {
		m.Stop(context.Background())
		t.Fatal("Start succeeded on a taken port")
	}
	want := fmt.Sprintf("etcd.listen-peer-urls %q: address already in use", cfg.Etcd.ListenPeerURLs[0])
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("got %q, want it to contain %q", err, want)
	}
}
