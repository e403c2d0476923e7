package main

// -starvation mode: how a 3-member cluster rides out a slow disk under its
// leader, with and without etcdvisor's starvation watch acting on it.
//
//	go run ./bench -starvation -rounds 1
//
// Every member's data dir is on its own SlowFS (e2e/faults: a FUSE
// loopback whose fsyncs can be delayed), so whichever member leads can be
// slowed. For each injected fsync latency and each target (plain etcd;
// etcdvisor with health.leader-move and health.fence off; etcdvisor with
// both on), a fresh cluster takes a steady open-loop write load: a
// warm-up, a fault-free baseline, then the latency on the leader's SlowFS
// for an episode, then the load goes on without it for a moment. Rounds
// alternate the targets so drift on a shared machine hits all alike, and
// medians are reported beside each round's figures.
//
// While the fault lasts, the bench reads the slow member's health report
// over its control socket (its "since" is the detection time) and the two
// healthy members' raft status (leader, term). Elections are term
// increases; those etcdvisor made (etcdvisor_leader_moves_total, read
// before and after) are planned, the rest unplanned. When members fenced
// and moved comes from their own logs, which the bench keeps, with the
// slow member's tail, as evidence for a missed goal. Beside etcdvisor's
// probe, the bench runs its own fsync probe on every member's disk, so a
// member that calls itself critical can be checked against its disk.
//
// The watch's own cost is the idle CPU of one etcdvisor member against
// one plain etcd member (idleCPU, as the default mode measures it).
//
// It mounts FUSE filesystems, so it runs as root, on Linux.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/etcdvisor/etcdvisor/e2e/faults"
	"github.com/etcdvisor/etcdvisor/internal/control"
	"github.com/etcdvisor/etcdvisor/internal/fence"
	"github.com/etcdvisor/etcdvisor/internal/freeport"
)

const (
	starveMembers = 3
	// The load: open loop, so a slow cluster is not offered less work
	// (and its latencies are not hidden by a client that waits); each
	// put's latency counts from when it was due, not when it was sent.
	starveRate     = 200 // puts per second, all clients together
	starveClients  = 4   // clientv3 clients, each with every endpoint
	starvePutLimit = 5 * time.Second
	// starveAttempts: a put is sent once, as kube-apiserver sends it.
	// clientv3 resends by itself what the fence refuses (its refusal is
	// the one clientv3 takes as "not sent"), and etcdvisor resends on the
	// member what raft drops during a transfer; no other failure is
	// resent. The same for every target.
	starveAttempts = 1
	starveWarmup   = 2 * time.Second
	starveBaseline = 5 * time.Second
	starveEpisode  = 10 * time.Second
	starveAfter    = 2 * time.Second
	// healthPoll is how often the slow member's report is read, over its
	// control socket (GET /v1/health, as etcdvisor health does). Not its
	// /metrics: each scrape gathers etcd's whole registry (180 KB), and 20
	// a second cost an idle member 15% of a core against 1% for the
	// report, on the member under test. The detection figure itself is
	// the report's "since", the watch's own clock; the poll only finds it.
	healthPoll = 50 * time.Millisecond
	statusPoll = 50 * time.Millisecond
	// electionTimeout is what plainFlags and etcdvisorConfig set.
	electionTimeout = time.Second
	leaderWait      = 15 * time.Second
	// Goals, from the issue.
	goalDetect   = time.Second
	goalMove     = 2 * time.Second
	goalP50Ratio = 2.0
	goalStuck    = electionTimeout
	goalSampling = 1.0 // points of one core
	// evidenceLines of the slow member's own log are kept for an episode
	// that misses a goal.
	evidenceLines = 25
)

// starveLatencies are the fsync latencies injected on the leader.
var starveLatencies = []time.Duration{200 * time.Millisecond, 500 * time.Millisecond}

// noisyLog are log messages that a slow leader writes for nearly every
// request; they would push everything else out of the kept tail.
var noisyLog = []string{"apply request took too long", `"msg":"request stats"`, `"msg":"trace"`}

// What etcdvisor logs (internal/supervisor) when it acts, as events.
const (
	msgHealth  = "member health changed"
	evCritical = "became critical" // a msgHealth event with state critical
	msgFenced  = "refusing client requests while this member is critical; clients go to the other members"
	msgMoved   = "moved leadership off this critical member"
	// calmLimit bounds the wait for no member to be critical before the
	// baseline: a false alarm holds for health.recover-after (10s).
	calmLimit = 12 * time.Second
)

// starveTarget is one way of running the cluster.
type starveTarget struct {
	name  string // as printed
	short string // in dir names
	visor bool   // etcdvisor, else plain etcd
	act   bool   // health.leader-move and health.fence on
}

var starveTargets = []starveTarget{
	{name: "plain etcd", short: "plain"},
	{name: "move off", short: "off", visor: true},
	{name: "move on", short: "on", visor: true, act: true},
}

// episode is what one round of one target at one latency measured.
// Durations after the fault's start are -1 when the thing never happened
// within the episode.
type episode struct {
	round   int
	latency time.Duration
	target  starveTarget
	slow    string // the member that led and was slowed

	detect  time.Duration // fault start -> the report's since, on the watch's own clock (etcdvisor only)
	seen    time.Duration // fault start -> the first poll that read critical
	fenced  time.Duration // fault start -> the slow member logged that it refuses clients
	moved   time.Duration // fault start -> a healthy member names another leader
	reasons []string      // the slow member's report at the fault's end

	baseP50, baseP99 time.Duration // fault-free, before the fault
	p50, p99         time.Duration // puts due during the fault that succeeded
	puts, failed     int           // due during the fault; failed after every attempt
	refused          int           // attempts the fence refused, in flight during the fault
	longest          time.Duration // any put in flight during or after the fault
	longestAfter     time.Duration // of those, puts due once the watch called the member critical; -1 without a watch
	stuck            int           // of those, how many took longer than an election timeout
	errs             map[string]int

	elections, moves int // term increases; leadership moves etcdvisor made
	// Before the fault (fault-free): members the watch called critical,
	// moves etcdvisor made, how long the bench waited for no member to be
	// critical, and who still was when the fault began.
	falseCritical, falseMoves int
	calmWait                  time.Duration
	preFault                  string
	// Healthy members that the watch called critical, and that fenced,
	// during the fault.
	othersCritical, othersFenced int
	// The bench's own write+fdatasync on each healthy member's disk,
	// beside etcdvisor's probe: the slowest before and during the fault.
	refBefore, refDuring time.Duration
	// When the puts over an election timeout, and the failed ones, were
	// due, from the fault's start.
	stuckFrom, stuckTo, failedFrom, failedTo time.Duration
	timeline                                 []event // etcdvisor's and raft's own words, all members
	tail                                     string  // the slow member's log tail
}

