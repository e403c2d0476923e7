package main

// -membership mode: what a member replacement and a rolling restart cost
// the clients, and how fast a replacement moves the database.
//
//	go run ./bench -membership -db-sizes 100MiB,1GiB
//
// Replace: a 3-member etcdvisor cluster is filled to each DB size with
// incompressible 512 KiB values; c is killed (-9) and its data removed;
// once a and b serve writes again, a steady writer puts small values at
// 200/s through their client URLs and d, a new etcdvisor with a join
// section replacing c, starts. The
// bench watches d's join journal in the cluster and reports the time from
// d's start to its promotion, and from learner-added to promoted (the
// database moving to d), against the rate this disk writes and fsyncs a
// file of the same size.
//
// Rolling restart: under the same writer (through all three members),
// plain etcd restarted by hand as a careful operator would (SIGTERM, start
// again, wait for /health; followers first, the leader last) against
// `etcdvisor cluster rolling-restart`, with the bench starting each
// etcdvisor again when it exits with status 75, as systemd would. Both
// report failed writes and the longest gap between acknowledged writes.

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	evcluster "github.com/etcdvisor/etcdvisor/internal/cluster"
)

const (
	writerRate  = 200 // puts/s of the steady writer
	fillValue   = 512 << 10
	replaceWait = 20 * time.Minute
)

func runMembership(o options) error {
	ctx, cancel := runContext(o)
	defer cancel()
	if err := checkExecutables(map[string]string{"-etcd": o.etcd, "-etcdvisor": o.etcdvisor}); err != nil {
		return err
	}
	var sizes []uint64
	for _, s := range strings.Split(o.dbSizes, ",") {
		n, err := humanize.ParseBytes(strings.TrimSpace(s))
		if err != nil || n < 1<<20 {
			return fmt.Errorf("-db-sizes %q: want sizes of at least 1MiB, like 100MiB,1GiB", o.dbSizes)
		}
		sizes = append(sizes, n)
	}
	base, parent, err := makeBaseDir(o.dir)
	if err != nil {
		return err
	}
	defer os.RemoveAll(base)

	var replaces []replaceResult
	for i, size := range sizes {
		// Once per size, before both replaces: the etcdvisor replace
		// already writes the DB once more than the manual one (its
		// pre-join snapshot), and another GiB written just before it made
		// its move 1.5-4x slower on this VM's disk (3.4-9.4 s against 2.3 s).
		rate, err := diskRate(filepath.Join(base, fmt.Sprintf("disk-rate%d", i)), int64(size))
		if err != nil {
			return err
		}
		for _, visor := range []bool{false, true} {
			r, err := measureReplace(ctx, o, filepath.Join(base, fmt.Sprintf("replace%d-%t", i, visor)), size, visor)
			if err != nil {
				return fmt.Errorf("replace with a %s DB (etcdvisor %t): %w", humanize.IBytes(size), visor, err)
			}
			// Gigabytes of data dirs left to write back would stall the
			// next measurement's fsyncs: write them back now. They stay
			// until the end: deleting them here would stall the next
			// measurement too, on a filesystem mounted with discard.
			syscall.Sync()
			r.diskRate = rate
			logf("replace (%s), %s DB: %s to promoted (DB moved in %s; %s), writes: %s", r.name, humanize.IBytes(uint64(r.db)), r.total.Round(time.Millisecond), r.move.Round(time.Millisecond), r.phases, r.load)
			replaces = append(replaces, r)
		}
	}
	var rolls []rollResult
	for round := 1; round <= o.rounds; round++ {
		for _, visor := range []bool{false, true} {
			r, err := measureRolling(ctx, o, filepath.Join(base, fmt.Sprintf("rolling%d-%t", round, visor)), visor)
			if err != nil {
				return fmt.Errorf("rolling restart (etcdvisor %t): %w", visor, err)
			}
			logf("rolling restart round %d, %s: %s", round, r.name, r.load)
			rolls = append(rolls, r)
		}
	}
	printMembership(os.Stdout, parent+" ("+fsInfo(parent)+")", replaces, rolls)
	return nil
}

// ---- the writer ----

// loadStats is what a steady writer saw.
type loadStats struct {
	ok, failed int
	longestGap time.Duration
	firstErr   error
}

func (l loadStats) String() string {
	s := fmt.Sprintf("%d ok, %d failed, longest gap %s", l.ok, l.failed, l.longestGap.Round(100*time.Microsecond))
	if l.firstErr != nil {
		s += fmt.Sprintf(" (first error: %v)", l.firstErr)
	}
	return s
}

