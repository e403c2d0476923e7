// Command bench compares etcd members run by etcdvisor with the plain
// etcd v3.7.3 binary: same flags, same disk, same load, in one run, and
// prints the ratios.
//
//	go run ./bench -total 200000 -rounds 3          # one member, plain http
//	go run ./bench -members 3 -tls                  # 3 members, client and peer TLS
//
// With -tls, certificates come from etcdvisor pki bootstrap and the load
// presents kube-apiserver's client pair, as a Kubernetes control plane would.
//
// Throughput and p99 latency come from etcd's own benchmark tool (put,
// 256-byte values, sequential 8-byte keys). Rounds alternate plain,
// etcdvisor, plain, etcdvisor... so drift on a shared machine hits both
// alike, and the median of the rounds is reported. Idle CPU is read from
// /proc, so this runs on Linux only.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	valSize      = 256
	keySize      = 8
	readyTimeout = 60 * time.Second
	stopTimeout  = 30 * time.Second
	// settle lets start-up work (first compaction check, lease and
	// leadership housekeeping, GC after start) pass before idle is measured.
	settle      = 5 * time.Second
	tailLines   = 20
	probePeriod = 100 * time.Millisecond
)

type options struct {
	etcd, etcdvisor, benchmark string
	total, rounds, clients     int
	members                    int
	tls                        bool
	idle, timeout              time.Duration
	dir                        string
	// -snapshot mode (snapshot.go)
	snapshot         bool
	dbSize           string
	etcdctl, etcdutl string
	// -starvation mode (starvation.go)
	starvation bool
	// -membership mode (membership.go)
	membership bool
	dbSizes    string
}

func main() {
	var o options
	flag.StringVar(&o.etcd, "etcd", "bin/etcd", "plain etcd v3.7.3 binary (cd tools && go build -o ../bin/etcd go.etcd.io/etcd/server/v3)")
	flag.StringVar(&o.etcdvisor, "etcdvisor", "bin/etcdvisor", "etcdvisor binary (go build -o bin/etcdvisor ./cmd/etcdvisor)")
	flag.StringVar(&o.benchmark, "benchmark", "bin/benchmark", "etcd's benchmark tool (cd tools && go build -o ../bin/benchmark go.etcd.io/etcd/v3/tools/benchmark)")
	flag.IntVar(&o.total, "total", 200000, "puts per round and target (a warm-up of a tenth of this runs first, not counted)")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds; each runs plain etcd then etcdvisor, and the median is reported")
	flag.IntVar(&o.clients, "clients", 100, "benchmark clients, and as many gRPC connections")
	flag.IntVar(&o.members, "members", 1, fmt.Sprintf("members per cluster, on 127.0.0.1, 127.0.0.2, ... (1 to %d)", maxMembers))
	flag.BoolVar(&o.tls, "tls", false, "client and peer TLS with certificate auth (from etcdvisor pki bootstrap); the load presents kube-apiserver's client pair")
	flag.DurationVar(&o.idle, "idle", 30*time.Second, "idle CPU window per target (after a 5s settle)")
	flag.DurationVar(&o.timeout, "timeout", 20*time.Minute, "limit for the whole run")
	flag.StringVar(&o.dir, "dir", "", "where data dirs go, the same disk for both targets (default /var/tmp, else the working dir)")
	flag.BoolVar(&o.snapshot, "snapshot", false, "instead: compare snapshot save and restore of etcdctl/etcdutl and etcdvisor on one plain etcd member")
	flag.StringVar(&o.dbSize, "db-size", "256MiB", "with -snapshot: fill the member's DB to at least this size")
	flag.StringVar(&o.etcdctl, "etcdctl", "bin/etcdctl", "with -snapshot: etcdctl v3.7.3 (cd tools && go build -o ../bin/etcdctl go.etcd.io/etcd/etcdctl/v3)")
	flag.StringVar(&o.etcdutl, "etcdutl", "bin/etcdutl", "with -snapshot: etcdutl v3.7.3 (cd tools && go build -o ../bin/etcdutl go.etcd.io/etcd/etcdutl/v3)")
	flag.BoolVar(&o.starvation, "starvation", false, "instead: slow the leader's fsyncs (200ms, 500ms) in 3-member clusters of plain etcd and of etcdvisor with the leader move off and on, under a steady write load (needs root: FUSE)")
	flag.BoolVar(&o.membership, "membership", false, "instead: time a member replacement at each -db-sizes, and compare client-visible unavailability of etcdvisor's rolling restart with a manual one of plain etcd")
	flag.StringVar(&o.dbSizes, "db-sizes", "100MiB,1GiB", "with -membership: DB sizes to replace a member at")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "bench: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}
	runMode := run
	if o.snapshot {
		runMode = runSnapshot
	}
	if o.starvation {
		runMode = runStarvation
	}
	if o.membership {
		runMode = runMembership
	}
	if err := runMode(o); err != nil {
		fmt.Fprintln(os.Stderr, "bench: FAILED:", err)
		os.Exit(1)
	}
}

