package main

// -snapshot mode: one plain etcd member is filled to -db-size, then
// snapshots are saved from it by etcdctl and by etcdvisor (plain, zstd,
// zstd+age), and restored by etcdutl and by etcdvisor, alternating, 5
// rounds each, each round in another order; the medians are compared.
//
//	go run ./bench -snapshot -db-size 64MiB

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
	"sync/atomic"
	"syscall"
	"time"

	"filippo.io/age"
	"github.com/dustin/go-humanize"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

const (
	snapRounds   = 5
	snapSettle   = 2 * time.Second
	snapValSize  = 64 << 10
	snapQuota    = "8589934592" // 8 GiB, so any sensible -db-size fits
	snapOpLimit  = 10 * time.Minute
	fillWorkers  = 4
	rssGoalKiB   = 64 << 10
	snapDataDesc = "64 KiB values, half random, half repetitive JSON"
)

// snapOp is one way of saving or restoring: argv for round r.
type snapOp struct {
	name string
	// argv returns the command and, for a save, the file it writes.
	argv func(r int) (args []string, file string)
}

// childRun is one timed run of a child process.
type childRun struct {
	secs   float64
	rssKiB int64 // peak RSS, from the child's rusage
}

func runSnapshot(o options) error {
	want, err := humanize.ParseBytes(o.dbSize)
	if err != nil || want < snapValSize {
		return fmt.Errorf("-db-size %q: want a size of at least 64KiB, like 256MiB (%v)", o.dbSize, err)
	}
	if o.timeout <= 0 {
		return errors.New("need -timeout > 0")
	}
	ctx, cancel := runContext(o)
	defer cancel()

	if err := checkExecutables(map[string]string{"-etcd": o.etcd, "-etcdvisor": o.etcdvisor, "-etcdctl": o.etcdctl, "-etcdutl": o.etcdutl}); err != nil {
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

	lay, err := newLayout(ctx, options{members: 1}, base)
	if err != nil {
		return err
	}
	t := target{name: "plain etcd", short: "plain", bin: o.etcd, start: startSnapshotMember}
	c, err := lay.start(ctx, t, filepath.Join(base, "member"))
	if err != nil {
		return err
	}
	defer c.kill()
	url := c.endpoints()

	start := time.Now()
	puts, err := fill(ctx, o.etcdctl, url, int64(want))
	if err != nil {
		return c.blame(fmt.Errorf("fill: %w", err))
	}
	// The last puts' batch reaches the file within etcd's 100ms backend
	// commit interval; read the size after it.
	if err := sleep(ctx, time.Second); err != nil {
		return err
	}
	dbSize, err := endpointDBSize(ctx, o.etcdctl, url)
	if err != nil {
		return c.blame(err)
	}
	logf("filled: %d puts of 64 KiB, DB %s (%d bytes) in %s", puts, humanize.IBytes(uint64(dbSize)), dbSize, time.Since(start).Round(time.Second))

	id, err := age.GenerateX25519Identity()
	if err != nil {
		return err
	}
	idFile := filepath.Join(base, "age-identity.txt")
	if err := os.WriteFile(idFile, []byte(fmt.Sprintf("# public key: %s\n%s\n", id.Recipient(), id)), 0o600); err != nil {
		return fmt.Errorf("write age identity: %w", err)
	}

	snaps := filepath.Join(base, "snaps")
	if err := os.MkdirAll(snaps, 0o700); err != nil {
		return err
	}
	visorSave := func(short string, ext string, extra ...string) func(int) ([]string, string) {
		return func(r int) ([]string, string) {
			name := filepath.Join(snaps, fmt.Sprintf("%s-%d", short, r))
			return append([]string{o.etcdvisor, "snapshot", "save", "--endpoints", url, name + ".db"}, extra...), name + ext
		}
	}
	saves := []snapOp{
		{"etcdctl", func(r int) ([]string, string) {
			f := filepath.Join(snaps, fmt.Sprintf("etcdctl-%d.db", r))
			return []string{o.etcdctl, "--endpoints", url, "snapshot", "save", f}, f
		}},
		{"etcdvisor plain", visorSave("plain", ".db")},
		{"etcdvisor zstd", visorSave("zstd", ".db.zst", "--compress")},
		{"etcdvisor zstd+age", visorSave("age", ".db.zst.age", "--compress", "--recipient", id.Recipient().String())},
	}
	saveRes := make([][]childRun, len(saves))
	kept := make([]string, len(saves)) // round 1's file of each, for restore
	sizes := make([]int64, len(saves))
	for r := 1; r <= snapRounds; r++ {
		for _, i := range roundOrder(len(saves), r) {
			op := saves[i]
			args, file := op.argv(r)
			settleDisk()
			s, err := timeChild(ctx, args)
			if err != nil {
				return c.blame(fmt.Errorf("save round %d, %s: %w", r, op.name, err))
			}
			st, err := os.Stat(file)
			if err != nil {
				return fmt.Errorf("save round %d, %s: %w", r, op.name, err)
			}
			logf("save %d/%d: %-20s %.2fs, %s, peak RSS %s", r, snapRounds, op.name, s.secs, humanize.IBytes(uint64(st.Size())), kib(s.rssKiB))
			saveRes[i] = append(saveRes[i], s)
			if r == 1 {
				kept[i], sizes[i] = file, st.Size()
				continue
			}
			// Round 1's files are kept for restore. The others go at
			// once, with their manifests, so every op starts with the same
			// files in the page cache: left until the round's end, they
			// made the last op of a round up to 1.7x slower at 1 GiB.
			stem, _, _ := strings.Cut(filepath.Base(file), ".")
			files, _ := filepath.Glob(filepath.Join(filepath.Dir(file), stem+".*"))
			for _, f := range files {
				os.Remove(f)
			}
		}
	}
	if err := c.stop(ctx); err != nil {
		return err
	}

	restoreDir := filepath.Join(base, "restore")
	visorRestore := func(file string, extra ...string) func(int) ([]string, string) {
		return func(r int) ([]string, string) {
			d := filepath.Join(restoreDir, fmt.Sprintf("etcdvisor-%d", r))
			return append([]string{o.etcdvisor, "snapshot", "restore", file, "--data-dir", d}, extra...), d
		}
	}
	restores := []snapOp{
		{"etcdutl", func(r int) ([]string, string) {
			d := filepath.Join(restoreDir, fmt.Sprintf("etcdutl-%d", r))
			return []string{o.etcdutl, "snapshot", "restore", kept[0], "--data-dir", d}, d
		}},
		{"etcdvisor plain", visorRestore(kept[1])},
		{"etcdvisor zstd+age", visorRestore(kept[3], "--identity", idFile)},
	}
	restoreRes := make([][]childRun, len(restores))
	for r := 1; r <= snapRounds; r++ {
		for _, i := range roundOrder(len(restores), r) {
			op := restores[i]
			args, dir := op.argv(r)
			settleDisk()
			s, err := timeChild(ctx, args)
			if err != nil {
				return fmt.Errorf("restore round %d, %s: %w", r, op.name, err)
			}
			// The restored DB is the snapshot's, without etcd's 32-byte trailer.
			st, err := os.Stat(filepath.Join(dir, "member", "snap", "db"))
			if err != nil {
				return fmt.Errorf("restore round %d, %s: %w", r, op.name, err)
			}
			logf("restore %d/%d: %-20s %.2fs, db %s, peak RSS %s", r, snapRounds, op.name, s.secs, humanize.IBytes(uint64(st.Size())), kib(s.rssKiB))
			restoreRes[i] = append(restoreRes[i], s)
			if err := os.RemoveAll(dir); err != nil {
				return err
			}
		}
	}

	disk := parent + " (" + fsInfo(parent) + ")"
	printSnapshotTable(os.Stdout, dbSize, disk, versions, saves, saveRes, sizes, restores, restoreRes)
	return nil
}

// startSnapshotMember is startPlain with a quota that fits any -db-size.
func startSnapshotMember(bin string, m member) (*proc, error) {
	args := plainFlags(m)
	i := slices.Index(args, "--quota-backend-bytes")
	args[i+1] = snapQuota
	p, err := startProc("plain etcd "+m.name, bin, args...)
	if err != nil {
		return nil, err
	}
	p.endpoint = m.client
	p.sigtermIsClean = true
	p.ready = func(ctx context.Context) error { return probeHealth(ctx, m.probe, m.client+"/health") }
	return p, nil
}

// fill puts 64 KiB values under new keys until the DB is at least want
// bytes: even keys get random bytes (incompressible), odd keys repetitive
// JSON (compressible), so zstd has half of the DB to work on. It returns
// the number of puts.
func fill(ctx context.Context, etcdctl, url string, want int64) (int, error) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{url}, DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return 0, err
	}
	defer cli.Close()
	n := 0
	for range 50 {
		size, err := endpointDBSize(ctx, etcdctl, url)
		if err != nil {
			return n, err
		}
		if size >= want {
			return n, nil
		}
		more := int((want-size)/snapValSize) + 1
		if err := putValues(ctx, cli, n, n+more); err != nil {
			return n, err
		}
		n += more
	}
	return n, fmt.Errorf("DB still under %d bytes after %d puts", want, n)
}