// steadyWriter puts small values at writerRate through cli, one after
// another on a fixed schedule, until stopped.
type steadyWriter struct {
	cancel context.CancelFunc
	done   chan loadStats
}

func startWriter(ctx context.Context, cli *clientv3.Client) *steadyWriter {
	ctx, cancel := context.WithCancel(ctx)
	w := &steadyWriter{cancel: cancel, done: make(chan loadStats, 1)}
	go func() {
		var st loadStats
		t := time.NewTicker(time.Second / writerRate)
		defer t.Stop()
		last := time.Now()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				st.longestGap = max(st.longestGap, time.Since(last))
				w.done <- st
				return
			case <-t.C:
			}
			pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
			_, err := cli.Put(pctx, fmt.Sprintf("/bench/w/%d", i%1000), "v")
			pcancel()
			switch {
			case err == nil:
				now := time.Now()
				st.longestGap = max(st.longestGap, now.Sub(last))
				last = now
				st.ok++
			case ctx.Err() != nil:
			default:
				st.failed++
				if st.firstErr == nil {
					st.firstErr = err
				}
			}
		}
	}()
	return w
}

func (w *steadyWriter) stop() loadStats {
	w.cancel()
	return <-w.done
}

func newClient(eps []string) (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
}

// ---- replace ----

type replaceResult struct {
	name        string
	db          int64
	total, move time.Duration // d's start to promoted; learner-added to promoted
	phases      string        // where the time went, step by step
	diskRate    float64       // bytes/s
	load        loadStats
}

func measureReplace(ctx context.Context, o options, dir string, size uint64, visor bool) (replaceResult, error) {
	ms, err := planLoopback(dir, "bench-replace-"+filepath.Base(dir), 4)
	if err != nil {
		return replaceResult{}, err
	}
	start, bin, name := startPlain, o.etcd, "plain etcd, by hand"
	if visor {
		start, bin, name = startEtcdvisor, o.etcdvisor, "etcdvisor join"
	}
	procs := make(cluster, 4)
	defer func() {
		for _, p := range procs {
			if p != nil {
				p.kill()
			}
		}
	}()
	for i := range 3 {
		ms[i].initialCluster = strings.Join(strings.Split(ms[i].initialCluster, ",")[:3], ",")
		if procs[i], err = start(bin, ms[i]); err != nil {
			return replaceResult{}, err
		}
	}
	if err := procs[:3].waitReady(ctx); err != nil {
		return replaceResult{}, err
	}
	cli, err := newClient([]string{ms[0].client, ms[1].client})
	if err != nil {
		return replaceResult{}, err
	}
	defer cli.Close()
	db, err := fillIncompressible(ctx, cli, ms[0].client, int64(size))
	if err != nil {
		return replaceResult{}, err
	}
	logf("replace (%s): filled the DB to %s", name, humanize.IBytes(uint64(db)))

	// c dies first; if it led, a and b elect a new leader, and the writes
	// that fail meanwhile are the failure's, not the replacement's. The
	// writer starts once a write goes through again.
	procs[2].kill()
	if err := os.RemoveAll(filepath.Join(ms[2].dir, "data")); err != nil {
		return replaceResult{}, err
	}
	for {
		pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := cli.Put(pctx, "/bench/after-failure", "x")
		pcancel()
		if err == nil {
			break
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return replaceResult{}, err
		}
	}
	w := startWriter(ctx, cli)
	time.Sleep(2 * time.Second)
	rctx, rcancel := context.WithTimeout(ctx, replaceWait)
	defer rcancel()
	var r replaceResult
	if visor {
		r, err = replaceByJoin(rctx, o, ms, procs, cli)
	} else {
		r, err = replaceByHand(rctx, o, ms, procs, cli)
	}
	if err != nil {
		return replaceResult{}, err
	}
	if err := procs[3].waitReady(ctx); err != nil {
		return replaceResult{}, err
	}
	time.Sleep(2 * time.Second) // writes after the change count too
	r.name, r.db, r.load = name, db, w.stop()
	return r, nil
}