// target is one way to run a member: plain etcd or etcdvisor.
type target struct {
	name  string // as printed
	short string // in dir names
	bin   string
	// start launches one member without waiting for it; the proc's ready
	// probe tells when it serves.
	start func(bin string, m member) (*proc, error)
}

type result struct {
	rps float64
	p99 time.Duration
}

func run(o options) error {
	if o.total < 10 || o.rounds < 1 || o.clients < 1 || o.members < 1 || o.members > maxMembers || o.idle <= 0 || o.timeout <= 0 {
		return fmt.Errorf("need -total >= 10, -rounds >= 1, -clients >= 1, -members 1 to %d, -idle > 0, -timeout > 0", maxMembers)
	}
	ctx, cancel := runContext(o)
	defer cancel()

	if err := checkExecutables(map[string]string{"-etcd": o.etcd, "-etcdvisor": o.etcdvisor, "-benchmark": o.benchmark}); err != nil {
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
	lay, err := newLayout(ctx, o, base)
	if err != nil {
		return err
	}

	targets := []target{
		{name: "plain etcd", short: "plain", bin: o.etcd, start: startPlain},
		{name: "etcdvisor", short: "etcdvisor", bin: o.etcdvisor, start: startEtcdvisor},
	}

	idle := make([]float64, len(targets))
	for i, t := range targets {
		if idle[i], err = idleCPU(ctx, lay, t, filepath.Join(base, "idle-"+t.short), o.idle, hz); err != nil {
			return fmt.Errorf("idle CPU of %s: %w", t.name, err)
		}
		logf("idle: %s %.2f%% of one core over %s", t.name, idle[i], o.idle)
	}

	results := make([][]result, len(targets))
	for r := 1; r <= o.rounds; r++ {
		for i, t := range targets {
			dir := filepath.Join(base, fmt.Sprintf("round%d-%s", r, t.short))
			res, err := measureRound(ctx, o, lay, t, dir)
			if err != nil {
				return fmt.Errorf("round %d, %s: %w", r, t.name, err)
			}
			logf("round %d/%d: %-10s %s puts/s, p99 %s", r, o.rounds, t.name, comma(res.rps), ms(res.p99))
			results[i] = append(results[i], res)
		}
	}

	disk := parent + " (" + fsInfo(parent) + ")"
	printTable(os.Stdout, o, lay.describe(), disk, versions, hzNote, hz, results, idle)
	return nil
}

// runContext ends at -timeout, or on Ctrl-C or SIGTERM; each mode's defers
// then kill what it started. Children run in their own process group, so
// the terminal's SIGINT reaches only the bench, which decides how they end.
func runContext(o options) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeoutCause(context.Background(), o.timeout,
		fmt.Errorf("the whole run took longer than -timeout %s", o.timeout))
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	return ctx, func() { stop(); cancel() }
}

