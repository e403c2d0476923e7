package cluster

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/etcdvisor/etcdvisor/internal/testetcd"
)

// startEtcd runs a one-member etcd on loopback and returns its client URL.
func startEtcd(t *testing.T) string {
	t.Helper()
	return testetcd.Start(t, "http", nil).ClientURL
}

func newClient(t *testing.T, url string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{url}, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// waitFor polls cond every 50 ms for up to limit; the limit is a hang
// guard, not a speed claim.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, limit)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestRegistryPublishesUpdatesAndWithdraws(t *testing.T) {
	url := startEtcd(t)
	reader := newClient(t, url)
	reg := NewRegistry(newClient(t, url), 5*time.Second, zaptest.NewLogger(t))
	reg.Set(Record{Name: "m1", MemberID: "abc", Health: "ok"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- reg.Run(ctx) }()

	list := func() map[string]Record {
		m, err := List(context.Background(), reader)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	waitFor(t, 10*time.Second, "record published", func() bool { return list()["m1"].Health == "ok" })
	resp, err := reader.Get(context.Background(), NodesPrefix+"m1")
	if err != nil || len(resp.Kvs) != 1 || resp.Kvs[0].Lease == 0 {
		t.Fatalf("record %v (err %v): want one key bound to a lease", resp, err)
	}

	reg.Set(Record{Name: "m1", MemberID: "abc", Health: "critical", Reasons: []string{"fsync probe p99 200ms"}})
	waitFor(t, 10*time.Second, "changed health published", func() bool {
		r := list()["m1"]
		return r.Health == "critical" && len(r.Reasons) == 1
	})

	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, ok := list()["m1"]; ok {
		t.Fatal("the record outlived a clean stop: the lease must be revoked")
	}
}

func TestRegistryRecordOfADeadEtcdvisorExpires(t *testing.T) {
	url := startEtcd(t)
	reader := newClient(t, url)
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{url}, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	reg := NewRegistry(cli, 5*time.Second, zap.NewNop())
	reg.Set(Record{Name: "m1", Health: "ok"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- reg.Run(ctx) }()
	waitFor(t, 10*time.Second, "record published", func() bool {
		m, _ := List(context.Background(), reader)
		_, ok := m["m1"]
		return ok
	})
	// Dies: its connection is gone, so it cannot revoke or renew.
	cli.Close()
	cancel()
	<-done
	waitFor(t, 20*time.Second, "record of the dead etcdvisor expired with its lease", func() bool {
		m, _ := List(context.Background(), reader)
		_, ok := m["m1"]
		return !ok
	})
}
