package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdvisor/etcdvisor/internal/api"
	"github.com/etcdvisor/etcdvisor/internal/cluster"
)

// systemdStandIn starts a member's etcdvisor again when it exits
// non-zero, as the unit's Restart=on-failure and RestartForceExitStatus=75
// do. It is a stand-in because no systemd runs as PID 1 here; the unit
// itself is checked with systemd-analyze in the systemd package.
type systemdStandIn struct {
	c  *Cluster
	wg sync.WaitGroup

	mu       sync.Mutex
	stopped  bool
	restarts map[string][]int // member name: exit codes it was restarted after
}

func (c *Cluster) superviseLikeSystemd() *systemdStandIn {
	s := &systemdStandIn{c: c, restarts: map[string][]int{}}
	for i := range c.Procs {
		s.wg.Go(func() { s.watch(i) })
	}
	return s
}

func (s *systemdStandIn) watch(i int) {
	for {
		s.mu.Lock()
		p := s.c.Procs[i]
		s.mu.Unlock()
		<-p.done
		code := p.exitCode()
		s.mu.Lock()
		if s.stopped || code == 0 {
			s.mu.Unlock()
			return
		}
		m := s.c.Members[i]
		s.restarts[m.name] = append(s.restarts[m.name], code)
		s.c.Procs[i] = startDaemon(s.c.t, []string{"--config", m.configPath()})
		s.mu.Unlock()
	}
}

// proc is member i's current process.
func (s *systemdStandIn) proc(i int) *process {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.c.Procs[i]
}

// stop ends the restarts and stops every member.
func (s *systemdStandIn) stop() map[string][]int {
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	s.c.Stop()
	s.wg.Wait()
	return s.restarts
}

// rollingOf reads the rolling operation through member i's client.
func (c *Cluster) rollingOf(ctx context.Context, i int) cluster.Rolling {
	c.t.Helper()
	r, err := cluster.ReadRolling(ctx, c.Client(i))
	if err != nil || r == nil {
		c.t.Fatalf("read the rolling operation: %v %v", r, err)
	}
	return *r
}

func TestRollingRestartOfFiveMembersTakesTheLeaderLast(t *testing.T) {
	c := NewCluster(t, WithMembers(5))
	ctx, cancel := context.WithTimeout(context.Background(), 4*waitLimit)
	defer cancel()
	leader := c.Members[c.Leader()].name
	sd := c.superviseLikeSystemd()
	w := startWorkload(t, c.Client(0, 1, 2, 3, 4), workloadOptions{maxOps: 200000})
	waitUntil(t, "the workload writes", func() bool { return w.writesAcked() > 50 })

	out, errOut, code := runCLI(t, "cluster", "rolling-restart", "--wait", "5m", "--config", c.Members[0].configPath())
	if code != 0 || !strings.Contains(out, "Rolling restart done.") {
		t.Fatalf("rolling-restart: exit %d\n%s\n%s", code, out, errOut)
	}
	r := c.rollingOf(ctx, 0)
	if r.Phase != cluster.RollingDone || !slices.Equal(r.Done, r.Order) || len(r.Order) != 5 {
		t.Errorf("rolling operation: %+v, want all five done in order", r)
	}
	if r.Order[4] != leader {
		t.Errorf("order %v: the leader %s is not last", r.Order, leader)
	}
	before := w.writesAcked()
	waitUntil(t, "writes after the rolling restart", func() bool { return w.writesAcked() > before+50 })
	res := w.stop()
	t.Logf("workload during the rolling restart: ok %+v failed %+v, longest write gap %s", res.ok, res.failed, res.longestWriteGap)
	w.check(t)
	for i := range c.Members {
		c.CheckHealthy(i)
	}
	restarts := sd.stop()
	for _, m := range c.Members {
		if got := restarts[m.name]; !slices.Equal(got, []int{75}) {
			t.Errorf("%s was restarted after exits %v, want once after 75", m.name, got)
		}
	}
}

