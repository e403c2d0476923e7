// Package e2e runs the real etcdvisor binary: real members on loopback
// ports, real sockets and files, real signals. It is skipped under -short.
package e2e

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/etcdvisor/etcdvisor/internal/freeport"
)

// etcdvisorBin is the binary under test, built once by TestMain.
var etcdvisorBin string

// etcdctlBin and etcdutlBin are the real etcd v3.7.3 tools, built by
// TestMain from tools/go.mod, to check etcdvisor's snapshots against.
var etcdctlBin, etcdutlBin string

// waitLimit bounds every wait for a process to do something. It is a
// failure bound, not a measurement: tests assert what happens, not when.
const waitLimit = 90 * time.Second

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("e2e: skipped under -short")
		os.Exit(0)
	}
	dir, err := os.MkdirTemp("", "etcdvisor-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// 0755 so tests that run the binary as another user can exec it.
	os.Chmod(dir, 0o755)
	etcdvisorBin = filepath.Join(dir, "etcdvisor")
	build := exec.Command("go", "build", "-o", etcdvisorBin, "./cmd/etcdvisor")
	build.Dir = ".."
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: build etcdvisor:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	if err := buildEtcdTools(dir); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// buildEtcdTools builds etcdctl and etcdutl, pinned in tools/go.mod, into dir.
func buildEtcdTools(dir string) error {
	etcdctlBin, etcdutlBin = filepath.Join(dir, "etcdctl"), filepath.Join(dir, "etcdutl")
	for _, tool := range [][2]string{{etcdctlBin, "go.etcd.io/etcd/etcdctl/v3"}, {etcdutlBin, "go.etcd.io/etcd/etcdutl/v3"}} {
		bin, pkg := tool[0], tool[1]
		build := exec.Command("go", "build", "-o", bin, pkg)
		build.Dir = "../tools"
		build.Stdout, build.Stderr = os.Stdout, os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("build %s: %w", pkg, err)
		}
	}
	return nil
}

// shortDir is a temp dir with a short path (unix socket paths are limited
// to 108 bytes), readable by other users, removed at cleanup.
func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ev")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// freeAddr returns a loopback host:port that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	return freeAddrOn(t, "127.0.0.1")
}

// freeAddrOn returns host:port on the given loopback address.
func freeAddrOn(t *testing.T, ip string) string {
	t.Helper()
	return freeport.TestAddr(t, ip)
}

// member describes one etcdvisor's config.
type member struct {
	name        string
	dir         string // holds the config file; data is dir/data
	clientURL   string
	peerURL     string
	metricsAddr string
	cluster     string // initial-cluster; empty: this member alone
	state       string // initial-cluster-state
	extra       string // more YAML appended under etcd:
	top         string // more YAML appended at top level, such as a snapshot: section
	pki         string // dir with ca.crt, server.*, peer.*: TLS on both transports
	endpoints   string // endpoints.file, if any
	// advertisePeerURL is the peer URL the others are told to use, when
	// it is not peerURL (a proxy in front of it); empty: peerURL.
	advertisePeerURL string
}

func newMember(t *testing.T, name string) *member {
	t.Helper()
	return &member{
		name:        name,
		dir:         shortDir(t),
		clientURL:   "http://" + freeAddr(t),
		peerURL:     "http://" + freeAddr(t),
		metricsAddr: freeAddr(t),
		state:       "new",
	}
}

func (m *member) dataDir() string    { return filepath.Join(m.dir, "data") }
func (m *member) socket() string     { return filepath.Join(m.dataDir(), "etcdvisor.sock") }
func (m *member) configPath() string { return filepath.Join(m.dir, "etcdvisor.yaml") }

// advertisedPeerURL is the peer URL the other members use to reach m.
func (m *member) advertisedPeerURL() string {
	if m.advertisePeerURL != "" {
		return m.advertisePeerURL
	}
	return m.peerURL
}