// putValues puts keys from..to-1 with fillWorkers clients in parallel.
func putValues(ctx context.Context, cli *clientv3.Client, from, to int) error {
	next := atomic.Int64{}
	next.Store(int64(from))
	errs := make([]error, fillWorkers)
	var wg sync.WaitGroup
	for w := range fillWorkers {
		wg.Go(func() {
			buf := make([]byte, snapValSize)
			for {
				i := int(next.Add(1) - 1)
				if i >= to || ctx.Err() != nil {
					return
				}
				snapValue(buf, i)
				pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				_, err := cli.Put(pctx, fmt.Sprintf("/bench/snapshot/%08d", i), string(buf))
				cancel()
				if err != nil {
					errs[w] = fmt.Errorf("put %d: %w", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return context.Cause(ctx)
}

// snapValue fills buf with value i: random for even i, else JSON lines.
func snapValue(buf []byte, i int) {
	if i%2 == 0 {
		rand.Read(buf)
		return
	}
	b := buf[:0]
	for line := 0; len(b) < len(buf); line++ {
		b = fmt.Appendf(b, `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"bench-%08d","namespace":"default"},"data":{"line":"%06d"}}`+"\n", i, line)
	}
	copy(buf, b) // b outgrew buf on the last line; buf keeps the first 64 KiB
}

// endpointDBSize asks etcdctl endpoint status for the member's dbSize.
func endpointDBSize(ctx context.Context, etcdctl, url string) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, etcdctl, "--endpoints", url, "endpoint", "status", "-w", "json").Output()
	if err != nil {
		return 0, fmt.Errorf("etcdctl endpoint status: %w", err)
	}
	return parseDBSize(out)
}

func parseDBSize(out []byte) (int64, error) {
	var st []struct {
		Status struct {
			DBSize int64 `json:"dbSize"`
		} `json:"Status"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		return 0, fmt.Errorf("etcdctl endpoint status: %w: %q", err, out)
	}
	if len(st) != 1 || st[0].Status.DBSize <= 0 {
		return 0, fmt.Errorf("etcdctl endpoint status: no dbSize in %q", out)
	}
	return st[0].Status.DBSize, nil
}

// timeChild runs args to completion in its own process group (killed on
// timeout, Ctrl-C, or our death) and returns its wall time and peak RSS.
func timeChild(ctx context.Context, args []string) (childRun, error) {
	ctx, cancel := context.WithTimeout(ctx, snapOpLimit)
	defer cancel()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	out := newTailBuffer(64 << 10)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = childAttr()
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	err := cmd.Run()
	secs := time.Since(start).Seconds()
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", err, context.Cause(ctx))
		}
		return childRun{}, fmt.Errorf("%s: %w\n--- last %d lines of its output ---\n%s", strings.Join(args, " "), err, tailLines, out.lastLines(tailLines))
	}
	ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		return childRun{}, errors.New("no rusage for the child")
	}
	return childRun{secs: secs, rssKiB: ru.Maxrss}, nil // KiB on Linux
}

// roundOrder is the order of n ops in round r (from 1): rotated by one
// each round, and reversed every other round, so no tool always runs
// first or always right after one particular tool.
func roundOrder(n, r int) []int {
	order := make([]int, n)
	for i := range order {
		order[i] = (i + r - 1) % n
	}
	if r%2 == 0 {
		slices.Reverse(order)
	}
	return order
}

// settleDisk starts every timed op from the same state: nothing of the
// previous op left to write back, and a moment for the filesystem's
// discards of deleted files. On this bench's VM, either one landing on
// the next op swung its time by a factor of two.
func settleDisk() {
	unix.Sync()
	time.Sleep(snapSettle)
}

func kib(k int64) string { return fmt.Sprintf("%.0f MiB", float64(k)/1024) }

// snapSummary is the median time and the highest peak RSS of one op.
func snapSummary(ss []childRun) (secs float64, rss int64) {
	var ts []float64
	for _, s := range ss {
		ts = append(ts, s.secs)
		rss = max(rss, s.rssKiB)
	}
	return median(ts), rss
}

func printSnapshotTable(w io.Writer, dbSize int64, disk, versions string, saves []snapOp, saveRes [][]childRun, sizes []int64, restores []snapOp, restoreRes [][]childRun) {
	row := func(a, b, c, d, e string) {
		fmt.Fprintln(w, strings.TrimRight(fmt.Sprintf("%-32s%-10s%-8s%-11s%s", a, b, c, d, e), " "))
	}
	fmt.Fprintf(w, "etcdvisor bench: snapshots of a %s DB (%s), disk %s\n", humanize.IBytes(uint64(dbSize)), snapDataDesc, disk)
	row("", "seconds", "MB/s", "peak RSS", "ratio vs etcdctl/etcdutl")
	mbps := func(s float64) string { return fmt.Sprintf("%.0f", float64(dbSize)/1e6/s) }

	saveSecs := make([]float64, len(saves))
	var visorRSS int64
	for i, op := range saves {
		s, rss := snapSummary(saveRes[i])
		saveSecs[i] = s
		if i > 0 {
			visorRSS = max(visorRSS, rss)
		}
		note := "(throughput; >1 is faster)"
		if i > 0 {
			note = ""
		}
		row("save  "+op.name, fmt.Sprintf("%.2f", s), mbps(s), kib(rss),
			fmt.Sprintf("%.2f %s", saveSecs[0]/s, note))
	}
	restoreSecs := make([]float64, len(restores))
	for i, op := range restores {
		s, rss := snapSummary(restoreRes[i])
		restoreSecs[i] = s
		note := "(time ratio; <1 is faster)"
		if i > 0 {
			note = ""
		}
		row("restore "+op.name, fmt.Sprintf("%.2f", s), mbps(s), kib(rss),
			fmt.Sprintf("%.2f %s", s/restoreSecs[0], note))
	}

	var fs []string
	for i, op := range saves {
		fs = append(fs, fmt.Sprintf("%s %s", op.name, humanize.IBytes(uint64(sizes[i]))))
	}
	fmt.Fprintf(w, "files: %s\n", strings.Join(fs, ", "))
	for _, set := range []struct {
		what string
		ops  []snapOp
		res  [][]childRun
	}{{"save", saves, saveRes}, {"restore", restores, restoreRes}} {
		var parts []string
		for i, op := range set.ops {
			var ts []string
			for _, s := range set.res[i] {
				ts = append(ts, fmt.Sprintf("%.2f", s.secs))
			}
			parts = append(parts, op.name+" "+strings.Join(ts, " "))
		}
		fmt.Fprintf(w, "%s rounds (s): %s\n", set.what, strings.Join(parts, " | "))
	}

	met := func(ok bool) string {
		if ok {
			return "met"
		}
		return "NOT MET"
	}
	plain, zage := saveSecs[0]/saveSecs[1], saveSecs[0]/saveSecs[3]
	rPlain, rAge := restoreSecs[1]/restoreSecs[0], restoreSecs[2]/restoreSecs[0]
	fmt.Fprintf(w, "goals: plain save >= 0.95x etcdctl: %s (%.2fx); zstd+age save >= 0.7x: %s (%.2fx);\n", met(plain >= 0.95), plain, met(zage >= 0.7), zage)
	fmt.Fprintf(w, "       restore faster than etcdutl: plain %s (%.2fx the time), zstd+age %s (%.2fx);\n", met(rPlain < 1), rPlain, met(rAge < 1), rAge)
	fmt.Fprintf(w, "       etcdvisor save peak RSS < 64 MiB: %s (highest %s)\n", met(visorRSS < rssGoalKiB), kib(visorRSS))
	fmt.Fprintf(w, "medians of %d rounds, each in another order, each op after a sync and a %s pause; peak RSS is the highest of the rounds (child's rusage); MB = 10^6 bytes of DB\n%s\n", snapRounds, snapSettle, versions)
}