// The etcdvisor holding the membership lock in a rolling restart dies
// (kill -9) while it holds it: its lease frees the lock, systemd starts it
// again, and the operation ends with every member restarted.
//
// A turn holds the lock for about one leadership move, too short to hit
// by watching for it on a busy machine. So the test makes the moment
// certain: it holds the lock itself until the next step's etcdvisor queues
// behind it, freezes that etcdvisor (SIGSTOP), passes the lock on by
// deleting its own key, checks that the frozen etcdvisor's key now holds
// the lock, and kills it.
func TestRollingRestartGoesOnAfterTheLockHolderIsKilled(t *testing.T) {
	c := NewCluster(t, WithMembers(3))
	ctx, cancel := context.WithTimeout(context.Background(), 4*waitLimit)
	defer cancel()
	names := []string{c.Members[0].name, c.Members[1].name, c.Members[2].name}
	slices.Sort(names)
	sd := c.superviseLikeSystemd()

	out, errOut, code := runCLI(t, "cluster", "rolling-restart", "--config", c.Members[0].configPath())
	if code != 0 {
		t.Fatalf("rolling-restart: exit %d\n%s\n%s", code, out, errOut)
	}
	// The next step, a turn or a restarted member recording that it is
	// back, needs the lock and queues behind the test's.
	const testHolder = "the e2e test, holding the lock on purpose"
	mine, err := cluster.AcquireLock(ctx, c.Client(0, 1, 2), testHolder, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer mine.Release()
	waiter := -1
	waitUntil(t, "an etcdvisor waiting for the test's lock", func() bool {
		for i := range c.Members {
			if strings.Contains(sd.proc(i).stderr.String(), testHolder) {
				waiter = i
				return true
			}
		}
		return false
	})
	// From here on only a member the test does not freeze answers it.
	cli := c.Client((waiter + 1) % 3)
	var keys []*mvccpb.KeyValue
	waitUntil(t, "the waiter's key under the lock", func() bool {
		keys = lockKeys(ctx, t, cli)
		return len(keys) >= 2
	})
	if len(keys) != 2 || keys[0].CreateRevision != mine.Revision() {
		t.Fatalf("lock keys %v: want the test's, then the one waiter's", keyNames(keys))
	}
	frozen := sd.proc(waiter)
	if err := frozen.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Delete(ctx, string(keys[0].Key)); err != nil {
		t.Fatalf("pass the lock on: %v", err)
	}
	h, err := cluster.LockHolder(ctx, cli)
	if err != nil || h == nil || h.Revision != keys[1].CreateRevision {
		t.Fatalf("lock holder %+v (%v), want the frozen etcdvisor's key %s", h, err, keys[1].Key)
	}
	t.Logf("%s's etcdvisor holds the lock (key %s), frozen; killing it", c.Members[waiter].name, keys[1].Key)
	if code := frozen.signal(syscall.SIGKILL); code == 0 || code == 75 {
		t.Fatalf("the killed etcdvisor exited %d", code)
	}
	for _, line := range []string{"this member's turn; restarting", "this member restarted and serves"} {
		if strings.Contains(frozen.stderr.String(), line) {
			t.Fatalf("the killed etcdvisor logged %q: it acted under the lock before the kill", line)
		}
	}

	// Only its lease can remove the dead holder's key; then the steps go on.
	var r *cluster.Rolling
	for {
		r, err = cluster.ReadRolling(ctx, cli)
		if err == nil && r != nil && r.Phase == cluster.RollingDone {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the rolling restart did not end after the lock holder was killed: %+v %v", r, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
	if !slices.Equal(r.Done, r.Order) || len(r.Order) != 3 {
		t.Errorf("rolling operation: %+v, want all three done", r)
	}
	for _, kv := range lockKeys(ctx, t, cli) {
		if string(kv.Key) == string(keys[1].Key) {
			t.Errorf("the killed holder's lock key %s is still there", kv.Key)
		}
	}
	c.waitVoters((waiter+1)%3, names...)
	for i := range c.Members {
		c.CheckHealthy(i)
	}
	restarts := sd.stop()
	killedName := c.Members[waiter].name
	if got := restarts[killedName]; !slices.ContainsFunc(got, func(code int) bool { return code != 0 && code != 75 }) {
		t.Errorf("%s was restarted after exits %v, want once after the kill", killedName, got)
	}
}

// lockKeys lists the membership lock's keys, the holder's first.
func lockKeys(ctx context.Context, t *testing.T, cli *clientv3.Client) []*mvccpb.KeyValue {
	t.Helper()
	resp, err := cli.Get(ctx, cluster.LockKey+"/", clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend))
	if err != nil {
		t.Fatalf("read the lock's keys: %v", err)
	}
	return resp.Kvs
}

func keyNames(kvs []*mvccpb.KeyValue) []string {
	var names []string
	for _, kv := range kvs {
		names = append(names, fmt.Sprintf("%s@%d=%q", kv.Key, kv.CreateRevision, kv.Value))
	}
	return names
}

func TestARollingRestartCanBeAbortedAndStatusShowsIt(t *testing.T) {
	c := NewCluster(t, WithMembers(3))
	sd := c.superviseLikeSystemd()
	cfg := c.Members[0].configPath()
	if out, errOut, code := runCLI(t, "cluster", "rolling-restart", "--config", cfg); code != 0 {
		t.Fatalf("rolling-restart: exit %d %s %s", code, out, errOut)
	}
	// A second one is refused while the first runs.
	if _, errOut, code := runCLI(t, "cluster", "rolling-restart", "--config", cfg); code == 0 || !strings.Contains(errOut, "a rolling restart is running already") {
		t.Errorf("a second rolling restart: exit %d %q", code, errOut)
	}
	var out, errOut string
	var code int
	waitUntil(t, "the abort", func() bool {
		// The socket of a member in its turn does not answer for a moment.
		out, errOut, code = runCLI(t, "cluster", "rolling-restart", "--abort", "--config", c.Members[1].configPath())
		return code == 0 || !strings.Contains(errOut, "connect")
	})
	if code != 0 || !strings.Contains(out, "aborted") {
		t.Fatalf("abort: exit %d %q %q", code, out, errOut)
	}
	out, errOut, code = runCLI(t, "cluster", "status", "--config", c.Members[1].configPath())
	if code != 0 || !strings.Contains(out, "ROLLING RESTART") || !strings.Contains(out, "aborted") || !strings.Contains(out, "LOCK") {
		t.Errorf("cluster status after the abort: exit %d\n%s%s", code, out, errOut)
	}
	// Whatever was restarting comes back; nobody else takes a turn.
	for i := range c.Members {
		waitUntil(t, c.Members[i].name+" serves", func() bool {
			out, _, code := runCLI(t, "status", "-w", "json", "--config", c.Members[i].configPath())
			var st api.Status
			return code == 0 && json.Unmarshal([]byte(out), &st) == nil && st.Phase == api.PhaseReady
		})
	}
	restarts := sd.stop()
	total := 0
	for _, r := range restarts {
		total += len(r)
	}
	if total > 1 {
		t.Errorf("members restarted after the abort: %v", restarts)
	}
}