// measureRound runs one target's cluster on fresh data dirs: start, warm
// up, measure, stop with SIGTERM and check clean exits.
func measureRound(ctx context.Context, o options, lay *layout, t target, dir string) (result, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return result{}, fmt.Errorf("make round dir: %w", err)
	}
	defer os.RemoveAll(dir)
	c, err := lay.start(ctx, t, dir)
	if err != nil {
		return result{}, err
	}
	defer c.kill()
	conn := append([]string{"--endpoints=" + c.endpoints()}, lay.benchmarkTLSFlags()...)
	// The warm-up fills connections, the backend's page cache and the Go
	// heap, so the counted run does not measure start-up.
	if _, err := runBenchmark(ctx, o.benchmark, conn, o.clients, o.total/10); err != nil {
		return result{}, c.blame(fmt.Errorf("warm-up: %w", err))
	}
	res, err := runBenchmark(ctx, o.benchmark, conn, o.clients, o.total)
	if err != nil {
		return result{}, c.blame(err)
	}
	if err := c.running("during the benchmark"); err != nil {
		return result{}, err
	}
	if err := c.stop(ctx); err != nil {
		return result{}, err
	}
	return res, nil
}

// ---- targets ----

// startPlain starts the plain etcd binary with the flags etcdvisor's
// config below translates to; it is ready when GET /health reports true.
func startPlain(bin string, m member) (*proc, error) {
	p, err := startProc("plain etcd "+m.name, bin, plainFlags(m)...)
	if err != nil {
		return nil, err
	}
	p.endpoint = m.client
	// etcd's SIGTERM handler closes the server, then re-raises the signal
	// on itself (pkg/osutil.HandleInterrupts), so a clean stop of plain
	// etcd ends in "terminated by SIGTERM", never exit status 0.
	p.sigtermIsClean = true
	p.ready = func(ctx context.Context) error { return probeHealth(ctx, m.probe, m.client+"/health") }
	return p, nil
}

func plainFlags(m member) []string {
	args := []string{
		"--name", m.name,
		"--data-dir", filepath.Join(m.dir, "data"),
		"--listen-client-urls", m.client,
		"--advertise-client-urls", m.client,
		"--listen-peer-urls", m.peer,
		"--initial-advertise-peer-urls", m.peer,
		"--initial-cluster", m.initialCluster,
		"--initial-cluster-token", m.token,
		"--initial-cluster-state", "new",
		"--heartbeat-interval", "100",
		"--election-timeout", "1000",
		"--snapshot-count", "10000",
		"--quota-backend-bytes", "2147483648",
		"--log-level", "warn",
	}
	if m.pki == "" {
		return args
	}
	return append(args,
		"--cert-file", m.cert("server.crt"),
		"--key-file", m.cert("server.key"),
		"--trusted-ca-file", m.cert("ca.crt"),
		"--client-cert-auth",
		"--peer-cert-file", m.cert("peer.crt"),
		"--peer-key-file", m.cert("peer.key"),
		"--peer-trusted-ca-file", m.cert("ca.crt"),
		"--peer-client-cert-auth",
	)
}

// startEtcdvisor writes a config with the same etcd settings as startPlain
// and runs etcdvisor from it; it is ready when its /readyz (a linearizable
// read through the embedded member) answers 200.
func startEtcdvisor(bin string, m member) (*proc, error) {
	cfgPath := filepath.Join(m.dir, "etcdvisor.yaml")
	if err := os.WriteFile(cfgPath, []byte(etcdvisorConfig(m)), 0o600); err != nil {
		return nil, fmt.Errorf("write etcdvisor config: %w", err)
	}
	p, err := startProc("etcdvisor "+m.name, bin, "run", "--config", cfgPath)
	if err != nil {
		return nil, err
	}
	p.endpoint = m.client
	p.ready = func(ctx context.Context) error { return probeReadyz(ctx, m.probe, "http://"+m.metrics+"/readyz") }
	return p, nil
}

func etcdvisorConfig(m member) string {
	var b strings.Builder
	fmt.Fprintf(&b, `log: {level: warn}
control: {socket: %q}
metrics: {listen: %q}
etcd:
  name: %q
  data-dir: %q
  listen-client-urls: [%q]
  advertise-client-urls: [%q]
  listen-peer-urls: [%q]
  initial-advertise-peer-urls: [%q]
  initial-cluster: %q
  initial-cluster-state: new
  initial-cluster-token: %q
  heartbeat-interval: 100ms
  election-timeout: 1s
  snapshot-count: 10000
  quota-backend-bytes: 2GiB
`, filepath.Join(m.dir, "etcdvisor.sock"), m.metrics, m.name, filepath.Join(m.dir, "data"),
		m.client, m.client, m.peer, m.peer, m.initialCluster, m.token)
	if m.insecurePeers {
		b.WriteString("  insecure: true\n")
	}
	if m.pki != "" {
		for _, tr := range []struct{ key, pair string }{{"client-transport-security", "server"}, {"peer-transport-security", "peer"}} {
			fmt.Fprintf(&b, "  %s: {cert-file: %q, key-file: %q, trusted-ca-file: %q, client-cert-auth: true}\n",
				tr.key, m.cert(tr.pair+".crt"), m.cert(tr.pair+".key"), m.cert("ca.crt"))
		}
	}
	return b.String()
}

