package supervisor

import (
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/etcdvisor/etcdvisor/internal/api"
	"github.com/etcdvisor/etcdvisor/internal/cluster"
	"github.com/etcdvisor/etcdvisor/internal/health/peer"
)

func TestAMemberIsUnreachableOnlyWithoutRegistryRecordAndPeerAnswer(t *testing.T) {
	lg := zaptest.NewLogger(t)
	t0 := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	grace := 3 * time.Second
	members := []api.Member{{Name: "a"}, {Name: "b"}, {Name: "c"}, {ID: "ff"}}
	var u unreachable

	recs := map[string]cluster.Record{"b": {}, "c": {}}
	peers := map[string]peer.PeerStats{"b": {LastSuccess: t0}, "c": {LastSuccess: t0}}
	got := u.update(t0, lg, "a", members, recs, peers, grace)
	if got["b"] != 0 || got["c"] != 0 || len(got) != 2 {
		t.Fatalf("all reachable: %v (self and unstarted members are not judged)", got)
	}

	// c's lease expired, but it still answers: not failed.
	delete(recs, "c")
	if got := u.update(t0.Add(time.Second), lg, "a", members, recs, peers, grace); got["c"] != 0 {
		t.Errorf("c answers its peer URL yet is unreachable for %s", got["c"])
	}
	// b stops answering but its etcdvisor lives: not failed.
	if got := u.update(t0.Add(10*time.Second), lg, "a", members, recs, peers, grace); got["b"] != 0 {
		t.Errorf("b has a registry record yet is unreachable for %s", got["b"])
	}
	// c has neither: unreachable since its last answer, and growing.
	if got := u.update(t0.Add(10*time.Second), lg, "a", members, recs, peers, grace); got["c"] != 10*time.Second {
		t.Errorf("c unreachable for %s, want 10s (since its last answer)", got["c"])
	}
	if got := u.update(t0.Add(15*time.Second), lg, "a", members, recs, peers, grace); got["c"] != 15*time.Second {
		t.Errorf("c unreachable for %s, want 15s", got["c"])
	}
	// It answers again.
	peers["c"] = peer.PeerStats{LastSuccess: t0.Add(16 * time.Second)}
	if got := u.update(t0.Add(16*time.Second), lg, "a", members, recs, peers, grace); got["c"] != 0 {
		t.Errorf("c answers again but is unreachable for %s", got["c"])
	}
	// Removed from the cluster: no longer tracked.
	if got := u.update(t0.Add(20*time.Second), lg, "a", members[:2], recs, peers, grace); len(got) != 1 {
		t.Errorf("after c left the cluster: %v", got)
	}
}
