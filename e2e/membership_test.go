package e2e

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdvisor/etcdvisor/internal/api"
	"github.com/etcdvisor/etcdvisor/internal/cluster"
)

// memberList is member i's etcdvisor's view of the members.
func (c *Cluster) memberList(i int) api.MemberList {
	c.t.Helper()
	out, errOut, code := runCLI(c.t, "member", "list", "-w", "json", "--config", c.Members[i].configPath())
	if code != 0 {
		c.t.Fatalf("member list from %s: exit %d %s", c.Members[i].name, code, errOut)
	}
	var ml api.MemberList
	if err := json.Unmarshal([]byte(out), &ml); err != nil {
		c.t.Fatal(err)
	}
	return ml
}

// waitVoters waits until member i sees exactly the named members (in
// name order), all voters, all healthy.
func (c *Cluster) waitVoters(i int, names ...string) {
	c.t.Helper()
	want := strings.Join(names, ",")
	var got []string
	for deadline := time.Now().Add(2 * waitLimit); ; time.Sleep(200 * time.Millisecond) {
		got = got[:0]
		for _, m := range c.memberList(i).Members {
			s := m.Name
			if m.IsLearner {
				s += "(learner)"
			}
			if !m.Healthy {
				s += "(unhealthy)"
			}
			got = append(got, s)
		}
		slices.Sort(got)
		if strings.Join(got, ",") == want {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("members seen from %s: %v, want %s", c.Members[i].name, got, want)
		}
	}
}

// killAtStep kills p (-9) the moment the join journal watched by wch
// reaches step, and returns the record it saw.
func killAtStep(t *testing.T, wch clientv3.WatchChan, p *process, step string) cluster.JoinRecord {
	t.Helper()
	var seen cluster.JoinRecord
	for resp := range wch {
		for _, ev := range resp.Events {
			json.Unmarshal(ev.Kv.Value, &seen)
		}
		if seen.Step == step {
			p.signal(syscall.SIGKILL)
			return seen
		}
	}
	t.Fatalf("never saw step %s (last %+v)", step, seen)
	return seen
}

// joinKilledAsLearner starts d (on the first spare host) joining the
// cluster, and kills its etcdvisor (-9) right after it journals that its
// learner was added.
func (c *Cluster) joinKilledAsLearner(ctx context.Context) (*member, cluster.JoinRecord) {
	c.t.Helper()
	wch := c.Client(0, 1, 2).Watch(ctx, cluster.JoinsPrefix+"d")
	d := c.Joiner(3, "", 0, 1, 2)
	pd := startDaemon(c.t, []string{"--config", d.configPath()})
	return d, killAtStep(c.t, wch, pd, cluster.StepLearner)
}

// joinRecord reads the journalled join of name from the cluster, through
// the first three members: on a busy machine one of them can fence itself
// (seen in CI), and clientv3 then sends the read to another. A read that
// still fails is asked again for a while.
func (c *Cluster) joinRecord(ctx context.Context, name string) cluster.JoinRecord {
	c.t.Helper()
	cli := c.Client(0, 1, 2)
	var resp *clientv3.GetResponse
	var err error
	for deadline := time.Now().Add(healthWait); ; time.Sleep(200 * time.Millisecond) {
		resp, err = cli.Get(ctx, cluster.JoinsPrefix+name)
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
	}
	if err != nil || len(resp.Kvs) != 1 {
		c.t.Fatalf("join record of %s: %v %v", name, resp, err)
	}
	var rec cluster.JoinRecord
	if err := json.Unmarshal(resp.Kvs[0].Value, &rec); err != nil {
		c.t.Fatal(err)
	}
	return rec
}

