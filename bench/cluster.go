package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/etcdvisor/etcdvisor/internal/freeport"
)

// maxMembers bounds -members: members are named a, b, c... and listen on
// 127.0.0.1, 127.0.0.2, ..., and etcd advises against more than 7 anyway.
const maxMembers = 9

// member is one member's settings. Both targets are given the same ones,
// so only the way etcd is run differs between them.
type member struct {
	name, dir      string
	client, peer   string // URLs
	metrics        string // host:port of etcdvisor's metrics listener; plain etcd has none
	initialCluster string // name=peerURL,... of every member
	token          string // initial-cluster-token, new for every cluster
	pki            string // its certificates from etcdvisor pki bootstrap; "" for plain http
	// insecurePeers marks plain http between several members, which
	// etcdvisor refuses unless told it is meant.
	insecurePeers bool
	probe         *http.Client // reaches its health endpoints
}

// cert names one of the member's certificate files.
func (m member) cert(file string) string { return filepath.Join(m.pki, file) }

// layout is what every cluster of a run shares: how many members, their
// certificates, and how the bench reaches them.
type layout struct {
	members int
	pki     string       // etcdvisor pki bootstrap's output; "" without -tls
	probe   *http.Client // with -tls it trusts the CA and presents kube-apiserver's pair
	started int          // clusters started so far, to number their tokens
}

// newLayout makes the run's certificates once, with -tls: they name IPs,
// not ports, so they serve every cluster of the run.
func newLayout(ctx context.Context, o options, base string) (*layout, error) {
	l := &layout{members: o.members, probe: newProbeClient(nil)}
	if !o.tls {
		return l, nil
	}
	l.pki = filepath.Join(base, "pki")
	if err := bootstrapPKI(ctx, o.etcdvisor, l.pki, l.members); err != nil {
		return nil, err
	}
	cfg, err := clientTLS(l.clientFile("ca.crt"), l.clientFile("kube-apiserver-etcd-client.crt"), l.clientFile("kube-apiserver-etcd-client.key"))
	if err != nil {
		return nil, err
	}
	l.probe = newProbeClient(cfg)
	return l, nil
}

// clientFile names a file of the clients' side: the CA and kube-apiserver's
// pair, which the benchmark tool presents as kube-apiserver would.
func (l *layout) clientFile(name string) string { return filepath.Join(l.pki, name) }

func memberName(i int) string { return string(rune('a' + i)) }
func memberIP(i int) string   { return fmt.Sprintf("127.0.0.%d", i+1) }

// bootstrapPKI makes the certificates with etcdvisor's own command, as an
// operator would: a CA, kube-apiserver's client pair, and a server and a
// peer pair per member, valid for the member's IP.
func bootstrapPKI(ctx context.Context, bin, out string, members int) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	list := make([]string, members)
	for i := range list {
		list[i] = memberName(i) + "=" + memberIP(i)
	}
	cmd := exec.CommandContext(ctx, bin, "pki", "bootstrap", "--members", strings.Join(list, ","), "--out", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s pki bootstrap: %w\n%s", bin, err, b)
	}
	return nil
}

// clientTLS trusts only the cluster's CA and presents the given pair, as
// the members require client certificates.
func clientTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	ca, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("read CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("%s: no PEM certificate", caFile)
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load client pair: %w", err)
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}, nil
}

// newProbeClient never uses a proxy: all traffic stays on loopback.
func newProbeClient(cfg *tls.Config) *http.Client {
	return &http.Client{
		Timeout:   2 * time.Second,
		Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true, TLSClientConfig: cfg},
	}
}

// benchmarkTLSFlags are the benchmark tool's flags for the client side of
// TLS, none without -tls.
func (l *layout) benchmarkTLSFlags() []string {
	if l.pki == "" {
		return nil
	}
	return []string{
		"--cacert", l.clientFile("ca.crt"),
		"--cert", l.clientFile("kube-apiserver-etcd-client.crt"),
		"--key", l.clientFile("kube-apiserver-etcd-client.key"),
	}
}

// describe names the layout in the output's header.
func (l *layout) describe() string {
	sec := ""
	if l.pki != "" {
		sec = " TLS"
	}
	if l.members == 1 {
		return "single" + sec + " member"
	}
	return fmt.Sprintf("%d-member%s cluster", l.members, sec)
}