func probeHealth(ctx context.Context, hc *http.Client, url string) error {
	body, code, err := get(ctx, hc, url)
	if err != nil {
		return err
	}
	var h struct {
		Health string `json:"health"`
		Reason string `json:"reason"`
	}
	if err := json.Unmarshal(body, &h); err != nil {
		return fmt.Errorf("GET %s: %d %q: %w", url, code, body, err)
	}
	if h.Health != "true" {
		return fmt.Errorf("GET %s: health %q, reason %q", url, h.Health, h.Reason)
	}
	return nil
}

func probeReadyz(ctx context.Context, hc *http.Client, url string) error {
	body, code, err := get(ctx, hc, url)
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return fmt.Errorf("GET %s: %d %s", url, code, strings.TrimSpace(string(body)))
	}
	return nil
}

func get(ctx context.Context, hc *http.Client, url string) ([]byte, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, 0, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return body, resp.StatusCode, err
}

// ---- processes ----

// proc is a started target. Its output is kept (the tail only) for error
// messages.
type proc struct {
	name     string
	cmd      *exec.Cmd
	out      *tailBuffer
	endpoint string                      // client URL for the benchmark tool
	ready    func(context.Context) error // returns nil once it serves
	done     chan struct{}               // closed when the process has exited
	err      error                       // from Wait; read only after done
	// sigtermIsClean accepts death by the SIGTERM that terminate sends as a
	// clean exit, besides exit status 0.
	sigtermIsClean bool
}

// childAttr puts a child in its own process group, so it can be killed
// with anything it spawns, and makes the kernel kill it if this process
// dies without running its defers (SIGKILL, a crash).
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

func startProc(name, bin string, args ...string) (*proc, error) {
	p := &proc{name: name, out: newTailBuffer(64 << 10), done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = childAttr()
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s (%s): %w", name, bin, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// failure is an error about p with the last lines of its output, which
// say why far better than an exit status does.
func (p *proc) failure(format string, args ...any) error {
	return fmt.Errorf("%s (pid %d) %s\n--- last %d lines of its stderr ---\n%s",
		p.name, p.cmd.Process.Pid, fmt.Sprintf(format, args...), tailLines, p.out.lastLines(tailLines))
}

func (p *proc) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	t := time.NewTicker(probePeriod)
	defer t.Stop()
	for {
		lastErr := p.ready(ctx)
		if lastErr == nil {
			return nil
		}
		select {
		case <-p.done:
			return p.failure("exited before it was ready: %v", p.err)
		case <-ctx.Done():
			return p.failure("not ready: %v (ready limit %s; last probe: %v)", context.Cause(ctx), readyTimeout, lastErr)
		case <-t.C:
		}
	}
}

// terminate sends SIGTERM, as systemd would; awaitExit then checks that
// the process ended cleanly.
func (p *proc) terminate() error {
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("SIGTERM %s: %w", p.name, err)
	}
	return nil
}

// awaitExit waits for the exit after terminate and requires a clean one:
// status 0 (or, for plain etcd, death by that SIGTERM after its shutdown
// ran).
func (p *proc) awaitExit(ctx context.Context) error {
	select {
	case <-p.done:
	case <-time.After(stopTimeout):
		p.kill()
		return p.failure("did not exit within %s of SIGTERM; killed", stopTimeout)
	case <-ctx.Done():
		p.kill()
		return fmt.Errorf("stopping %s: %w", p.name, context.Cause(ctx))
	}
	if p.err != nil && !(p.sigtermIsClean && diedOf(p.err, syscall.SIGTERM)) {
		return p.failure("exited with %v after SIGTERM (want exit status 0)", p.err)
	}
	return nil
}

