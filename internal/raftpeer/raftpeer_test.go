package raftpeer

import (
	"context"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/etcdvisor/etcdvisor/internal/testetcd"
)

// waitLeader waits until every running member names want as leader.
func waitLeader(ctx context.Context, t *testing.T, want uint64, ms ...testetcd.Member) {
	t.Helper()
	for {
		all := true
		for _, m := range ms {
			all = all && m.Etcd.Server.Lead() == want
		}
		if all {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("leader %x not seen by every member", want)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// A healthy leader keeps its leadership: no follower campaigns while it
// hears heartbeats. The message sent in the leader's name makes the target
// campaign at once, and the other members vote for it although they heard
// from a leader a moment ago, as raft's own transfers make them.
func TestTimeoutNowMakesTheTargetLead(t *testing.T) {
	ms := testetcd.StartCluster(t, 3, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	leader, followers := testetcd.Leader(ms)
	lead, target := uint64(leader.Etcd.Server.MemberID()), followers[0]
	to := uint64(target.Etcd.Server.MemberID())
	h := Handover{
		Cluster: uint64(leader.Etcd.Server.Cluster().ID()),
		From:    lead,
		To:      to,
		Term:    leader.Etcd.Server.Term(),
	}
	if err := SendTimeoutNow(ctx, nil, target.PeerURL, h); err != nil {
		t.Fatalf("send MsgTimeoutNow: %v", err)
	}
	waitLeader(ctx, t, to, ms...)
	if _, err := target.Etcd.Server.Put(ctx, &pb.PutRequest{Key: []byte("k"), Value: []byte("v")}); err != nil {
		t.Fatalf("put through the new leader: %v", err)
	}
	for _, m := range ms {
		if got := m.Etcd.Server.Term(); got != h.Term+1 {
			t.Errorf("%s: term %d after the handover, want %d: one election", m.Config.Name, got, h.Term+1)
		}
	}
}

// A message with the wrong cluster ID or for another member is refused
// by the peer, with etcd's reason, and starts no election.
func TestTimeoutNowRefusedNamesWhy(t *testing.T) {
	ms := testetcd.StartCluster(t, 3, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	leader, followers := testetcd.Leader(ms)
	lead, target := uint64(leader.Etcd.Server.MemberID()), followers[0]
	term := target.Etcd.Server.Term()
	good := Handover{Cluster: uint64(target.Etcd.Server.Cluster().ID()), From: lead, To: uint64(target.Etcd.Server.MemberID()), Term: term}
	for _, c := range []struct {
		name string
		h    Handover
		want string
	}{
		{"another cluster", Handover{Cluster: good.Cluster + 1, From: good.From, To: good.To, Term: term}, "cluster ID mismatch"},
		{"another member", Handover{Cluster: good.Cluster, From: good.From, To: good.To + 1, Term: term}, "error processing raft message"},
	} {
		err := SendTimeoutNow(ctx, nil, target.PeerURL, c.h)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error saying %q", c.name, err, c.want)
		}
	}
	if err := SendTimeoutNow(ctx, nil, "http://127.0.0.1:1", good); err == nil {
		t.Error("a peer URL nobody listens on: no error")
	}
	if got := target.Etcd.Server.Term(); got != term {
		t.Fatalf("term went from %d to %d: a refused message started an election", term, got)
	}
}
