package supervisor

import (
	"context"
	"strconv"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap/zaptest"

	"github.com/etcdvisor/etcdvisor/internal/api"
	"github.com/etcdvisor/etcdvisor/internal/testetcd"
)

// A target that cannot win (here it is down; in the bench it missed an
// entry the other follower held) leaves the cluster without a leader
// once the old one has stepped aside. The runner-up is then told to
// campaign, and wins; transfer names it.
func TestHandoverFallsBackOnTheRunnerUp(t *testing.T) {
	ms := testetcd.StartCluster(t, 3, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	leader, others := testetcd.Leader(ms)
	lead := uint64(leader.Etcd.Server.MemberID())
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{leader.ClientURL}})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	asTarget := func(m testetcd.Member) target {
		id := uint64(m.Etcd.Server.MemberID())
		return target{api.Member{Name: m.Config.Name, ID: strconv.FormatUint(id, 16), PeerURLs: []string{m.PeerURL}, ClientURLs: []string{m.ClientURL}}, id}
	}
	ts := []target{asTarget(others[0]), asTarget(others[1])}
	testetcd.Close(others[0].Etcd) // the target is gone

	m := &leaderMover{
		lg:   zaptest.NewLogger(t),
		self: leader.Etcd.Server,
		moveLeader: func(ctx context.Context, to uint64) error {
			_, err := cli.MoveLeader(ctx, to)
			return err
		},
	}
	got, err := m.transfer(ctx, nil, lead, ts)
	if err != nil {
		t.Fatalf("transfer: %v", err)
	}
	if got.Name != ts[1].Name {
		t.Fatalf("transfer named %q as the new leader, want the runner-up %q", got.Name, ts[1].Name)
	}
	if l := others[1].Etcd.Server.Lead(); l != ts[1].id {
		t.Fatalf("the runner-up sees leader %x, want itself (%x)", l, ts[1].id)
	}
}