// replaceByJoin starts d, an etcdvisor whose config replaces c, and
// follows its join journal in the cluster.
func replaceByJoin(ctx context.Context, o options, ms []member, procs cluster, cli *clientv3.Client) (replaceResult, error) {
	steps := map[string]time.Time{}
	var mu sync.Mutex
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	go watchSteps(wctx, cli, "d", &mu, steps)

	d := ms[3]
	cfg := joinerConfig(d, "c", ms[0].client, ms[1].client)
	cfgPath := filepath.Join(d.dir, "etcdvisor.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return replaceResult{}, err
	}
	start := time.Now()
	pd, err := startProc("etcdvisor d", o.etcdvisor, "run", "--config", cfgPath)
	if err != nil {
		return replaceResult{}, err
	}
	procs[3] = pd
	pd.endpoint = d.client
	pd.ready = func(ctx context.Context) error { return probeReadyz(ctx, d.probe, "http://"+d.metrics+"/readyz") }
	for {
		mu.Lock()
		promoted, learner := steps[evcluster.StepPromoted], steps[evcluster.StepLearner]
		mu.Unlock()
		if !promoted.IsZero() {
			return replaceResult{total: promoted.Sub(start), move: promoted.Sub(learner), phases: phases(start, steps)}, nil
		}
		if pd.exited() {
			return replaceResult{}, pd.failure("exited during the join: %v", pd.err)
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return replaceResult{}, pd.failure("not promoted: %v", err)
		}
	}
}

// replaceByHand is the documented procedure with plain etcd, done as fast
// as a script could: remove c, add d as a learner, start it with the
// existing cluster, and ask for its promotion every 25 ms until etcd
// agrees.
func replaceByHand(ctx context.Context, o options, ms []member, procs cluster, cli *clientv3.Client) (replaceResult, error) {
	start := time.Now()
	list, err := cli.MemberList(ctx)
	if err != nil {
		return replaceResult{}, err
	}
	for _, m := range list.Members {
		if m.Name == "c" {
			if _, err := cli.MemberRemove(ctx, m.ID); err != nil {
				return replaceResult{}, fmt.Errorf("remove c: %w", err)
			}
		}
	}
	d := ms[3]
	// etcd refuses changes as "unhealthy cluster" until every member has
	// been connected for a few seconds; a script asks again.
	var added *clientv3.MemberAddResponse
	for {
		if added, err = cli.MemberAddAsLearner(ctx, []string{d.peer}); !errors.Is(err, rpctypes.ErrUnhealthy) {
			break
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return replaceResult{}, err
		}
	}
	if err != nil {
		return replaceResult{}, fmt.Errorf("add d as a learner: %w", err)
	}
	learner := time.Now()
	d.initialCluster = strings.Join([]string{
		strings.Split(ms[0].initialCluster, ",")[0], strings.Split(ms[0].initialCluster, ",")[1], "d=" + d.peer}, ",")
	args := plainFlags(d)
	args[slices.Index(args, "--initial-cluster-state")+1] = "existing"
	pd, err := startProc("plain etcd d", o.etcd, args...)
	if err != nil {
		return replaceResult{}, err
	}
	procs[3] = pd
	pd.endpoint = d.client
	pd.sigtermIsClean = true
	pd.ready = func(ctx context.Context) error { return probeHealth(ctx, d.probe, d.client+"/health") }
	for {
		_, err := cli.MemberPromote(ctx, added.Member.ID)
		if err == nil {
			now := time.Now()
			return replaceResult{total: now.Sub(start), move: now.Sub(learner)}, nil
		}
		if !errors.Is(err, rpctypes.ErrGRPCLearnerNotReady) && !errors.Is(err, rpctypes.ErrMemberLearnerNotReady) {
			return replaceResult{}, fmt.Errorf("promote d: %w", err)
		}
		if pd.exited() {
			return replaceResult{}, pd.failure("exited as a learner: %v", pd.err)
		}
		if err := sleep(ctx, 25*time.Millisecond); err != nil {
			return replaceResult{}, pd.failure("not promoted: %v", err)
		}
	}
}

// phases says how long each step of the join took after the one before,
// from d's start: the lock, pre-flight and snapshot end at "checked".
func phases(start time.Time, steps map[string]time.Time) string {
	var b strings.Builder
	prev := start
	for _, step := range []string{evcluster.StepChecked, evcluster.StepRemoved, evcluster.StepLearner, evcluster.StepPromoted} {
		at, ok := steps[step]
		if !ok {
			continue
		}
		fmt.Fprintf(&b, " %s +%s", step, at.Sub(prev).Round(time.Millisecond))
		prev = at
	}
	return strings.TrimSpace(b.String())
}

// joinerConfig is the other modes' config plus a join section.
func joinerConfig(m member, replaces string, endpoints ...string) string {
	return etcdvisorConfig(m) + fmt.Sprintf("join:\n  endpoints: [%s]\n  replaces: %q\n", strings.Join(endpoints, ", "), replaces)
}