// plan lays out a new cluster under dir: names, data dirs, free ports on
// each member's IP, and a token of its own, so a member left over from an
// earlier cluster can never join this one.
func (l *layout) plan(dir string) ([]member, error) {
	scheme := "http"
	if l.pki != "" {
		scheme = "https"
	}
	l.started++
	ms := make([]member, l.members)
	peers := make([]string, l.members)
	for i := range ms {
		ip := memberIP(i)
		client, err1 := freeport.Port(ip)
		peer, err2 := freeport.Port(ip)
		metrics, err3 := freeport.Port("127.0.0.1")
		if err := errors.Join(err1, err2, err3); err != nil {
			return nil, err
		}
		m := member{
			name:          memberName(i),
			client:        fmt.Sprintf("%s://%s:%d", scheme, ip, client),
			peer:          fmt.Sprintf("%s://%s:%d", scheme, ip, peer),
			metrics:       fmt.Sprintf("127.0.0.1:%d", metrics),
			token:         fmt.Sprintf("bench-%d", l.started),
			insecurePeers: l.members > 1 && l.pki == "",
			probe:         l.probe,
		}
		m.dir = filepath.Join(dir, m.name)
		if l.pki != "" {
			m.pki = filepath.Join(l.pki, m.name, "pki")
		}
		ms[i], peers[i] = m, m.name+"="+m.peer
	}
	for i := range ms {
		ms[i].initialCluster = strings.Join(peers, ",")
	}
	return ms, nil
}

// start runs a new cluster of t under dir and waits until every member
// serves. All members start before any is waited for: none is ready until
// a quorum is up. On error nothing it started is left running.
func (l *layout) start(ctx context.Context, t target, dir string) (cluster, error) {
	ms, err := l.plan(dir)
	if err != nil {
		return nil, err
	}
	var c cluster
	ok := false
	defer func() {
		if !ok {
			c.kill()
		}
	}()
	for _, m := range ms {
		if err := os.MkdirAll(m.dir, 0o700); err != nil {
			return nil, fmt.Errorf("make member dir: %w", err)
		}
		p, err := t.start(t.bin, m)
		if err != nil {
			return nil, err
		}
		c = append(c, p)
	}
	if err := c.waitReady(ctx); err != nil {
		return nil, err
	}
	ok = true
	return c, nil
}

// cluster is the running members of one target.
type cluster []*proc

// endpoints is every member's client URL, for the benchmark tool.
func (c cluster) endpoints() string {
	urls := make([]string, len(c))
	for i, p := range c {
		urls[i] = p.endpoint
	}
	return strings.Join(urls, ",")
}

// exited returns a member that has exited, or nil.
func (c cluster) exited() *proc {
	for _, p := range c {
		if p.exited() {
			return p
		}
	}
	return nil
}

// running fails, with the member's own output, if any member has exited.
func (c cluster) running(during string) error {
	if p := c.exited(); p != nil {
		return p.failure("exited %s: %v", during, p.err)
	}
	return nil
}

// blame puts a member that has exited, with its output, before err: its
// death explains a failure that the load only sees as broken connections.
func (c cluster) blame(err error) error {
	if p := c.exited(); p != nil {
		return errors.Join(p.failure("exited: %v", p.err), err)
	}
	return err
}

func (c cluster) waitReady(ctx context.Context) error {
	for _, p := range c {
		if err := p.waitReady(ctx); err != nil {
			// A member that died keeps the others from a quorum, and its
			// output says why; the others' "not ready" would not.
			if q := c.exited(); q != nil && q != p {
				return q.failure("exited before the cluster was ready: %v", q.err)
			}
			return err
		}
	}
	return nil
}

// stop sends SIGTERM to every member at once, as a shutdown of all hosts
// would, then requires each to exit cleanly. One by one, the last members
// would shut down without a quorum, which is not what is measured here.
func (c cluster) stop(ctx context.Context) error {
	if err := c.running("before it was stopped"); err != nil {
		return err
	}
	for _, p := range c {
		if err := p.terminate(); err != nil {
			return err
		}
	}
	var errs []error
	for _, p := range c {
		errs = append(errs, p.awaitExit(ctx))
	}
	return errors.Join(errs...)
}

// kill ends every member; see proc.kill.
func (c cluster) kill() {
	for _, p := range c {
		p.kill()
	}
}

// cpuTicks sums utime+stime over the members, as a cluster's cost is
// that of all its processes.
func (c cluster) cpuTicks() (int64, error) {
	var sum int64
	for _, p := range c {
		t, err := cpuTicks(p.cmd.Process.Pid)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", p.name, err)
		}
		sum += t
	}
	return sum, nil
}