func (e episode) unplanned() int { return max(e.elections-e.moves, 0) }

// valid says the cluster was calm when the fault began: no member called
// itself critical. Otherwise the watch had acted (fenced, moved) on a false
// alarm before the fault, and the episode measures that, not the response
// to the fault: it counts as missing every goal and is left out of the
// medians.
func (e episode) valid() bool { return e.preFault == "" }

// goals checks one move-on episode against each goal, by name.
func (e episode) goals() map[string]bool {
	if !e.valid() {
		return map[string]bool{}
	}
	return map[string]bool{
		"detect":    e.detect >= 0 && e.detect < goalDetect,
		"move":      e.moved >= 0 && e.moved <= goalMove,
		"p50":       e.baseP50 > 0 && e.p50 > 0 && float64(e.p50)/float64(e.baseP50) <= goalP50Ratio,
		"stuck":     e.longest <= goalStuck,
		"elections": e.unplanned() == 0,
	}
}

func runStarvation(o options) error {
	began := time.Now()
	if o.rounds < 1 || o.idle <= 0 || o.timeout <= 0 {
		return errors.New("need -rounds >= 1, -idle > 0, -timeout > 0")
	}
	if os.Geteuid() != 0 {
		return errors.New("-starvation mounts FUSE filesystems (e2e/faults.MountSlowFS) and needs root")
	}
	ctx, cancel := runContext(o)
	defer cancel()

	if err := checkExecutables(map[string]string{"-etcd": o.etcd, "-etcdvisor": o.etcdvisor}); err != nil {
		return err
	}
	versions, err := checkVersions(ctx, o)
	if err != nil {
		return err
	}
	base, parent, err := makeBaseDir(o.dir)
	if err != nil {
		return err
	}
	defer os.RemoveAll(base)
	hz, hzNote := clockTicks(ctx)

	// 1. The watch's cost: one idle member of each, default settings.
	one, err := newLayout(ctx, options{members: 1}, base)
	if err != nil {
		return err
	}
	var idle [2]float64
	for i, t := range []target{
		{name: "plain etcd", short: "plain", bin: o.etcd, start: startPlain},
		{name: "etcdvisor", short: "etcdvisor", bin: o.etcdvisor, start: startEtcdvisor},
	} {
		if idle[i], err = idleCPU(ctx, one, t, filepath.Join(base, "idle-"+t.short), o.idle, hz); err != nil {
			return fmt.Errorf("idle CPU of %s: %w", t.name, err)
		}
		logf("idle: %s %.2f%% of one core over %s", t.name, idle[i], o.idle)
	}

	// 2. The episodes.
	var eps []episode
	n := 0
	for r := 1; r <= o.rounds; r++ {
		for _, lat := range starveLatencies {
			for _, t := range starveTargets {
				n++
				dir := filepath.Join(base, fmt.Sprintf("r%d-%s-%s", r, lat, t.short))
				e, err := runEpisode(ctx, o, t, lat, dir, fmt.Sprintf("starve-%d", n))
				if err != nil {
					return fmt.Errorf("round %d, fsync +%s, %s: %w", r, lat, t.name, err)
				}
				e.round = r
				logf("round %d/%d +%s %-10s %s", r, o.rounds, lat, t.name, e.line())
				eps = append(eps, e)
			}
		}
	}

	disk := parent + " (" + fsInfo(parent) + ")"
	printStarvation(os.Stdout, o, disk, versions, hzNote, hz, idle, eps, time.Since(began))
	return nil
}

// runEpisode starts a fresh cluster of t, loads it, slows its leader's
// disk by lat for starveEpisode and measures, then stops it.
func runEpisode(ctx context.Context, o options, t starveTarget, lat time.Duration, dir, token string) (episode, error) {
	e := episode{latency: lat, target: t, detect: -1, seen: -1, fenced: -1, moved: -1, longestAfter: -1, errs: map[string]int{}}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return e, err
	}
	defer os.RemoveAll(dir)
	bin := o.etcd
	if t.visor {
		bin = o.etcdvisor
	}
	c, err := startStarveCluster(ctx, t, bin, dir, token)
	if err != nil {
		return e, err
	}
	defer c.close()
	if _, _, err := c.leader(ctx); err != nil {
		return e, c.procs.blame(err)
	}
	refs, err := startRefProbes(ctx, c)
	if err != nil {
		return e, err
	}
	defer refs.stop()

	ld, err := newLoad(c.endpoints())
	if err != nil {
		return e, err
	}
	defer ld.close()
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	issued := make(chan struct{})
	go func() { defer close(issued); ld.run(ctx, loadCtx) }()
	// On an early return, stop issuing and let puts in flight end (each
	// within starvePutLimit) before the clients close.
	defer func() { stopLoad(); <-issued; ld.wg.Wait() }()

	if err := sleep(ctx, starveWarmup); err != nil {
		return e, err
	}
	// A member the watch calls critical without any fault (this disk has
	// the odd slow fsync under load, and one is a p99 over a few dozen
	// probes) would move leadership or fence before the fault and muddle
	// what is measured. Such false alarms are counted from the logs; the
	// baseline starts once none is critical, or after calmLimit anyway.
	if t.visor {
		waited, err := c.awaitCalm(ctx)
		if err != nil {
			return e, err
		}
		e.calmWait = waited
	}
	baseFrom := time.Now()
	if err := sleep(ctx, starveBaseline); err != nil {
		return e, err
	}
	baseTo := time.Now()

	// Slow whoever leads now, not who led at start.
	slow, termBefore, err := c.leader(ctx)
	if err != nil {
		return e, c.procs.blame(err)
	}
	e.slow = c.ms[slow].name
	movesBefore := 0
	if t.visor {
		movesBefore = c.moves(ctx)
		e.preFault = c.criticalNow(ctx)
	}
	var healthy []int
	for i := range c.ms {
		if i != slow {
			healthy = append(healthy, i)
		}
	}

	pollCtx, stopPolls := context.WithTimeout(ctx, starveEpisode+starveAfter+starvePutLimit)
	var polls sync.WaitGroup
	// On an early return the polls end before the cluster's connections
	// close, and before e is returned: they write into it.
	defer func() { stopPolls(); polls.Wait() }()
	faultStart := time.Now()
	c.fs[slow].SetFsyncLatency(lat)
	var maxTerm uint64
	if t.visor {
		polls.Go(func() { e.seen, e.detect = c.pollHealth(pollCtx, slow, faultStart) })
	}
	polls.Go(func() { e.moved, maxTerm = c.pollLeader(pollCtx, healthy, c.ids[slow], faultStart) })

	if err := sleep(ctx, starveEpisode); err != nil {
		return e, err
	}
	if t.visor {
		_, e.reasons = c.healthReport(ctx, slow)
	}
	faultEnd := time.Now()
	c.fs[slow].SetFsyncLatency(0)
	if err := sleep(ctx, starveAfter); err != nil {
		return e, err
	}
	stopLoad()
	<-issued
	ld.wg.Wait()
	stopPolls()
	polls.Wait()

	if err := c.procs.running("during the episode"); err != nil {
		return e, err
	}
	_, termAfter, err := c.terms(ctx, []int{0, 1, 2})
	if err != nil {
		return e, err
	}
	e.elections = int(max(termAfter, maxTerm) - termBefore)
	if t.visor {
		e.moves = c.moves(ctx) - movesBefore
	}
	e.timeline = c.events(faultStart)
	e.fromEvents(faultStart, faultEnd)
	e.tail = c.logs[slow].lastLines(evidenceLines)
	e.summarize(ld.records(), baseFrom, baseTo, faultStart, faultEnd)
	refs.stop() // its files must be closed before the disks unmount
	e.refBefore = refs.max(healthy, baseFrom, faultStart)
	e.refDuring = refs.max(healthy, faultStart, faultEnd)

	ld.close()
	if err := c.stop(ctx); err != nil {
		return e, err
	}
	return e, nil
}