func TestAFailedMemberIsReplacedByANewHost(t *testing.T) {
	c := NewCluster(t, WithMembers(3), WithSpareHosts(1), WithTLS())
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitLimit)
	defer cancel()
	c.makeLeader(ctx, memberClients(c), 0)
	w := startWorkload(t, c.Client(0, 1), workloadOptions{maxOps: 200000})
	waitUntil(t, "the workload writes", func() bool { return w.writesAcked() > 50 })

	// c dies with its disk; d, on another address, replaces it.
	c.Procs[2].signal(syscall.SIGKILL)
	if err := os.RemoveAll(c.Members[2].dataDir()); err != nil {
		t.Fatal(err)
	}
	beforeJoin, err := c.Client(0, 1, 2).Get(ctx, "any")
	if err != nil {
		t.Fatal(err)
	}
	d := c.Joiner(3, "c", 0, 1)
	pd := c.Join(d)
	pd.waitReady()
	c.Members, c.Procs = slices.Delete(c.Members, 2, 3), slices.Delete(c.Procs, 2, 3)
	c.waitVoters(0, "a", "b", "d")
	rec := c.joinRecord(ctx, "d")
	if rec.Step != cluster.StepPromoted || rec.RemovedID == "" || rec.Replaces != "c" {
		t.Errorf("join record: %+v, want step promoted, c removed", rec)
	}
	// Before the first change, d took a snapshot of the cluster: its first
	// snapshot, verified, uncompressed (nothing to encrypt it to), holding
	// at least what was written before d started.
	snaps := snapshotList(t, d.configPath())
	if len(snaps) != 1 || !strings.HasPrefix(snaps[0].File, "etcd-d-prejoin-") {
		t.Fatalf("d's snapshots: %v, want one etcd-d-prejoin-*", listedNames(snaps))
	}
	if s := snaps[0]; s.Compression != "none" || s.Revision < beforeJoin.Header.Revision {
		t.Errorf("pre-join snapshot %s: compression %q, revision %d; want none, at least %d", s.File, s.Compression, s.Revision, beforeJoin.Header.Revision)
	}
	mustCLI(t, "snapshot", "verify", snaps[0].Path)
	before := w.writesAcked()
	waitUntil(t, "writes after the join", func() bool { return w.writesAcked() > before+50 })
	res := w.stop()
	if res.failed.put+res.failed.txn > 0 {
		t.Errorf("%d writes failed during the replace (first: %v)", res.failed.put+res.failed.txn, res.firstErr)
	}
	w.check(t)
	// The new member serves the data, and its etcdvisor sees all three.
	c.CheckHealthy(2)
	if _, err := c.Client(2).Put(ctx, "after-replace", "d"); err != nil {
		t.Errorf("put through the new member: %v", err)
	}
	// Every member's endpoints file follows the member list within a tick
	// of the loop.
	for _, m := range c.Members {
		waitUntil(t, m.name+"'s endpoints file lists d", func() bool {
			got, _ := os.ReadFile(m.endpoints)
			return strings.Contains(string(got), d.clientURL) && !strings.Contains(string(got), "127.0.0.3:")
		})
	}
	c.Stop()
}

func TestScalingThreeToFiveAddsOneMemberAtATime(t *testing.T) {
	c := NewCluster(t, WithMembers(3), WithSpareHosts(2))
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitLimit)
	defer cancel()
	w := startWorkload(t, c.Client(0, 1, 2), workloadOptions{maxOps: 200000})
	waitUntil(t, "the workload writes", func() bool { return w.writesAcked() > 50 })

	// Both new hosts start at once: the membership lock lets one join
	// while the other waits.
	d, e := c.Joiner(3, "", 0, 1, 2), c.Joiner(4, "", 0, 1, 2)
	pd, pe := c.Join(d), c.Join(e)
	pd.waitReady()
	pe.waitReady()
	c.waitVoters(0, "a", "b", "c", "d", "e")
	rd, re := c.joinRecord(ctx, "d"), c.joinRecord(ctx, "e")
	first, second := rd, re
	if re.StartedAt.Before(rd.StartedAt) {
		first, second = re, rd
	}
	if first.Step != cluster.StepPromoted || second.Step != cluster.StepPromoted {
		t.Fatalf("joins did not finish: %+v %+v", first, second)
	}
	if !second.StartedAt.After(first.UpdatedAt) || second.LockRev <= first.LockRev {
		t.Errorf("the joins overlapped: %s held the lock (revision %d) until %s, %s began at %s (revision %d)",
			first.Name, first.LockRev, first.UpdatedAt, second.Name, second.StartedAt, second.LockRev)
	}
	var waited *process = pe
	if second.Name == "d" {
		waited = pd
	}
	if !strings.Contains(waited.stderr.String(), "waiting for the membership lock") {
		t.Errorf("%s did not log that it waited for the lock", second.Name)
	}
	res := w.stop()
	if res.failed.put+res.failed.txn > 0 {
		t.Errorf("%d writes failed while scaling (first: %v)", res.failed.put+res.failed.txn, res.firstErr)
	}
	w.check(t)
	c.CheckHealthy(4)
	c.Stop()
}