// diedOf tells whether a Wait error says the process was killed by sig.
func diedOf(err error, sig syscall.Signal) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == sig
}

// kill ends p's process group at once. It is safe to call more than once
// and after the process has exited; every start is paired with a deferred
// kill so nothing outlives the run.
func (p *proc) kill() {
	if p.exited() {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
	}
}

// tailBuffer keeps the last max bytes written to it: a target's log over a
// long run would not fit, and only its end explains a failure.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func newTailBuffer(max int) *tailBuffer { return &tailBuffer{max: max} }

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.max; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) lastLines(n int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	lines := strings.Split(strings.TrimRight(string(b.buf), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// ---- load ----

// runBenchmark runs etcd's benchmark tool with conn (its --endpoints and
// TLS flags) and parses its summary. It is killed if ctx ends (timeout or
// Ctrl-C).
func runBenchmark(ctx context.Context, bin string, conn []string, clients, total int) (result, error) {
	args := slices.Concat(conn, []string{
		fmt.Sprintf("--conns=%d", clients),
		fmt.Sprintf("--clients=%d", clients),
		"put",
		fmt.Sprintf("--key-size=%d", keySize),
		"--sequential-keys",
		fmt.Sprintf("--total=%d", total),
		fmt.Sprintf("--val-size=%d", valSize),
	})
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout bytes.Buffer
	// stderr carries a progress bar and gRPC's log lines; keep its end only.
	stderr := newTailBuffer(64 << 10)
	cmd.Stdout, cmd.Stderr = &stdout, stderr
	cmd.SysProcAttr = childAttr()
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return result{}, fmt.Errorf("benchmark tool stopped: %w", context.Cause(ctx))
		}
		return result{}, fmt.Errorf("benchmark tool: %w\n--- last %d lines of its stderr ---\n%s\n--- its stdout ---\n%s",
			err, tailLines, stderr.lastLines(tailLines), stdout.String())
	}
	res, err := parseBenchmark(stdout.String())
	if err != nil {
		return result{}, fmt.Errorf("benchmark output: %w\n--- its stdout ---\n%s", err, stdout.String())
	}
	return res, nil
}

// parseBenchmark reads Requests/sec and the 99% latency from the summary
// that etcd's benchmark tool prints (go.etcd.io/etcd/pkg/v3/report). The
// tool exits 0 even when requests fail and then only lists the errors, so
// an error distribution is treated as a failed run: a rate over fewer,
// failed puts would not compare.
func parseBenchmark(out string) (result, error) {
	var res result
	var haveRPS, haveP99 bool
	var errLines []string
	inErrors := false
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "Error distribution:":
			inErrors = true
		case inErrors && line != "":
			errLines = append(errLines, line)
		case strings.HasPrefix(line, "Requests/sec:"):
			v, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimPrefix(line, "Requests/sec:")), 64)
			if err != nil {
				return result{}, fmt.Errorf("parse %q: %w", line, err)
			}
			res.rps, haveRPS = v, true
		case strings.HasPrefix(line, "99% in "):
			// "99% in 0.0344 secs." (not "99.9% in", which this prefix excludes)
			s := strings.TrimSuffix(strings.TrimPrefix(line, "99% in "), " secs.")
			v, err := strconv.ParseFloat(s, 64)
			if err != nil {
				return result{}, fmt.Errorf("parse %q: %w", line, err)
			}
			res.p99, haveP99 = time.Duration(v*float64(time.Second)), true
		}
	}
	if err := sc.Err(); err != nil {
		return result{}, err
	}
	switch {
	case len(errLines) > 0:
		return result{}, fmt.Errorf("requests failed: %s", strings.Join(errLines, "; "))
	case !haveRPS:
		return result{}, errors.New(`no "Requests/sec:" line`)
	case !haveP99:
		return result{}, errors.New(`no "99% in ... secs." latency line`)
	case res.rps <= 0:
		return result{}, fmt.Errorf("requests/sec is %v", res.rps)
	}
	return res, nil
}

// ---- idle CPU ----