// fromEvents reads from the members' own logs what the polls do not see:
// when the slow member fenced, whether others fenced too, and the false
// alarms before the fault.
func (e *episode) fromEvents(faultStart, faultEnd time.Time) {
	fencedOthers, criticalOthers := map[string]bool{}, map[string]bool{}
	during := func(ev event) bool { return ev.at >= 0 && ev.at <= faultEnd.Sub(faultStart) }
	for _, ev := range e.timeline {
		switch {
		case ev.msg == evCritical && during(ev) && ev.member != e.slow:
			criticalOthers[ev.member] = true
		case ev.msg == evCritical && ev.at < 0:
			e.falseCritical++
		case ev.msg == msgMoved && ev.at < 0:
			e.falseMoves++
		case ev.msg == msgFenced && during(ev):
			if ev.member == e.slow && e.fenced < 0 {
				e.fenced = ev.at
			}
			if ev.member != e.slow {
				fencedOthers[ev.member] = true
			}
		}
	}
	e.othersFenced, e.othersCritical = len(fencedOthers), len(criticalOthers)
}

// summarize fills the write figures from the load's records.
func (e *episode) summarize(recs []putRec, baseFrom, baseTo, faultStart, faultEnd time.Time) {
	var base, during []time.Duration
	for _, r := range recs {
		end := r.due.Add(r.took)
		switch {
		case !r.due.Before(baseFrom) && r.due.Before(baseTo):
			if r.err == nil {
				base = append(base, r.took)
			}
		case !r.due.Before(faultStart) && r.due.Before(faultEnd):
			e.puts++
			if r.err == nil {
				during = append(during, r.took)
			} else {
				at := r.due.Sub(faultStart)
				if e.failed == 0 {
					e.failedFrom = at
				}
				e.failed++
				e.failedTo = at
				e.errs[errKind(r.err)]++
			}
		}
		// Anything in flight while the disk was slow, or after, counts
		// towards the longest put: one sent just before the fault waits
		// on it as long as any other.
		if end.After(faultStart) {
			e.longest = max(e.longest, r.took)
			if e.detect >= 0 && r.due.Sub(faultStart) >= e.detect {
				e.longestAfter = max(e.longestAfter, r.took)
			}
			if r.took > goalStuck {
				at := r.due.Sub(faultStart)
				if e.stuck == 0 {
					e.stuckFrom = at
				}
				e.stuck++
				e.stuckTo = at
			}
			if r.due.Before(faultEnd) {
				e.refused += r.refused
			}
		}
	}
	e.baseP50, e.baseP99 = quantile(base, 0.50), quantile(base, 0.99)
	e.p50, e.p99 = quantile(during, 0.50), quantile(during, 0.99)
}

// errKind shortens an error to what kind it is, for counting: the fence's
// refusal names the member and its reason, which vary.
func errKind(err error) string {
	s := err.Error()
	if _, _, ok := fence.Info(err); ok {
		return "Unavailable: fenced (clientv3's resends ran out)"
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "deadline exceeded (" + starvePutLimit.String() + ")"
	}
	return clip(s, 80)
}