// writeConfig writes the member's config file and returns its path.
func (m *member) writeConfig(t *testing.T) string {
	t.Helper()
	tlsYAML := ""
	if m.pki != "" {
		tlsYAML = fmt.Sprintf(`  client-transport-security:
    cert-file: %[1]s/server.crt
    key-file: %[1]s/server.key
    trusted-ca-file: %[1]s/ca.crt
  peer-transport-security:
    cert-file: %[1]s/peer.crt
    key-file: %[1]s/peer.key
    trusted-ca-file: %[1]s/ca.crt
`, m.pki)
	}
	cfg := fmt.Sprintf(`log:
  level: info
metrics:
  listen: %s
endpoints:
  file: "%s"
etcd:
  name: %s
  data-dir: %s
  listen-client-urls: [%s]
  advertise-client-urls: [%s]
  listen-peer-urls: [%s]
  initial-advertise-peer-urls: [%s]
  initial-cluster: "%s"
  initial-cluster-state: %s
  insecure: %t
%s%s%s`, m.metricsAddr, m.endpoints, m.name, m.dataDir(), m.clientURL, m.clientURL, m.peerURL, m.advertisedPeerURL(), m.cluster, m.state,
		// Plain http between members: these tests run on loopback only.
		m.pki == "" && (strings.Contains(m.cluster, ",") || strings.Contains(m.top, "join:")), tlsYAML, m.extra, m.top)
	if err := os.WriteFile(m.configPath(), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return m.configPath()
}

// process is one running `etcdvisor run`.
type process struct {
	t      *testing.T
	cmd    *exec.Cmd
	stderr *syncBuffer
	notify *notifyListener
	done   chan struct{}
	err    error // set when done is closed
}

// runOpts describes one `etcdvisor run`.
type runOpts struct {
	args []string
	env  []string
	cred *syscall.Credential // run as this user; nil: as the test
	dir  string              // working directory; "": the test's
}

// startDaemon runs `etcdvisor run` with args and a NOTIFY_SOCKET the test
// listens on. The process is killed at cleanup if still running.
func startDaemon(t *testing.T, args []string, env ...string) *process {
	t.Helper()
	return startDaemonWith(t, runOpts{args: args, env: env})
}

func startDaemonWith(t *testing.T, o runOpts) *process {
	t.Helper()
	p := &process{t: t, stderr: &syncBuffer{}, notify: listenNotify(t), done: make(chan struct{})}
	p.cmd = exec.Command(etcdvisorBin, append([]string{"run"}, o.args...)...)
	p.cmd.Dir = o.dir
	p.cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+p.notify.path)
	p.cmd.Env = append(p.cmd.Env, o.env...)
	p.cmd.Stderr = p.stderr
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Credential: o.cred}
	if o.cred != nil {
		// The daemon's user must be able to send to the notify socket.
		os.Chmod(p.notify.path, 0o666)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start etcdvisor: %v", err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			if u := unlogged(p.stderr.String(), 20); u != "" {
				t.Logf("etcdvisor stderr, lines that are not log records:\n%s", u)
			}
			t.Logf("etcdvisor stderr (last 40 lines):\n%s", tail(p.stderr.String(), 40))
		}
	})
	return p
}

// waitReady waits for READY=1 on the notify socket; failing if the
// process exits first.
func (p *process) waitReady() {
	p.t.Helper()
	if err := p.notify.waitFor("READY=1", p.done); err != nil {
		p.t.Fatalf("waiting for READY=1: %v\nstderr:\n%s", err, tail(p.stderr.String(), 40))
	}
}

// exitCode waits for the process to exit and returns its exit code.
func (p *process) exitCode() int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(waitLimit):
		p.t.Fatalf("etcdvisor did not exit within %s", waitLimit)
	}
	var ee *exec.ExitError
	switch {
	case p.err == nil:
		return 0
	case errors.As(p.err, &ee):
		return ee.ExitCode()
	}
	p.t.Fatalf("wait: %v", p.err)
	return -1
}

// stop sends SIGTERM, as systemd does, and returns the exit code.
func (p *process) stop() int {
	p.t.Helper()
	return p.signal(syscall.SIGTERM)
}

// signal sends sig and returns the exit code.
func (p *process) signal(sig syscall.Signal) int {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("send %v: %v", sig, err)
	}
	return p.exitCode()
}

// runCLI runs an etcdvisor client command and returns its output and exit code.
func runCLI(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return runCLIAs(t, nil, "", args...)
}

// runCLIAs runs an etcdvisor command as another user (cred) in dir.
func runCLIAs(t *testing.T, cred *syscall.Credential, dir string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	cmd := exec.CommandContext(ctx, etcdvisorBin, args...)
	cmd.Dir = dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("run etcdvisor %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// notifyListener is the systemd side of the notify protocol: a datagram
// socket that records every message etcdvisor sends.
type notifyListener struct {
	path string
	conn *net.UnixConn

	mu   sync.Mutex
	msgs []string
	more chan struct{} // closed and replaced on every message
}

func listenNotify(t *testing.T) *notifyListener {
	t.Helper()
	n := &notifyListener{path: filepath.Join(shortDir(t), "notify.sock"), more: make(chan struct{})}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: n.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	n.conn = conn
	t.Cleanup(func() { conn.Close() })
	go func() {
		buf := make([]byte, 4096)
		for {
			k, err := conn.Read(buf)
			if err != nil {
				return
			}
			n.mu.Lock()
			n.msgs = append(n.msgs, string(buf[:k]))
			close(n.more)
			n.more = make(chan struct{})
			n.mu.Unlock()
		}
	}()
	return n
}

// messages returns every message received so far.
func (n *notifyListener) messages() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.msgs...)
}

// waitFor waits until a message contains want, the process exits (done),
// or waitLimit passes.
func (n *notifyListener) waitFor(want string, done <-chan struct{}) error {
	deadline := time.After(waitLimit)
	for seen := 0; ; {
		n.mu.Lock()
		msgs, more := n.msgs, n.more
		n.mu.Unlock()
		for ; seen < len(msgs); seen++ {
			if strings.Contains(msgs[seen], want) {
				return nil
			}
		}
		select {
		case <-more:
		case <-done:
			// The process may have sent it just before exiting.
			for _, m := range n.messages() {
				if strings.Contains(m, want) {
					return nil
				}
			}
			return fmt.Errorf("etcdvisor exited before sending %q", want)
		case <-deadline:
			return fmt.Errorf("no %q within %s; got %q", want, waitLimit, n.messages())
		}
	}
}

// httpGet fetches url and returns the status code and body.
func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// unlogged returns up to n lines of s that are not JSON log records: a
// panic, or the error etcdvisor printed as it exited.
func unlogged(s string, n int) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l != "" && !strings.HasPrefix(l, "{") && len(out) < n {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