// idleCPU starts t's cluster once on fresh data dirs and returns the CPU
// its processes use together with no load, in percent of one core, from
// utime+stime in /proc.
func idleCPU(ctx context.Context, lay *layout, t target, dir string, window time.Duration, hz float64) (float64, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return 0, fmt.Errorf("make idle dir: %w", err)
	}
	defer os.RemoveAll(dir)
	c, err := lay.start(ctx, t, dir)
	if err != nil {
		return 0, err
	}
	defer c.kill()
	if err := sleep(ctx, settle); err != nil {
		return 0, err
	}
	t0, err := c.cpuTicks()
	if err != nil {
		return 0, err
	}
	start := time.Now()
	if err := sleep(ctx, window); err != nil {
		return 0, err
	}
	// A member that died would show as a failed /proc read, not why.
	if err := c.running("while idle"); err != nil {
		return 0, err
	}
	t1, err := c.cpuTicks()
	if err != nil {
		return 0, err
	}
	// The real elapsed time, not the nominal window: a loaded machine
	// wakes us late.
	elapsed := time.Since(start).Seconds()
	if err := c.stop(ctx); err != nil {
		return 0, err
	}
	return float64(t1-t0) / hz / elapsed * 100, nil
}

// cpuTicks returns utime+stime of pid in clock ticks (fields 14 and 15 of
// /proc/PID/stat). Fields are counted after the last ')', since the
// command name in field 2 may hold spaces and parentheses.
func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read CPU time: %w", err)
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no ')' in %q", pid, s)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state), so field N is f[N-3].
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: only %d fields after the name", pid, len(f))
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return utime + stime, nil
}

// clockTicks asks getconf once for the unit of /proc's CPU times; Linux
// uses 100 on every common architecture, so that is the fallback.
func clockTicks(ctx context.Context) (float64, string) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "getconf", "CLK_TCK").Output()
	if err == nil {
		if v, perr := strconv.Atoi(strings.TrimSpace(string(out))); perr == nil && v > 0 {
			return float64(v), fmt.Sprintf("%d ticks/s (getconf CLK_TCK)", v)
		}
	}
	return 100, fmt.Sprintf("100 ticks/s (assumed: getconf CLK_TCK failed: %v)", err)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// ---- setup ----

// checkVersions makes sure both targets run the same etcd: a ratio between
// two etcd versions would measure etcd, not etcdvisor.
func checkVersions(ctx context.Context, o options) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	plainOut, err := exec.CommandContext(ctx, o.etcd, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("%s --version: %w", o.etcd, err)
	}
	visorOut, err := exec.CommandContext(ctx, o.etcdvisor, "version").Output()
	if err != nil {
		return "", fmt.Errorf("%s version: %w", o.etcdvisor, err)
	}
	plain := lineValue(string(plainOut), "etcd Version:")
	embedded := lineValue(string(visorOut), "etcd ")
	if plain == "" || embedded == "" {
		// Unknown output formats are not worth failing the run for; say so.
		return fmt.Sprintf("versions: could not read (plain %q, embedded %q)", plain, embedded), nil
	}
	if plain != embedded {
		return "", fmt.Errorf("plain etcd is %s but etcdvisor embeds etcd %s; build both from the same etcd", plain, embedded)
	}
	return fmt.Sprintf("etcd %s in both (%s; %s embeds it)", plain, o.etcd, o.etcdvisor), nil
}