// quantile is the nearest-rank q-quantile of xs; 0 for none.
func quantile(xs []time.Duration, q float64) time.Duration {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// line is one episode's figures on one line, for the log and the rounds.
func (e episode) line() string {
	var b strings.Builder
	fmt.Fprintf(&b, "leader %s", e.slow)
	if e.target.visor && strings.Contains(" "+e.preFault+" ", " "+e.slow+" ") {
		b.WriteString(", critical before the fault")
	} else if e.target.visor {
		fmt.Fprintf(&b, ", critical %s (read %s)", dur(e.detect), dur(e.seen))
		if e.target.act {
			fmt.Fprintf(&b, ", fenced %s", dur(e.fenced))
		}
	}
	fmt.Fprintf(&b, ", moved %s, p50 %s -> %s (%.1fx), p99 %s, puts %d, failed %d",
		dur(e.moved), msOK(e.baseP50), msOK(e.p50), ratio(e.p50, e.baseP50), msOK(e.p99), e.puts, e.failed)
	if e.failed > 0 {
		fmt.Fprintf(&b, " (due %+.2fs..%+.2fs)", e.failedFrom.Seconds(), e.failedTo.Seconds())
	}
	fmt.Fprintf(&b, ", refused %d, longest %s", e.refused, dur(e.longest))
	if e.target.visor {
		fmt.Fprintf(&b, " (due after detection %s)", dur(e.longestAfter))
	}
	fmt.Fprintf(&b, ", over 1s %d", e.stuck)
	if e.stuck > 0 {
		fmt.Fprintf(&b, " (due %+.2fs..%+.2fs)", e.stuckFrom.Seconds(), e.stuckTo.Seconds())
	}
	fmt.Fprintf(&b, ", elections %d (moves %d, unplanned %d)", e.elections, e.moves, e.unplanned())
	if e.othersCritical > 0 {
		fmt.Fprintf(&b, "; %d healthy member(s) critical too, %d fenced", e.othersCritical, e.othersFenced)
	}
	fmt.Fprintf(&b, "; bench's own fsync on the healthy disks: max %s before, %s during", ms(e.refBefore), ms(e.refDuring))
	if e.target.visor {
		fmt.Fprintf(&b, "; before the fault: %d false critical(s), %d move(s)", e.falseCritical, e.falseMoves)
		if e.calmWait >= 100*time.Millisecond {
			fmt.Fprintf(&b, ", waited %s for calm", e.calmWait.Round(100*time.Millisecond))
		}
		if e.preFault != "" {
			fmt.Fprintf(&b, ", critical at the fault's start: %s", e.preFault)
		}
	}
	if len(e.errs) > 0 {
		var kinds []string
		for k, n := range e.errs {
			kinds = append(kinds, fmt.Sprintf("%dx %s", n, k))
		}
		slices.Sort(kinds)
		fmt.Fprintf(&b, "; errors: %s", strings.Join(kinds, ", "))
	}
	return b.String()
}

// msOK prints a latency of the puts that succeeded: "-" when none did.
func msOK(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return ms(d)
}

func ratio(a, b time.Duration) float64 {
	if b <= 0 {
		return math.NaN()
	}
	return float64(a) / float64(b)
}

// dur prints a time after the fault's start: "never" for -1.
func dur(d time.Duration) string {
	if d < 0 {
		return "never"
	}
	return fmt.Sprintf("%.2fs", d.Seconds())
}

// ---- the cluster ----

// starveCluster is one target's 3 members, each on its own SlowFS.
type starveCluster struct {
	ms     []member
	procs  cluster
	logs   []*tailBuffer // each member's output without noisyLog lines
	acts   []*tailBuffer // each member's etcdvisor actions and raft elections
	fs     []*faults.SlowFS
	status []pb.MaintenanceClient // each member's own, over its own connection
	conns  []*clientv3.Client
	ids    []uint64 // raft member IDs, by index
}

// startStarveCluster mounts a SlowFS for each member's data dir, starts
// every member on 127.0.0.1 and waits until each serves. On error nothing
// it started is left running or mounted.
func startStarveCluster(ctx context.Context, t starveTarget, bin, dir, token string) (_ *starveCluster, err error) {
	c := &starveCluster{}
	defer func() {
		if err != nil {
			c.close()
		}
	}()
	if c.ms, err = planLoopback(dir, token, starveMembers); err != nil {
		return nil, err
	}
	// Mount them all before any process starts: MountSlowFS marks its
	// /dev/fuse descriptor close-on-exec only after the mount, so a
	// child started meanwhile would inherit the server's end.
	for _, m := range c.ms {
		disk := filepath.Join(m.dir, "disk")
		if err := os.MkdirAll(disk, 0o700); err != nil {
			return nil, err
		}
		fs, err := faults.MountSlowFS(disk, filepath.Join(m.dir, "data"))
		if err != nil {
			return nil, err
		}
		c.fs = append(c.fs, fs)
	}
	for _, m := range c.ms {
		p, log, acts, err := startStarveMember(t, bin, m)
		if err != nil {
			return nil, err
		}
		c.procs, c.logs, c.acts = append(c.procs, p), append(c.logs, log), append(c.acts, acts)
	}
	if err := c.procs.waitReady(ctx); err != nil {
		return nil, err
	}
	for _, m := range c.ms {
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{m.client}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			return nil, err
		}
		c.conns = append(c.conns, cli)
		c.status = append(c.status, pb.NewMaintenanceClient(cli.ActiveConnection()))
	}
	for i := range c.ms {
		st, err := c.statusOf(ctx, i)
		if err != nil {
			return nil, c.procs.blame(fmt.Errorf("status of %s: %w", c.ms[i].name, err))
		}
		c.ids = append(c.ids, st.Header.MemberId)
	}
	return c, nil
}

// planLoopback lays out n members a, b, c... on 127.0.0.1 with free ports.
func planLoopback(dir, token string, n int) ([]member, error) {
	ms := make([]member, n)
	peers := make([]string, n)
	probe := newProbeClient(nil)
	for i := range ms {
		client, err1 := freeport.Port("127.0.0.1")
		peer, err2 := freeport.Port("127.0.0.1")
		metrics, err3 := freeport.Port("127.0.0.1")
		if err := errors.Join(err1, err2, err3); err != nil {
			return nil, err
		}
		ms[i] = member{
			name:          memberName(i),
			dir:           filepath.Join(dir, memberName(i)),
			client:        fmt.Sprintf("http://127.0.0.1:%d", client),
			peer:          fmt.Sprintf("http://127.0.0.1:%d", peer),
			metrics:       fmt.Sprintf("127.0.0.1:%d", metrics),
			token:         token,
			insecurePeers: true,
			probe:         probe,
		}
		if err := os.MkdirAll(ms[i].dir, 0o700); err != nil {
			return nil, err
		}
		peers[i] = ms[i].name + "=" + ms[i].peer
	}
	for i := range ms {
		ms[i].initialCluster = strings.Join(peers, ",")
	}
	return ms, nil
}