// watchSteps records when the bench first saw each step of name's join.
func watchSteps(ctx context.Context, cli *clientv3.Client, name string, mu *sync.Mutex, steps map[string]time.Time) {
	for resp := range cli.Watch(ctx, evcluster.JoinsPrefix+name) {
		for _, ev := range resp.Events {
			var rec evcluster.JoinRecord
			if json.Unmarshal(ev.Kv.Value, &rec) != nil {
				continue
			}
			mu.Lock()
			if _, seen := steps[rec.Step]; !seen {
				steps[rec.Step] = time.Now()
			}
			mu.Unlock()
		}
	}
}

// fillIncompressible puts incompressible values until the member at url reports a DB of
// at least size bytes, and returns that size.
func fillIncompressible(ctx context.Context, cli *clientv3.Client, url string, size int64) (int64, error) {
	val := make([]byte, fillValue)
	for i := 0; ; i++ {
		if i%16 == 0 {
			sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			st, err := cli.Status(sctx, url)
			cancel()
			if err != nil {
				return 0, fmt.Errorf("status while filling: %w", err)
			}
			if st.DbSize >= size {
				return st.DbSize, nil
			}
		}
		rand.Read(val)
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, err := cli.Put(pctx, fmt.Sprintf("/bench/fill/%08d", i), string(val))
		cancel()
		if err != nil {
			return 0, fmt.Errorf("fill: %w", err)
		}
	}
}

// diskRate writes size bytes to a file in 1 MiB writes, fsyncs it, and
// returns bytes per second: what moving a database of that size onto this
// disk costs at the least. The file stays until the bench ends, like the
// data dirs: removing a GiB on a filesystem mounted with discard stalled
// the next measurement's fsyncs (a 4.1 s write gap in a rolling restart).
func diskRate(path string, size int64) (float64, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	rand.Read(buf)
	start := time.Now()
	for n := int64(0); n < size; n += int64(len(buf)) {
		if _, err := f.Write(buf); err != nil {
			return 0, fmt.Errorf("disk rate: %w", err)
		}
	}
	if err := f.Sync(); err != nil {
		return 0, fmt.Errorf("disk rate: %w", err)
	}
	return float64(size) / time.Since(start).Seconds(), nil
}

// ---- rolling restart ----

type rollResult struct {
	name string
	load loadStats
	took time.Duration
}

func measureRolling(ctx context.Context, o options, dir string, visor bool) (rollResult, error) {
	ms, err := planLoopback(dir, "bench-rolling-"+filepath.Base(dir), 3)
	if err != nil {
		return rollResult{}, err
	}
	start := startPlain
	name := "plain etcd, by hand"
	if visor {
		start, name = startEtcdvisor, "etcdvisor rolling-restart"
	}
	bin := o.etcd
	if visor {
		bin = o.etcdvisor
	}
	procs := make(cluster, 3)
	var mu sync.Mutex // guards procs while the restarter replaces them
	defer func() {
		mu.Lock()
		for _, p := range procs {
			if p != nil {
				p.kill()
			}
		}
		mu.Unlock()
	}()
	for i := range ms {
		if procs[i], err = start(bin, ms[i]); err != nil {
			return rollResult{}, err
		}
	}
	if err := procs.waitReady(ctx); err != nil {
		return rollResult{}, err
	}
	eps := []string{ms[0].client, ms[1].client, ms[2].client}
	cli, err := newClient(eps)
	if err != nil {
		return rollResult{}, err
	}
	defer cli.Close()
	order, err := restartOrder(ctx, cli, ms)
	if err != nil {
		return rollResult{}, err
	}
	w := startWriter(ctx, cli)
	time.Sleep(2 * time.Second)
	began := time.Now()
	if visor {
		err = rollEtcdvisor(ctx, o, ms, procs, &mu)
	} else {
		err = rollPlainByHand(ctx, o, ms, procs, order)
	}
	took := time.Since(began)
	time.Sleep(2 * time.Second)
	load := w.stop()
	if err != nil {
		return rollResult{}, err
	}
	return rollResult{name: name, load: load, took: took}, nil
}

// restartOrder is followers by name, then the leader.
func restartOrder(ctx context.Context, cli *clientv3.Client, ms []member) ([]int, error) {
	var order []int
	leader := -1
	for i, m := range ms {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		st, err := cli.Status(sctx, m.client)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("status of %s: %w", m.name, err)
		}
		if st.Leader == st.Header.MemberId {
			leader = i
		} else {
			order = append(order, i)
		}
	}
	if leader < 0 {
		return nil, errors.New("no leader")
	}
	return append(order, leader), nil
}