// lineValue returns what follows prefix on the first line starting with it.
func lineValue(out, prefix string) string {
	for line := range strings.Lines(out) {
		if v, ok := strings.CutPrefix(line, prefix); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// makeBaseDir makes the one temporary dir under which every data dir of
// the run lives, so both targets write to the same disk. /var/tmp is the
// default because /tmp is often tmpfs, where fsync costs nothing.
func makeBaseDir(dir string) (base, parent string, err error) {
	parent = dir
	if parent == "" {
		parent = "/var/tmp"
		if st, err := os.Stat(parent); err != nil || !st.IsDir() {
			if parent, err = os.Getwd(); err != nil {
				return "", "", fmt.Errorf("working dir: %w", err)
			}
		}
	}
	if parent, err = filepath.Abs(parent); err != nil {
		return "", "", err
	}
	base, err = os.MkdirTemp(parent, "etcdvisor-bench-")
	if err != nil {
		return "", "", fmt.Errorf("make a temp dir in %s: %w", parent, err)
	}
	return base, parent, nil
}

// fsInfo names the file system and device holding dir, from the longest
// mount point in /proc/self/mountinfo that contains it.
func fsInfo(dir string) string {
	if d, err := filepath.EvalSymlinks(dir); err == nil {
		dir = d
	}
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "file system unknown"
	}
	best, info := "", "file system unknown"
	for line := range strings.Lines(string(b)) {
		// ID parent major:minor root MOUNTPOINT options... - FSTYPE SOURCE superopts
		pre, post, ok := strings.Cut(line, " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 5 || len(g) < 2 {
			continue
		}
		mp := f[4]
		if dir != mp && mp != "/" && !strings.HasPrefix(dir, mp+"/") {
			continue
		}
		if len(mp) >= len(best) {
			best, info = mp, g[0]+" on "+g[1]
			if g[0] == "tmpfs" || g[0] == "ramfs" {
				info += "; WARNING: memory, not a disk, fsync is free"
			}
		}
	}
	return info
}

// ---- output ----

// printTable prints results and idle, indexed plain etcd then etcdvisor.
func printTable(w io.Writer, o options, layout, disk, versions, hzNote string, hz float64, results [][]result, idle []float64) {
	rps := make([][]float64, len(results))
	p99 := make([][]float64, len(results))
	for i := range results {
		for _, r := range results[i] {
			rps[i] = append(rps[i], r.rps)
			p99[i] = append(p99[i], r.p99.Seconds())
		}
	}
	rp, rv := median(rps[0]), median(rps[1])
	lp, lv := median(p99[0]), median(p99[1])
	row := func(a, b, c, d string) { fmt.Fprintf(w, "%-20s%-15s%-14s%s\n", a, b, c, d) }

	fmt.Fprintf(w, "etcdvisor bench: %s, %d-byte puts, %d clients, %d puts x %d rounds, disk %s\n",
		layout, valSize, o.clients, o.total, o.rounds, disk)
	row("", "plain etcd", "etcdvisor", "ratio (etcdvisor/plain)")
	row("puts/s (median)", comma(rp), comma(rv), fmt.Sprintf("%.3f", rv/rp))
	row("p99 latency", ms(secs(lp)), ms(secs(lv)), fmt.Sprintf("%.2f", lv/lp))
	row("idle CPU (1 core)", fmt.Sprintf("%.2f%%", idle[0]), fmt.Sprintf("%.2f%%", idle[1]),
		fmt.Sprintf("%+.2f points (etcdvisor's own)", idle[1]-idle[0]))
	fmt.Fprintf(w, "rounds: plain %s | etcdvisor %s\n", joinRPS(rps[0]), joinRPS(rps[1]))
	fmt.Fprintf(w, "p99s:   plain %s | etcdvisor %s\n", joinMS(p99[0]), joinMS(p99[1]))
	// One clock tick over the window is the smallest step idle CPU can
	// show; a difference of a tick or two is noise, not etcdvisor.
	summed := ""
	if o.members > 1 {
		summed = fmt.Sprintf(", summed over each target's %d processes", o.members)
	}
	fmt.Fprintf(w, "idle: %s window after %s settle%s, CPU time in %s, resolution %.2f points (1 tick)\n",
		o.idle, settle, summed, hzNote, 100/hz/o.idle.Seconds())
	fmt.Fprintf(w, "%s\n", versions)
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func secs(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond)) }

// comma formats a rate as a whole number with thousands separators.
func comma(v float64) string {
	s := strconv.FormatInt(int64(v+0.5), 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func joinRPS(xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = strconv.FormatInt(int64(x+0.5), 10)
	}
	return strings.Join(parts, " ")
}

func joinMS(xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = ms(secs(x))
	}
	return strings.Join(parts, " ")
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}

// checkExecutables fails early, naming the flag, when a tool the run needs
// is missing, rather than minutes in.
func checkExecutables(byFlag map[string]string) error {
	for flag, path := range byFlag {
		if st, err := os.Stat(path); err != nil || st.IsDir() {
			return fmt.Errorf("%s %s: not an executable file (see go run ./bench -h for how to build it): %v", flag, path, err)
		}
	}
	return nil
}