// startStarveMember starts one member with the flags or config of the
// other modes (plus, for etcdvisor, the health switches), logging at info
// so etcdvisor's every decision and raft's elections are seen. Its output
// is kept three ways: whole, for failures; without noisyLog, as evidence;
// and only the actions and elections, as events.
func startStarveMember(t starveTarget, bin string, m member) (*proc, *tailBuffer, *tailBuffer, error) {
	args := plainFlags(m)
	args[slices.Index(args, "--log-level")+1] = "info"
	name := "plain etcd " + m.name
	if t.visor {
		cfgPath := filepath.Join(m.dir, "etcdvisor.yaml")
		if err := os.WriteFile(cfgPath, []byte(starveConfig(m, t.act)), 0o600); err != nil {
			return nil, nil, nil, fmt.Errorf("write etcdvisor config: %w", err)
		}
		args = []string{"run", "--config", cfgPath}
		name = "etcdvisor " + m.name
	}
	p := &proc{name: name, out: newTailBuffer(64 << 10), done: make(chan struct{}), endpoint: m.client}
	logs, acts := newTailBuffer(64<<10), newTailBuffer(256<<10)
	w := io.MultiWriter(p.out,
		&lineFilter{to: logs, keep: func(line []byte) bool { return !containsAny(line, noisyLog) }},
		&lineFilter{to: acts, keep: isAction})
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = w, w
	p.cmd.SysProcAttr = childAttr()
	if err := p.cmd.Start(); err != nil {
		return nil, nil, nil, fmt.Errorf("start %s (%s): %w", name, bin, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	if t.visor {
		p.ready = func(ctx context.Context) error { return probeReadyz(ctx, m.probe, "http://"+m.metrics+"/readyz") }
	} else {
		p.sigtermIsClean = true // see startPlain
		p.ready = func(ctx context.Context) error { return probeHealth(ctx, m.probe, m.client+"/health") }
	}
	return p, logs, acts, nil
}

func containsAny(line []byte, subs []string) bool {
	return slices.ContainsFunc(subs, func(s string) bool { return bytes.Contains(line, []byte(s)) })
}

// isAction keeps etcdvisor's own health and leadership lines and raft's
// election lines.
func isAction(line []byte) bool {
	return containsAny(line, []string{`"caller":"supervisor/health.go`, `"caller":"supervisor/leadermove.go`,
		"is starting a new election", "elected leader", "received MsgTimeoutNow"})
}

// event is one action or election from a member's log.
type event struct {
	member string
	at     time.Duration // since the fault's start
	msg    string
	detail string
}

// events parses every member's actions, in time order.
func (c *starveCluster) events(faultStart time.Time) []event {
	var out []event
	for i, m := range c.ms {
		for line := range strings.Lines(c.acts[i].lastLines(1 << 20)) {
			var l struct {
				TS      time.Time `json:"ts"`
				Msg     string    `json:"msg"`
				State   string    `json:"state"`
				Was     string    `json:"was"`
				Reason  string    `json:"reason"`
				To      string    `json:"to"`
				Took    string    `json:"took"`
				Reasons []string  `json:"reasons"`
			}
			if json.Unmarshal([]byte(line), &l) != nil {
				continue
			}
			ev := event{member: m.name, at: l.TS.Sub(faultStart), msg: l.Msg}
			switch {
			case l.Msg == msgHealth:
				ev.detail = l.Was + " -> " + l.State
				if len(l.Reasons) > 0 {
					ev.detail += ": " + l.Reasons[0]
				}
				if l.State == "critical" {
					ev.msg = evCritical
				}
			case l.To != "" && l.Took != "":
				ev.detail = "to " + l.To + ", took " + l.Took
			case l.Reason != "":
				ev.detail = l.Reason
			}
			out = append(out, ev)
		}
	}
	slices.SortStableFunc(out, func(a, b event) int { return int(a.at - b.at) })
	return out
}

// starveConfig is the other modes' etcdvisor config with the watch's two
// actions switched on or off together; every other health setting is the
// default.
func starveConfig(m member, act bool) string {
	cfg := strings.Replace(etcdvisorConfig(m), "log: {level: warn}", "log: {level: info}", 1)
	return cfg + fmt.Sprintf("health:\n  leader-move: %t\n  fence: %t\n", act, act)
}

func (c *starveCluster) endpoints() []string {
	eps := make([]string, len(c.ms))
	for i, m := range c.ms {
		eps[i] = m.client
	}
	return eps
}

func (c *starveCluster) statusOf(ctx context.Context, i int) (*pb.StatusResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	return c.status[i].Status(ctx, &pb.StatusRequest{})
}

// terms asks members for their raft status and returns the leader a
// majority of those that answered name (-1 if none) and the highest term.
func (c *starveCluster) terms(ctx context.Context, of []int) (leader int, term uint64, err error) {
	votes := map[uint64]int{}
	answered := 0
	var errs []error
	for _, i := range of {
		st, err := c.statusOf(ctx, i)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.ms[i].name, err))
			continue
		}
		answered++
		term = max(term, st.RaftTerm)
		if st.Leader != 0 {
			votes[st.Leader]++
		}
	}
	if answered == 0 {
		return -1, 0, fmt.Errorf("no member answered a status request: %w", errors.Join(errs...))
	}
	for id, v := range votes {
		if i := slices.Index(c.ids, id); i >= 0 && v == len(of) {
			return i, term, nil
		}
	}
	return -1, term, nil
}

// leader waits until every member names the same leader, and returns it
// with the highest term.
func (c *starveCluster) leader(ctx context.Context) (int, uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, leaderWait)
	defer cancel()
	all := []int{0, 1, 2}
	for {
		i, term, err := c.terms(ctx, all)
		if err == nil && i >= 0 {
			return i, term, nil
		}
		if err := sleep(ctx, statusPoll); err != nil {
			return -1, 0, fmt.Errorf("the members did not agree on a leader within %s (last: %v)", leaderWait, err)
		}
	}
}

// pollLeader asks the healthy members for their raft status every
// statusPoll until ctx ends. It returns when, after start, one of them
// first named a leader other than slow (-1 if never), and the highest
// term seen.
func (c *starveCluster) pollLeader(ctx context.Context, healthy []int, slow uint64, start time.Time) (time.Duration, uint64) {
	moved := time.Duration(-1)
	var term uint64
	t := time.NewTicker(statusPoll)
	defer t.Stop()
	for {
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, i := range healthy {
			wg.Go(func() {
				st, err := c.statusOf(ctx, i)
				if err != nil {
					return
				}
				at := time.Since(start)
				mu.Lock()
				defer mu.Unlock()
				term = max(term, st.RaftTerm)
				if moved < 0 && st.Leader != 0 && st.Leader != slow {
					moved = at
				}
			})
		}
		wg.Wait()
		select {
		case <-ctx.Done():
			return moved, term
		case <-t.C:
		}
	}
}

// pollHealth reads the member's report every healthPoll until ctx ends.
// It returns when, after start, a read first said critical, and when the
// report says it became so (its since); -1 for never.
func (c *starveCluster) pollHealth(ctx context.Context, i int, start time.Time) (seen, since time.Duration) {
	seen, since = -1, -1
	cl := control.NewClient(c.socket(i))
	t := time.NewTicker(healthPoll)
	defer t.Stop()
	for {
		r, err := readReport(ctx, cl)
		if err == nil && r.State == "critical" {
			seen = time.Since(start)
			since = max(r.Since.Sub(start), 0)
			return seen, since
		}
		select {
		case <-ctx.Done():
			return seen, since
		case <-t.C:
		}
	}
}

// report is the part of etcdvisor's health report the bench reads.
type report struct {
	State   string    `json:"state"`
	Since   time.Time `json:"since"`
	Reasons []struct {
		Text string `json:"text"`
	} `json:"reasons"`
}

func readReport(ctx context.Context, cl *control.Client) (report, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	var r report
	err := cl.Get(ctx, "/v1/health", &r)
	return r, err
}

func (c *starveCluster) socket(i int) string { return filepath.Join(c.ms[i].dir, "etcdvisor.sock") }