// joinRefused starts m and expects its etcdvisor to exit non-zero with an
// error containing want.
func joinRefused(t *testing.T, m *member, want string) {
	t.Helper()
	p := startDaemon(t, []string{"--config", m.configPath()})
	if code := p.exitCode(); code == 0 {
		t.Fatalf("join of %s: exit 0, want a refusal containing %q", m.name, want)
	}
	if got := p.stderr.String(); !strings.Contains(got, want) {
		t.Errorf("join of %s refused without saying %q:\n%s", m.name, want, tail(got, 5))
	}
}

func TestUnsafeJoinsAreRefusedAndChangeNothing(t *testing.T) {
	c := NewCluster(t, WithMembers(3), WithSpareHosts(1))

	// A name already in the cluster.
	dup := c.Joiner(3, "", 0)
	dup.name = "b"
	dup.writeConfig(t)
	joinRefused(t, dup, `a member named "b" is already in the cluster`)

	// A replace naming no member is not turned into an add.
	typo := c.Joiner(3, "cc", 0)
	joinRefused(t, typo, `join.replaces "cc": no member of that name in the cluster`)

	// Replacing a member that is healthy needs force.
	healthy := c.Joiner(3, "c", 0)
	joinRefused(t, healthy, "refusing to remove c: it is healthy")

	// Replacing b while c is down would leave a and c: one healthy of two.
	// No force overrides that.
	c.Procs[2].signal(syscall.SIGKILL)
	forced := c.Joiner(3, "b", 0)
	forced.top += "  force: true\n"
	forced.writeConfig(t)
	joinRefused(t, forced, "fewer than the quorum of 2")

	// With its etcdvisor's lease expired and its peer URL silent, c is
	// reported unreachable, in the member list and as a metric.
	waitUntil(t, "c reported unreachable", func() bool {
		for _, m := range c.memberList(0).Members {
			if m.Name == "c" && m.UnreachableSeconds > 0 {
				return true
			}
		}
		return false
	})
	_, body := httpGet(t, "http://"+c.Members[0].metricsAddr+"/metrics")
	if !strings.Contains(body, `etcdvisor_member_unreachable_seconds{member="c"}`) || strings.Contains(body, `etcdvisor_member_unreachable_seconds{member="c"} 0`+"\n") {
		t.Errorf("/metrics does not report c unreachable:\n%s", grepLines(body, "unreachable"))
	}
	if !strings.Contains(c.Procs[0].stderr.String(), "member unreachable") {
		t.Error("no log line for the unreachable member")
	}

	c.Restart(2)
	c.waitVoters(0, "a", "b", "c")
	waitUntil(t, "c reachable again", func() bool {
		for _, m := range c.memberList(0).Members {
			if m.Name == "c" && m.UnreachableSeconds == 0 {
				return true
			}
		}
		return false
	})
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if h, err := cluster.LockHolder(ctx, c.Client(0, 1, 2)); err != nil || h != nil {
		t.Errorf("the membership lock is still held after the refusals: %+v %v", h, err)
	}
	c.Stop()
}