// rollPlainByHand is the careful manual procedure: SIGTERM (etcd hands
// leadership over), start again, wait until it serves; followers first.
func rollPlainByHand(ctx context.Context, o options, ms []member, procs cluster, order []int) error {
	for _, i := range order {
		if err := procs[i].terminate(); err != nil {
			return err
		}
		if err := procs[i].awaitExit(ctx); err != nil {
			return err
		}
		p, err := startPlain(o.etcd, ms[i])
		if err != nil {
			return err
		}
		procs[i] = p
		if err := p.waitReady(ctx); err != nil {
			return err
		}
	}
	return nil
}

// rollEtcdvisor asks a's etcdvisor for a rolling restart and, as systemd
// would, starts each etcdvisor again when it exits with status 75.
func rollEtcdvisor(ctx context.Context, o options, ms []member, procs cluster, mu *sync.Mutex) error {
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	restarted := make([]int, len(ms))
	for i := range ms {
		wg.Go(func() {
			for {
				mu.Lock()
				p := procs[i]
				mu.Unlock()
				select {
				case <-rctx.Done():
					return
				case <-p.done:
				}
				var ee *exec.ExitError
				if !errors.As(p.err, &ee) || ee.ExitCode() != 75 {
					return
				}
				np, err := startEtcdvisor(o.etcdvisor, ms[i])
				if err != nil {
					return
				}
				mu.Lock()
				procs[i] = np
				restarted[i]++
				mu.Unlock()
			}
		})
	}
	defer wg.Wait()
	defer cancel()
	cmd := exec.CommandContext(ctx, o.etcdvisor, "cluster", "rolling-restart", "--wait", "10m", "--socket", filepath.Join(ms[0].dir, "etcdvisor.sock"))
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Rolling restart done.") {
		return fmt.Errorf("etcdvisor cluster rolling-restart: %v\n%s", err, out)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(restarted, []int{1, 1, 1}) {
		return fmt.Errorf("members restarted %v times, want once each", restarted)
	}
	return procs.waitReady(ctx)
}

// ---- report ----

func printMembership(w io.Writer, disk string, replaces []replaceResult, rolls []rollResult) {
	fmt.Fprintf(w, "\nMembership: 3 members on loopback, writer at %d puts/s; disk %s\n\n", writerRate, disk)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "replace c by d\tDB\tstart to promoted\tDB moved in\tmove rate\tdisk rate\tratio\tfailed writes\tlongest write gap\tgoals")
	for _, r := range replaces {
		moveRate := float64(r.db) / r.move.Seconds()
		ratio := moveRate / r.diskRate
		goal := fmt.Sprintf("move >= 0.5x disk: %s; no failed write: %s", yes(ratio >= 0.5), yes(r.load.failed == 0))
		if !strings.HasPrefix(r.name, "etcdvisor") {
			goal = "(reference)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s/s\t%s/s\t%.2fx\t%d of %d\t%s\t%s\n", r.name, humanize.IBytes(uint64(r.db)), r.total.Round(time.Millisecond),
			r.move.Round(time.Millisecond), humanize.IBytes(uint64(moveRate)), humanize.IBytes(uint64(r.diskRate)), ratio,
			r.load.failed, r.load.ok+r.load.failed, r.load.longestGap.Round(100*time.Microsecond), goal)
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "rolling restart\thow\ttook\tfailed writes\tlongest write gap")
	var plainGaps []float64
	for _, r := range rolls {
		if !strings.HasPrefix(r.name, "etcdvisor") {
			plainGaps = append(plainGaps, float64(r.load.longestGap))
		}
	}
	for _, r := range rolls {
		fmt.Fprintf(tw, "\t%s\t%s\t%d of %d\t%s\n", r.name, r.took.Round(time.Second), r.load.failed, r.load.ok+r.load.failed, r.load.longestGap.Round(100*time.Microsecond))
	}
	tw.Flush()
	if len(plainGaps) > 0 {
		manual := time.Duration(median(plainGaps))
		for _, r := range rolls {
			if strings.HasPrefix(r.name, "etcdvisor") {
				fmt.Fprintf(w, "goal (zero failed, gap within 2x of the manual median %s): %s for a round with %d failed and gap %s\n",
					manual.Round(100*time.Microsecond), yes(r.load.failed == 0 && r.load.longestGap <= 2*manual), r.load.failed, r.load.longestGap.Round(100*time.Microsecond))
			}
		}
	}
}

func yes(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}