// criticalNow names the members whose watch says critical, e.g. "a c".
func (c *starveCluster) criticalNow(ctx context.Context) string {
	var out []string
	for i, m := range c.ms {
		if r, err := readReport(ctx, control.NewClient(c.socket(i))); err == nil && r.State == "critical" {
			out = append(out, m.name)
		}
	}
	return strings.Join(out, " ")
}

// awaitCalm waits, at most calmLimit, until no member is critical, and
// returns how long it waited.
func (c *starveCluster) awaitCalm(ctx context.Context) (time.Duration, error) {
	start := time.Now()
	for time.Since(start) < calmLimit && c.criticalNow(ctx) != "" {
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return 0, err
		}
	}
	return time.Since(start), nil
}

// getMetrics reads a member's whole /metrics page: etcd's registry alone
// outgrows the 64 KiB that get keeps, and etcdvisor's families sort after
// etcd's.
func getMetrics(ctx context.Context, hc *http.Client, addr string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s/metrics: %s", addr, resp.Status)
	}
	return io.ReadAll(io.LimitReader(resp.Body, 16<<20))
}

// metricSum adds up every sample of the named metric in a Prometheus
// text exposition (all label sets of a counter vector).
func metricSum(body []byte, name string) (float64, bool) {
	sum, found := 0.0, false
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name)
		if !ok || rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		if i := strings.LastIndexByte(rest, '}'); i >= 0 {
			rest = rest[i+1:]
		}
		if v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64); err == nil {
			sum, found = sum+v, true
		}
	}
	return sum, found
}

// moves sums etcdvisor_leader_moves_total over the members.
func (c *starveCluster) moves(ctx context.Context) int {
	n := 0.0
	for _, m := range c.ms {
		body, err := getMetrics(ctx, m.probe, m.metrics)
		if err != nil {
			continue
		}
		v, _ := metricSum(body, "etcdvisor_leader_moves_total")
		n += v
	}
	return int(n)
}

// healthReport is the member's report in words: its state and reasons.
func (c *starveCluster) healthReport(ctx context.Context, i int) (report, []string) {
	r, err := readReport(ctx, control.NewClient(c.socket(i)))
	if err != nil {
		return r, []string{"no report: " + err.Error()}
	}
	words := []string{"state " + r.State}
	for _, x := range r.Reasons {
		words = append(words, x.Text)
	}
	return r, words
}

// stop stops the members with SIGTERM (each must exit cleanly) and
// unmounts their disks.
func (c *starveCluster) stop(ctx context.Context) error {
	for _, cli := range c.conns {
		cli.Close()
	}
	c.conns = nil
	err := c.procs.stop(ctx)
	return errors.Join(err, c.unmount())
}

// close kills whatever still runs and unmounts every disk; safe to call
// more than once, and after stop.
func (c *starveCluster) close() {
	for _, cli := range c.conns {
		cli.Close()
	}
	c.conns = nil
	c.procs.kill()
	if err := c.unmount(); err != nil {
		logf("WARNING: %v", err)
	}
}

func (c *starveCluster) unmount() error {
	var errs []error
	for _, fs := range c.fs {
		errs = append(errs, fs.Unmount()) // idempotent
	}
	return errors.Join(errs...)
}

// lineFilter passes to to the whole lines that keep accepts. A child's
// output arrives in pipe-sized chunks, so a line may span writes.
type lineFilter struct {
	to      io.Writer
	keep    func(line []byte) bool
	mu      sync.Mutex
	partial []byte
}

func (f *lineFilter) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.partial = append(f.partial, p...)
	for {
		i := bytes.IndexByte(f.partial, '\n')
		if i < 0 {
			break
		}
		if line := f.partial[:i+1]; f.keep(line) {
			f.to.Write(line)
		}
		f.partial = f.partial[i+1:]
	}
	if len(f.partial) > 64<<10 { // no newline in sight: not a log
		f.partial = f.partial[:0]
	}
	return len(p), nil
}

// refProbes are the bench's own fsync probes, one per member's disk: a
// write of 2300 bytes then fdatasync every 100ms, as etcdvisor's probe
// does, but from this process. They tell a slow disk from a member whose
// own probe is slow for other reasons (its process waiting for a CPU).
type refProbes struct {
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	mu      sync.Mutex
	samples [][]refSample // by member
}

type refSample struct {
	at   time.Time // when it started
	took time.Duration
}

const refProbeFile = ".bench-fsync-probe"

func startRefProbes(ctx context.Context, c *starveCluster) (*refProbes, error) {
	ctx, cancel := context.WithCancel(ctx)
	r := &refProbes{cancel: cancel, samples: make([][]refSample, len(c.ms))}
	for i, m := range c.ms {
		f, err := os.OpenFile(filepath.Join(m.dir, "data", refProbeFile), os.O_WRONLY|os.O_CREATE, 0o600)
		if err != nil {
			r.stop()
			return nil, fmt.Errorf("reference fsync probe on %s: %w", m.name, err)
		}
		r.wg.Go(func() {
			defer f.Close()
			buf := bytes.Repeat([]byte{'p'}, 2300)
			t := time.NewTicker(100 * time.Millisecond)
			defer t.Stop()
			for n := int64(0); ; n++ {
				start := time.Now()
				_, err := f.WriteAt(buf, (n%400)*int64(len(buf)))
				if err == nil {
					err = unix.Fdatasync(int(f.Fd()))
				}
				if err == nil {
					r.mu.Lock()
					r.samples[i] = append(r.samples[i], refSample{at: start, took: time.Since(start)})
					r.mu.Unlock()
				}
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
			}
		})
	}
	return r, nil
}

// stop ends the probes and waits until their files are closed; safe to
// call more than once.
func (r *refProbes) stop() {
	r.cancel()
	r.wg.Wait()
}

// max is the slowest probe of the given members that started in [from, to).
func (r *refProbes) max(members []int, from, to time.Time) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	var m time.Duration
	for _, i := range members {
		for _, s := range r.samples[i] {
			if !s.at.Before(from) && s.at.Before(to) {
				m = max(m, s.took)
			}
		}
	}
	return m
}

// ---- the load ----

// putRec is one put: when it was due, how long until its outcome (from
// due, so a late send counts against it), its error after every attempt,
// and how many attempts were refused with Unavailable.
type putRec struct {
	due     time.Time
	took    time.Duration
	err     error
	refused int
}

// load issues puts at starveRate, open loop, round robin over its
// clients; each client balances over every endpoint.
type load struct {
	clients []*clientv3.Client
	val     string
	recs    []putRec // one slot per put, written by its own goroutine
	n       int      // puts issued; read after run returned
	wg      sync.WaitGroup
}