// A joining etcdvisor killed (-9) right after a step leaves the cluster
// serving, and started again, it completes the join.
func TestAJoinKilledAfterAStepCompletesWhenRetried(t *testing.T) {
	for _, step := range []string{cluster.StepRemoved, cluster.StepLearner} {
		t.Run(step, func(t *testing.T) {
			c := NewCluster(t, WithMembers(3), WithSpareHosts(1))
			ctx, cancel := context.WithTimeout(context.Background(), 2*waitLimit)
			defer cancel()
			c.makeLeader(ctx, memberClients(c), 0)
			c.Procs[2].signal(syscall.SIGKILL)

			watcher := c.Client(0, 1, 2)
			wch := watcher.Watch(ctx, cluster.JoinsPrefix+"d")
			d := c.Joiner(3, "c", 0, 1)
			pd := startDaemon(t, []string{"--config", d.configPath()})
			killAtStep(t, wch, pd, step)
			// The two remaining voters serve writes meanwhile.
			wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
			_, err := c.Client(0, 1).Put(wctx, "while-broken", step)
			wcancel()
			if err != nil {
				t.Fatalf("the cluster does not serve after the joiner died after %s: %v", step, err)
			}
			pd = c.Join(d)
			pd.waitReady()
			c.Members, c.Procs = slices.Delete(c.Members, 2, 3), slices.Delete(c.Procs, 2, 3)
			c.waitVoters(0, "a", "b", "d")
			if rec := c.joinRecord(ctx, "d"); rec.Step != cluster.StepPromoted {
				t.Errorf("after the retry the join record says %+v", rec)
			}
			c.Stop()
		})
	}
}

// A joiner killed (-9) while its learner runs and before its promotion:
// the cluster keeps serving with the learner in it (a learner does not
// count towards the quorum), and started again the joiner resumes from its
// data and promotes it. The kill lands once the learner's WAL exists,
// while the database (64 MiB here) is still on its way to it.
func TestAJoinKilledBeforePromotionCompletesWhenRetried(t *testing.T) {
	c := NewCluster(t, WithMembers(3), WithSpareHosts(1))
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitLimit)
	defer cancel()
	cli := c.Client(0, 1)
	val := make([]byte, 512<<10)
	for i := range 128 {
		rand.Read(val)
		// Half-MiB puts on a busy shared disk can time out; a retried put
		// of a fill key changes nothing the test counts.
		putEventually(ctx, t, cli, fmt.Sprintf("/fill/%03d", i), string(val))
	}
	c.Procs[2].signal(syscall.SIGKILL)

	d := c.Joiner(3, "c", 0, 1)
	pd := startDaemon(t, []string{"--config", d.configPath()})
	wal := filepath.Join(d.dataDir(), "member", "wal")
	waitUntilEvery(t, 5*time.Millisecond, "the learner's WAL", func() bool {
		entries, _ := os.ReadDir(wal)
		return len(entries) > 0
	})
	pd.signal(syscall.SIGKILL)

	var learner bool
	for _, m := range c.memberList(0).Members {
		learner = learner || m.IsLearner && m.PeerURLs[0] == d.peerURL
	}
	if !learner {
		t.Fatalf("after the kill d is not a learner (members %+v): the kill did not land before the promotion", c.memberList(0).Members)
	}
	if rec := c.joinRecord(ctx, "d"); rec.Step != cluster.StepLearner {
		t.Fatalf("join record after the kill: %+v, want step %s", rec, cluster.StepLearner)
	}
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	_, err := cli.Put(wctx, "while-a-learner-is-orphaned", "ok")
	wcancel()
	if err != nil {
		t.Fatalf("the cluster does not serve with the orphaned learner: %v", err)
	}

	pd = c.Join(d)
	pd.waitReady()
	if !strings.Contains(pd.stderr.String(), "resuming a join") {
		t.Errorf("the restarted joiner did not resume from its data:\n%s", tail(pd.stderr.String(), 20))
	}
	c.Members, c.Procs = slices.Delete(c.Members, 2, 3), slices.Delete(c.Procs, 2, 3)
	c.waitVoters(0, "a", "b", "d")
	if rec := c.joinRecord(ctx, "d"); rec.Step != cluster.StepPromoted {
		t.Errorf("after the retry the join record says %+v", rec)
	}
	resp, err := c.Client(2).Get(ctx, "/fill/", clientv3.WithPrefix(), clientv3.WithCountOnly(), clientv3.WithSerializable())
	if err != nil || resp.Count != 128 {
		t.Errorf("d holds %v of the 128 values (%v)", resp, err)
	}
	// A member that joined restarts from its own data, as systemd or a
	// rolling restart would start it, with the same config.
	if code := c.Procs[2].stop(); code != 0 {
		t.Fatalf("stop d: exit %d", code)
	}
	c.Restart(2)
	c.waitVoters(0, "a", "b", "d")
	c.Stop()
}

