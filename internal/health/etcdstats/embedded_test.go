package etcdstats

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"

	"github.com/etcdvisor/etcdvisor/internal/config"
	"github.com/etcdvisor/etcdvisor/internal/etcdrun"
	"github.com/etcdvisor/etcdvisor/internal/freeport"
)

// The embedded etcd registers its metrics in the default registry, which
// is where production reads them too.
func TestSampleReadsARealEmbeddedMember(t *testing.T) {
	cfg := config.DefaultWithDataDir(t.TempDir())
	client, peer := freeURL(t), freeURL(t)
	cfg.Etcd.ListenClientURLs = config.URLList{client}
	cfg.Etcd.AdvertiseClientURLs = config.URLList{client}
	cfg.Etcd.ListenPeerURLs = config.URLList{peer}
	cfg.Etcd.InitialAdvertisePeerURLs = config.URLList{peer}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	m := etcdrun.NewEmbedded(cfg, zaptest.NewLogger(t).Named("etcd"))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := m.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { m.Stop(context.Background()) })
	select {
	case <-m.Ready():
	case err := <-m.Err():
		t.Fatalf("member failed before ready: %v", err)
	case <-ctx.Done():
		t.Fatal("member not ready within a minute")
	}

	s := New(prometheus.DefaultGatherer, time.Minute)
	if _, err := s.Sample(time.Now()); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if _, err := m.Client().Put(ctx, fmt.Sprintf("/k%d", i), "v"); err != nil {
			t.Fatalf("put: %v", err)
		}
	}
	r, err := s.Sample(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if r.WALFsyncCount == 0 || r.WALFsyncP99 <= 0 {
		t.Errorf("%d WAL fsyncs with p99 %s in the window of 20 puts, want some", r.WALFsyncCount, r.WALFsyncP99)
	}
	if !r.HasLeader || !r.IsLeader {
		t.Errorf("has leader %t, is leader %t; a single member leads itself", r.HasLeader, r.IsLeader)
	}
	if len(r.Missing) != 0 {
		t.Errorf("missing %v from etcd's metrics", r.Missing)
	}
}

func freeURL(t *testing.T) string {
	t.Helper()
	return "http://" + freeport.TestAddr(t, "127.0.0.1")
}