func newLoad(endpoints []string) (*load, error) {
	l := &load{
		val: strings.Repeat("v", valSize),
		// Enough slots for the longest run; run stops at the last one.
		recs: make([]putRec, starveRate*int((starveWarmup+starveBaseline+starveEpisode+starveAfter+2*leaderWait)/time.Second)),
	}
	for range starveClients {
		cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			l.close()
			return nil, err
		}
		l.clients = append(l.clients, cli)
	}
	return l, nil
}

// run issues puts until issue ends; each put runs under ctx with its own
// deadline, so stopping the issue does not cut puts in flight short.
func (l *load) run(ctx, issue context.Context) {
	t0 := time.Now()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for i := range l.recs {
		due := t0.Add(time.Duration(i) * time.Second / starveRate)
		timer.Reset(time.Until(due))
		select {
		case <-issue.Done():
			return
		case <-timer.C:
		}
		l.n = i + 1
		l.wg.Go(func() { l.put(ctx, i, due) })
	}
}

func (l *load) put(ctx context.Context, i int, due time.Time) {
	ctx, cancel := context.WithDeadline(ctx, due.Add(starvePutLimit))
	defer cancel()
	r := &l.recs[i]
	r.due = due
	cli := l.clients[i%len(l.clients)]
	key := fmt.Sprintf("/bench/starvation/%08d", i)
	for attempt := 1; ; attempt++ {
		_, err := cli.Put(ctx, key, l.val)
		if err != nil && isUnavailable(err) {
			if _, _, fenced := fence.Info(err); fenced {
				r.refused++
			}
			if attempt < starveAttempts && ctx.Err() == nil {
				continue
			}
		}
		r.err = err
		break
	}
	r.took = time.Since(due)
}

// records are the puts issued; call after run returned and wg.Wait.
func (l *load) records() []putRec { return l.recs[:l.n] }

func (l *load) close() {
	for _, cli := range l.clients {
		cli.Close()
	}
	l.clients = nil
}

// isUnavailable tells a retryable refusal: the fence's, or etcd's own
// (leader changed, no leader), which clientv3 turns into an EtcdError.
func isUnavailable(err error) bool {
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		return ee.Code() == codes.Unavailable
	}
	return status.Code(err) == codes.Unavailable
}

// ---- output ----

func printStarvation(w io.Writer, o options, disk, versions, hzNote string, hz float64, idle [2]float64, eps []episode, took time.Duration) {
	fmt.Fprintf(w, "etcdvisor bench: starvation, %d-member cluster on 127.0.0.1 (heartbeat 100ms, election 1s), every data dir on its own SlowFS (FUSE) over %s\n",
		starveMembers, disk)
	fmt.Fprintf(w, "load: %d puts/s open loop, %d-byte values, %d clientv3 clients with all %d endpoints, %s limit per put, %d attempt(s) per put;\n",
		starveRate, valSize, starveClients, starveMembers, starvePutLimit, starveAttempts)
	fmt.Fprintf(w, "      %s warm-up, (etcdvisor: until no member is critical, at most %s), %s baseline, %s with the fsync latency on the leader's disk, %s without; %d round(s)\n",
		starveWarmup, calmLimit, starveBaseline, starveEpisode, starveAfter, o.rounds)
	fmt.Fprintf(w, "targets: plain etcd | etcdvisor with health.leader-move and fence off (move off) | both on (move on); other health settings default. Medians of the rounds.\n")

	row := func(a, b, c, d, e string) {
		fmt.Fprintln(w, strings.TrimRight(fmt.Sprintf("%-40s%-14s%-14s%-14s%s", a, b, c, d, e), " "))
	}
	// A goal is met only if every round met it; a round that began with
	// a member already critical meets none.
	goalCell := func(lat time.Duration, goal, text string) string {
		on := pick(eps, lat, "on")
		met := 0
		for _, e := range on {
			if e.goals()[goal] {
				met++
			}
		}
		verdict := "met"
		if met < len(on) {
			verdict = "NOT MET"
		}
		return fmt.Sprintf("%s: %s (%d/%d rounds)", text, verdict, met, len(on))
	}
	valid := func(es []episode) []episode {
		return slices.DeleteFunc(slices.Clone(es), func(e episode) bool { return !e.valid() })
	}
	for _, lat := range starveLatencies {
		fmt.Fprintln(w)
		row(fmt.Sprintf("fsync +%s on the leader", lat), "plain etcd", "move off", "move on", "goal (move on, in every round)")
		calm := func(short string) string {
			all := pick(eps, lat, short)
			return fmt.Sprintf("%d/%d", len(all)-len(valid(all)), len(all))
		}
		row("rounds already critical at the fault", calm("plain"), calm("off"), calm("on"), "(false alarm before it; left out of the medians, miss every goal)")
		// Medians of the rounds that began calm; "-" when none did.
		cells := func(f func(e episode) string) (string, string, string) {
			cell := func(short string) string {
				es := valid(pick(eps, lat, short))
				if len(es) == 0 {
					return "-"
				}
				return f(medianEpisode(es))
			}
			return cell("plain"), cell("off"), cell("on")
		}
		visorOnly := func(f func(e episode) string) func(e episode) string {
			return func(e episode) string {
				if !e.target.visor {
					return "n/a"
				}
				return f(e)
			}
		}
		a, b, c := cells(visorOnly(func(e episode) string { return dur(e.detect) }))
		row("detection: fault -> critical", a, b, c, goalCell(lat, "detect", "< 1s"))
		a, b, c = cells(func(e episode) string { return dur(e.moved) })
		row("leadership moved off the slow member", a, b, c, goalCell(lat, "move", "<= 2s"))
		a, b, c = cells(func(e episode) string { return msOK(e.baseP50) })
		row("write p50, baseline", a, b, c, "")
		a, b, c = cells(func(e episode) string { return msOK(e.p50) })
		row("write p50, during the fault", a, b, c, "")
		ratios := func(short string) string {
			var xs []float64
			for _, e := range valid(pick(eps, lat, short)) {
				xs = append(xs, e.p50Ratio())
			}
			if len(xs) == 0 {
				return "-"
			}
			return fmt.Sprintf("%.1fx", median(xs))
		}
		row("  ratio (median of the rounds')", ratios("plain"), ratios("off"), ratios("on"), goalCell(lat, "p50", "<= 2x"))
		a, b, c = cells(func(e episode) string { return msOK(e.p99) })
		row("write p99, during the fault", a, b, c, "")
		a, b, c = cells(func(e episode) string { return fmt.Sprintf("%d / %d", e.failed, e.refused) })
		row("failed puts / refused attempts", a, b, c, fmt.Sprintf("(of ~%d puts due)", starveRate*int(starveEpisode/time.Second)))
		a, b, c = cells(func(e episode) string { return fmt.Sprintf("%s (%d)", dur(e.longest), e.stuck) })
		row("longest put (puts over 1s)", a, b, c, goalCell(lat, "stuck", "<= 1s (election timeout)"))
		a, b, c = cells(visorOnly(func(e episode) string { return dur(e.longestAfter) }))
		row("  of the puts due after detection", a, b, c, "(what the watch could act on)")
		a, b, c = cells(func(e episode) string { return fmt.Sprintf("%d (%d moved)", e.unplanned(), e.moves) })
		row("unplanned elections (moves)", a, b, c, goalCell(lat, "elections", "0"))
		sums := func(short string) string {
			if short == "plain" {
				return "n/a"
			}
			crit, moves := 0, 0
			for _, e := range pick(eps, lat, short) {
				crit, moves = crit+e.falseCritical, moves+e.falseMoves
			}
			return fmt.Sprintf("%d (%d moved)", crit, moves)
		}
		row("false criticals before it (all rounds)", sums("plain"), sums("off"), sums("on"), "(reported)")
		others := func(short string) string {
			if short == "plain" {
				return "n/a"
			}
			crit, fenced := 0, 0
			for _, e := range pick(eps, lat, short) {
				crit, fenced = crit+e.othersCritical, fenced+e.othersFenced
			}
			return fmt.Sprintf("%d (%d fenced)", crit, fenced)
		}
		row("healthy members critical in it (all)", others("plain"), others("off"), others("on"), "(reported)")
	}

	fmt.Fprintln(w)
	diff := idle[1] - idle[0]
	verdict := "met"
	if diff >= goalSampling {
		verdict = "NOT MET"
	}
	fmt.Fprintf(w, "sampling: idle CPU of one member over %s after %s settle: plain etcd %.2f%%, etcdvisor %.2f%% of one core -> %+.2f points; goal < %.0f%%: %s\n",
		o.idle, settle, idle[0], idle[1], diff, goalSampling, verdict)
	fmt.Fprintf(w, "          (all of etcdvisor's own work, the watch included, default health settings, no peers to probe; CPU time in %s, resolution %.2f points)\n",
		hzNote, 100/hz/o.idle.Seconds())

	fmt.Fprintln(w, "\nrounds (critical: the report's since, read: the first poll that saw it; moved: a healthy member names another leader; all from the fault's start):")
	for _, lat := range starveLatencies {
		for _, t := range starveTargets {
			for _, e := range pick(eps, lat, t.short) {
				fmt.Fprintf(w, "  r%d +%s %-10s %s\n", e.round, lat, t.name, e.line())
			}
		}
	}
	var evidence []string
	for _, e := range eps {
		var missed []string
		for _, g := range []string{"detect", "move", "p50", "stuck", "elections"} {
			if e.target.act && !e.goals()[g] {
				missed = append(missed, g)
			}
		}
		if len(missed) == 0 {
			continue
		}
		var b strings.Builder
		fmt.Fprintf(&b, "r%d +%s %s missed %s; slow member %s", e.round, e.latency, e.target.name, strings.Join(missed, ", "), e.slow)
		if !e.valid() {
			fmt.Fprintf(&b, "; already critical when the fault began: %s", e.preFault)
		}
		b.WriteString("\n")
		fmt.Fprintf(&b, "    its report at the fault's end: %s\n", strings.Join(e.reasons, "; "))
		fmt.Fprintf(&b, "    actions and elections, all members (time from the fault's start):\n")
		for _, ev := range e.timeline {
			if ev.at < -starveBaseline-time.Second {
				continue
			}
			fmt.Fprintf(&b, "      %+7.2fs %s: %s", ev.at.Seconds(), ev.member, ev.msg)
			if ev.detail != "" {
				fmt.Fprintf(&b, " (%s)", clip(ev.detail, 160))
			}
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "    its log, last %d lines without %q:\n", evidenceLines, noisyLog)
		for line := range strings.Lines(e.tail) {
			fmt.Fprintf(&b, "      %s\n", clip(strings.TrimRight(line, "\n"), 300))
		}
		evidence = append(evidence, b.String())
	}
	if len(evidence) > 0 {
		fmt.Fprintln(w, "\nevidence for missed goals (move on):")
		for _, s := range evidence {
			fmt.Fprint(w, "  ", s)
		}
	}
	fmt.Fprintf(w, "%s\ntook %s\n", versions, took.Round(time.Second))
}

