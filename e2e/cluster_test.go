package e2e

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/etcdvisor/etcdvisor/internal/api"
)

// startCluster bootstraps n members from a static initial-cluster, each
// under its own etcdvisor, and waits until every one is ready.
func startCluster(t *testing.T, n int) ([]*member, []*process) {
	t.Helper()
	members := make([]*member, n)
	var initial []string
	for i := range members {
		members[i] = newMember(t, string(rune('a'+i)))
		initial = append(initial, members[i].name+"="+members[i].peerURL)
	}
	procs := make([]*process, n)
	for i, m := range members {
		m.cluster = strings.Join(initial, ",")
		m.extra = "  initial-cluster-token: e2e-" + t.Name() + "\n"
		procs[i] = startDaemon(t, []string{"--config", m.writeConfig(t)})
	}
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Go(func() {
			if err := p.notify.waitFor("READY=1", p.done); err != nil {
				t.Errorf("waiting for READY=1: %v\n%s", err, tail(p.stderr.String(), 20))
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return members, procs
}

func TestStoppingTheLeaderHandsLeadershipToAFollower(t *testing.T) {
	members, procs := startCluster(t, 3)

	leader := -1
	var st api.Status
	for i, m := range members {
		st = statusJSON(t, "--config", m.configPath())
		if len(st.Members) != 3 {
			t.Fatalf("%s sees %d members, want 3", m.name, len(st.Members))
		}
		if st.IsLeader {
			leader = i
		}
	}
	if leader < 0 {
		t.Fatal("no member reports itself leader")
	}
	oldLeaderID := statusJSON(t, "--config", members[leader].configPath()).MemberID

	// SIGTERM the leader: etcd's stop transfers leadership before it
	// closes, so the cluster does not wait out an election timeout.
	if code := procs[leader].stop(); code != 0 {
		t.Fatalf("leader's etcdvisor exited %d", code)
	}
	if !strings.Contains(procs[leader].stderr.String(), "leadership transfer finished") {
		t.Errorf("the stopped leader did not transfer leadership:\n%s", tail(procs[leader].stderr.String(), 20))
	}
	// A follower learns of the new leader from its next heartbeat.
	follower := members[(leader+1)%3]
	for deadline := time.Now().Add(waitLimit); ; time.Sleep(100 * time.Millisecond) {
		st = statusJSON(t, "--config", follower.configPath())
		if st.LeaderID != "" && st.LeaderID != oldLeaderID {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the leader stopped, %s reports leader %q (old leader %s)", follower.name, st.LeaderID, oldLeaderID)
		}
	}
	// The two remaining members are a quorum of three: writes go on.
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if _, err := newClient(t, follower.clientURL).Put(ctx, "after", "leader-stop"); err != nil {
		t.Errorf("put after the leader stopped: %v", err)
	}
	servers, _, code := runCLI(t, "etcd-servers", "--config", follower.configPath())
	if code != 0 || len(strings.Split(strings.TrimSpace(servers), ",")) != 3 {
		t.Errorf("etcd-servers: %q exit %d, want the 3 members' client URLs", servers, code)
	}
	for i, p := range procs {
		if i != leader {
			if code := p.stop(); code != 0 {
				t.Errorf("%s exited %d", members[i].name, code)
			}
		}
	}
}
