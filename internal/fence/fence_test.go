package fence

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/etcdvisor/etcdvisor/internal/testetcd"
)

// startEtcd runs a one-member etcd with the gate installed, as etcdrun does.
func startEtcd(t *testing.T, g *Gate) *clientv3.Client {
	t.Helper()
	m := testetcd.Start(t, "http", func(cfg *embed.Config) {
		cfg.GRPCAdditionalServerOptions = g.ServerOptions()
	})
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{m.ClientURL}, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func TestClosedGateRefusesClientRequestsButNotMaintenance(t *testing.T) {
	g := New("m1")
	cli := startEtcd(t, g)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, "k", "v"); err != nil {
		t.Fatalf("put through an open gate: %v", err)
	}

	g.Close("fsync probe p99 200ms")
	if closed, why := g.Closed(); !closed || why != "fsync probe p99 200ms" {
		t.Fatalf("Closed() = %v, %q", closed, why)
	}
	_, err := cli.Put(ctx, "k", "v2")
	if status.Code(err) != codes.Unavailable || !strings.Contains(fmt.Sprint(err), "member m1 is not taking client requests while it is critical (fsync probe p99 200ms)") {
		t.Fatalf("put through a closed gate: %v, want Unavailable naming the member and reason", err)
	}
	// Operators and peers still see the member.
	if _, err := cli.Status(ctx, cli.Endpoints()[0]); err != nil {
		t.Errorf("status through a closed gate: %v", err)
	}
	if _, err := cli.MemberList(ctx); err != nil {
		t.Errorf("member list through a closed gate: %v", err)
	}

	g.Open()
	resp, err := cli.Get(ctx, "k")
	if err != nil {
		t.Fatalf("get after reopening: %v", err)
	}
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
		t.Errorf("got %v: the refused put must not have been applied", resp.Kvs)
	}
}

func TestOnlyClientServicesAreFenced(t *testing.T) {
	g := New("m1")
	g.Close("stalled")
	for method, fenced := range map[string]bool{
		"/etcdserverpb.KV/Put":                 true,
		"/etcdserverpb.KV/Range":               true,
		"/etcdserverpb.Watch/Watch":            true,
		"/etcdserverpb.Lease/LeaseGrant":       true,
		"/v3lockpb.Lock/Lock":                  true,
		"/v3electionpb.Election/Campaign":      true,
		"/etcdserverpb.Maintenance/Status":     false,
		"/etcdserverpb.Maintenance/MoveLeader": false,
		"/etcdserverpb.Cluster/MemberList":     false,
		"/grpc.health.v1.Health/Check":         false,
	} {
		if got := g.check(method) != nil; got != fenced {
			t.Errorf("%s: fenced %v, want %v", method, got, fenced)
		}
	}
	g.Open()
	if err := g.check("/etcdserverpb.KV/Put"); err != nil {
		t.Errorf("open gate refused a put: %v", err)
	}
}