func (e episode) p50Ratio() float64 { return ratio(e.p50, e.baseP50) }

func pick(eps []episode, lat time.Duration, short string) []episode {
	var out []episode
	for _, e := range eps {
		if e.latency == lat && e.target.short == short {
			out = append(out, e)
		}
	}
	return out
}

// medianEpisode is the median of each figure over the rounds, "never"
// (-1) counting as the longest.
func medianEpisode(es []episode) episode {
	if len(es) == 0 {
		return episode{}
	}
	m := es[0]
	med := func(f func(e episode) time.Duration) time.Duration {
		xs := make([]float64, len(es))
		for i, e := range es {
			xs[i] = float64(f(e))
			if xs[i] < 0 {
				xs[i] = math.Inf(1)
			}
		}
		v := median(xs)
		if math.IsInf(v, 1) {
			return -1
		}
		return time.Duration(v)
	}
	medInt := func(f func(e episode) int) int {
		return int(med(func(e episode) time.Duration { return time.Duration(f(e)) }))
	}
	m.detect = med(func(e episode) time.Duration { return e.detect })
	m.seen = med(func(e episode) time.Duration { return e.seen })
	m.fenced = med(func(e episode) time.Duration { return e.fenced })
	m.moved = med(func(e episode) time.Duration { return e.moved })
	m.baseP50 = med(func(e episode) time.Duration { return e.baseP50 })
	m.baseP99 = med(func(e episode) time.Duration { return e.baseP99 })
	m.p50 = med(func(e episode) time.Duration { return e.p50 })
	m.p99 = med(func(e episode) time.Duration { return e.p99 })
	m.longest = med(func(e episode) time.Duration { return e.longest })
	m.longestAfter = med(func(e episode) time.Duration { return e.longestAfter })
	m.failed = medInt(func(e episode) int { return e.failed })
	m.refused = medInt(func(e episode) int { return e.refused })
	m.stuck = medInt(func(e episode) int { return e.stuck })
	m.moves = medInt(func(e episode) int { return e.moves })
	// Unplanned elections: the median of each round's, not the difference
	// of two medians.
	u := medInt(func(e episode) int { return e.unplanned() })
	m.elections = u + m.moves
	return m
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