// A joiner that waits for the membership lock answers on its control
// socket (status says who holds the lock; routes that need the member say
// it has not started), and SIGTERM ends the wait cleanly, changing nothing.
func TestAJoinWaitingForTheLockAnswersAndStopsCleanly(t *testing.T) {
	c := NewCluster(t, WithMembers(3), WithSpareHosts(1))
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	lock, err := cluster.AcquireLock(ctx, c.Client(0, 1, 2), "the e2e test, on purpose", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Release()

	d := c.Joiner(3, "", 0, 1, 2)
	pd := startDaemon(t, []string{"--config", d.configPath()})
	var out string
	waitUntil(t, "status of the waiting joiner", func() bool {
		out, _, _ = runCLI(t, "status", "--config", d.configPath())
		return strings.Contains(out, "waiting for the membership lock, held by the e2e test, on purpose")
	})
	t.Logf("status while waiting:\n%s", out)
	_, errOut, code := runCLI(t, "member", "list", "--config", d.configPath())
	if code == 0 || !strings.Contains(errOut, "has not started yet") {
		t.Errorf("member list on the waiting joiner: exit %d %q", code, errOut)
	}
	if code := pd.stop(); code != 0 {
		t.Errorf("SIGTERM while waiting for the lock: exit %d\n%s", code, tail(pd.stderr.String(), 10))
	}
	if n := len(c.memberList(0).Members); n != 3 {
		t.Errorf("%d members after the joiner stopped while waiting, want 3", n)
	}
	c.Stop()
}

func TestMemberRemoveFollowsTheSafetyRules(t *testing.T) {
	c := NewCluster(t, WithMembers(3))
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitLimit)
	defer cancel()
	cfgA := c.Members[0].configPath()

	_, errOut, code := runCLI(t, "member", "remove", "c", "--config", cfgA)
	if code == 0 || !strings.Contains(errOut, "refusing to remove c: it is healthy") {
		t.Errorf("remove a healthy member without --force: exit %d %q", code, errOut)
	}

	// With c down, removing a would leave b and c: one healthy of two.
	// No force overrides that.
	c.Procs[2].signal(syscall.SIGKILL)
	_, errOut, code = runCLI(t, "member", "remove", "a", "--force", "--config", cfgA)
	if code == 0 || !strings.Contains(errOut, "fewer than the quorum of 2") {
		t.Errorf("remove a healthy voter while another is down: exit %d %q", code, errOut)
	}
	c.Restart(2)

	// The leader is removed only after it hands leadership over.
	clis := memberClients(c)
	c.makeLeader(ctx, clis, 1)
	out, errOut, code := runCLI(t, "member", "remove", "b", "--force", "--config", cfgA)
	if code != 0 || !strings.Contains(out, "Removed member b") {
		t.Fatalf("remove the leader with --force: exit %d %q %q", code, out, errOut)
	}
	if code := c.Procs[1].exitCode(); code == 0 {
		t.Error("the removed member's etcdvisor exited 0")
	}
	if got := c.Procs[0].stderr.String() + c.Procs[2].stderr.String(); !strings.Contains(got, "moved leadership off the member to be removed") {
		t.Error("leadership was not moved before the leader was removed")
	}
	c.Members, c.Procs = slices.Delete(c.Members, 1, 2), slices.Delete(c.Procs, 1, 2)
	c.waitVoters(0, "a", "c")
	if _, err := c.Client(0, 1).Put(ctx, "after-remove", "x"); err != nil {
		t.Fatalf("put after removing the leader: %v", err)
	}

	c.Stop()
}

func TestAbortJoinRemovesTheLearnerAndMovesItsDataAside(t *testing.T) {
	c := NewCluster(t, WithMembers(3), WithSpareHosts(1))
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitLimit)
	defer cancel()
	d, seen := c.joinKilledAsLearner(ctx)
	out, errOut, code := runCLI(t, "member", "abort-join", "--config", d.configPath())
	if code != 0 || !strings.Contains(out, "learner "+seen.LearnerID+" removed") {
		t.Fatalf("abort-join: exit %d %q %q", code, out, errOut)
	}
	c.waitVoters(0, "a", "b", "c")
	if rec := c.joinRecord(ctx, "d"); rec.Step != cluster.StepAborted {
		t.Errorf("join record after abort: %+v", rec)
	}
	if _, err := os.Stat(filepath.Join(d.dataDir(), "member")); err == nil {
		t.Error("the aborted learner's member dir is still in place")
	}
	// Aborting again finds nothing left to undo, and says so.
	if _, errOut, code := runCLI(t, "member", "abort-join", "--config", d.configPath()); code == 0 {
		t.Errorf("a second abort-join succeeded: %q", errOut)
	}
	c.Stop()
}

func TestAnUnreachableMemberIsRemovedAfterTheConfiguredGrace(t *testing.T) {
	c := NewCluster(t, WithMembers(3), WithMemberSetup(func(i int, m *member) {
		m.top = "membership:\n  remove-unreachable-after: 4s\n"
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitLimit)
	defer cancel()
	c.makeLeader(ctx, memberClients(c), 0)
	c.Procs[2].signal(syscall.SIGKILL)
	c.Members, c.Procs = c.Members[:2], c.Procs[:2]
	c.waitVoters(0, "a", "b")
	// The leader's etcdvisor logs the removal once the removal returns,
	// a moment after the member list shows it: a's, or b's if leadership
	// moved meanwhile.
	logged := func() bool {
		for _, p := range c.Procs {
			if strings.Contains(p.stderr.String(), "removed the unreachable member") {
				return true
			}
		}
		return false
	}
	waitUntil(t, "an etcdvisor logs the removal", logged)
	if _, err := c.Client(0, 1).Put(ctx, "after-auto-remove", "x"); err != nil {
		t.Errorf("put after the removal: %v", err)
	}
	c.Stop()
}

func TestAnAbandonedLearnerIsRemovedByTheLeader(t *testing.T) {
	c := NewCluster(t, WithMembers(3), WithSpareHosts(1), WithMemberSetup(func(i int, m *member) {
		m.top = "membership:\n  remove-abandoned-learner-after: 10s\n"
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitLimit)
	defer cancel()
	_, seen := c.joinKilledAsLearner(ctx)
	// d never comes back: once its lock has expired and the learner has
	// stayed idle past the limit, the leader's etcdvisor removes it.
	c.waitVoters(0, "a", "b", "c")
	rec := c.joinRecord(ctx, "d")
	if rec.Step != cluster.StepAborted || !strings.Contains(rec.Error, "abandoned") || rec.LearnerID != seen.LearnerID {
		t.Errorf("join record after the removal: %+v", rec)
	}
	logs := c.Procs[0].stderr.String() + c.Procs[1].stderr.String() + c.Procs[2].stderr.String()
	if !strings.Contains(logs, "removed an abandoned learner") {
		t.Error("no log line for the removal")
	}
	c.Stop()
}
