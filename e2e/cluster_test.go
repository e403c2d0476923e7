package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdvisor/etcdvisor/internal/api"
)

// Cluster is a set of etcdvisor processes forming one etcd cluster on
// loopback: member i listens on 127.0.0.(i+1).
type Cluster struct {
	t       *testing.T
	tls     bool
	token   string
	Members []*member
	Procs   []*process
	PKI     string // `etcdvisor pki bootstrap` output, when TLS is on
}

type clusterOptions struct {
	members int
	spare   int
	tls     bool
	setup   func(i int, m *member)
}

// ClusterOption configures NewCluster.
type ClusterOption func(*clusterOptions)

// WithMembers sets the cluster size (default 3).
func WithMembers(n int) ClusterOption { return func(o *clusterOptions) { o.members = n } }

// WithSpareHosts reserves n more hosts (names and certificates) for
// members that join later: see Joiner.
func WithSpareHosts(n int) ClusterOption { return func(o *clusterOptions) { o.spare = n } }

// WithTLS turns on x509 for clients and peers, with certificates made by
// `etcdvisor pki bootstrap`.
func WithTLS() ClusterOption { return func(o *clusterOptions) { o.tls = true } }

// WithMemberSetup calls setup on member i once its addresses and dirs are
// chosen, before any config is written or etcdvisor started: to put its
// data dir on another filesystem, add config (extra, top), or have its
// peers reach it through a proxy (advertisePeerURL).
func WithMemberSetup(setup func(i int, m *member)) ClusterOption {
	return func(o *clusterOptions) { o.setup = setup }
}

// NewCluster bootstraps a cluster from a static initial-cluster, each
// member under its own etcdvisor, and waits until every one is ready.
func NewCluster(t *testing.T, opts ...ClusterOption) *Cluster {
	t.Helper()
	o := clusterOptions{members: 3}
	for _, opt := range opts {
		opt(&o)
	}
	c := &Cluster{t: t, tls: o.tls, token: "e2e-" + t.Name()}
	var initial, hosts []string
	for i := range o.members {
		ip := fmt.Sprintf("127.0.0.%d", i+1)
		m := &member{
			name:        string(rune('a' + i)),
			dir:         shortDir(t),
			clientURL:   "http://" + freeAddrOn(t, ip),
			peerURL:     "http://" + freeAddrOn(t, ip),
			metricsAddr: freeAddr(t),
			state:       "new",
			extra:       "  initial-cluster-token: " + c.token + "\n",
		}
		m.endpoints = filepath.Join(m.dir, "etcd-servers")
		if o.tls {
			m.clientURL = strings.Replace(m.clientURL, "http://", "https://", 1)
			m.peerURL = strings.Replace(m.peerURL, "http://", "https://", 1)
		}
		if o.setup != nil {
			o.setup(i, m)
		}
		c.Members = append(c.Members, m)
		initial = append(initial, m.name+"="+m.advertisedPeerURL())
		hosts = append(hosts, m.name+"="+ip)
	}
	for i := range o.spare {
		n := o.members + i
		hosts = append(hosts, fmt.Sprintf("%c=127.0.0.%d", 'a'+n, n+1))
	}
	if o.tls {
		c.PKI = filepath.Join(shortDir(t), "pki")
		if out, errOut, code := runCLI(t, "pki", "bootstrap", "--members", strings.Join(hosts, ","), "--out", c.PKI); code != 0 {
			t.Fatalf("pki bootstrap: exit %d\n%s\n%s", code, out, errOut)
		}
	}
	for _, m := range c.Members {
		m.cluster = strings.Join(initial, ",")
		if o.tls {
			m.pki = filepath.Join(c.PKI, m.name, "pki")
		}
		c.Procs = append(c.Procs, startDaemon(t, []string{"--config", m.writeConfig(t)}))
	}
	c.waitReady(c.Procs...)
	return c
}

func (c *Cluster) waitReady(procs ...*process) {
	c.t.Helper()
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Go(func() {
			if err := p.notify.waitFor("READY=1", p.done); err != nil {
				c.t.Errorf("waiting for READY=1: %v\n%s", err, tail(p.stderr.String(), 20))
			}
		})
	}
	wg.Wait()
	if c.t.Failed() {
		c.t.FailNow()
	}
}

// Joiner prepares host n (0-based over members and spare hosts, so n is
// at least the cluster's size) to join the running cluster through the
// endpoints of the given members, replacing the member named replaces if
// not "". It writes the config; Join starts it.
func (c *Cluster) Joiner(n int, replaces string, via ...int) *member {
	c.t.Helper()
	ip := fmt.Sprintf("127.0.0.%d", n+1)
	scheme := "http://"
	if c.tls {
		scheme = "https://"
	}
	m := &member{
		name:        string(rune('a' + n)),
		dir:         shortDir(c.t),
		clientURL:   scheme + freeAddrOn(c.t, ip),
		peerURL:     scheme + freeAddrOn(c.t, ip),
		metricsAddr: freeAddr(c.t),
		state:       "new",
		extra:       "  initial-cluster-token: " + c.token + "\n",
	}
	m.endpoints = filepath.Join(m.dir, "etcd-servers")
	if c.tls {
		m.pki = filepath.Join(c.PKI, m.name, "pki")
	}
	var eps []string
	for _, i := range via {
		eps = append(eps, c.Members[i].clientURL)
	}
	m.top = fmt.Sprintf("join:\n  endpoints: [%s]\n  replaces: %q\n", strings.Join(eps, ", "), replaces)
	m.writeConfig(c.t)
	return m
}

// Join starts m's etcdvisor and adds it to the cluster's members.
func (c *Cluster) Join(m *member) *process {
	c.t.Helper()
	p := startDaemon(c.t, []string{"--config", m.configPath()})
	c.Members = append(c.Members, m)
	c.Procs = append(c.Procs, p)
	return p
}

// Restart starts member i's etcdvisor again with the same config.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	c.Procs[i] = startDaemon(c.t, []string{"--config", c.Members[i].configPath()})
	c.waitReady(c.Procs[i])
}

// Client connects to the given members as kube-apiserver would: with the
// kube-apiserver-etcd-client pair when TLS is on.
func (c *Cluster) Client(members ...int) *clientv3.Client {
	c.t.Helper()
	var urls []string
	for _, i := range members {
		urls = append(urls, c.Members[i].clientURL)
	}
	var tlsCfg *tls.Config
	if c.PKI != "" {
		tlsCfg = c.tlsConfig(filepath.Join(c.PKI, "kube-apiserver-etcd-client.crt"), filepath.Join(c.PKI, "kube-apiserver-etcd-client.key"), filepath.Join(c.PKI, "ca.crt"))
	}
	return newClientTLS(c.t, urls, tlsCfg)
}

func (c *Cluster) tlsConfig(cert, key, ca string) *tls.Config {
	c.t.Helper()
	cfg, err := transport.TLSInfo{CertFile: cert, KeyFile: key, TrustedCAFile: ca}.ClientConfig()
	if err != nil {
		c.t.Fatal(err)
	}
	return cfg
}

func newClientTLS(t *testing.T, urls []string, tlsCfg *tls.Config) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: urls, TLS: tlsCfg, DialTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// Leader is the index of the member that reports itself leader.
func (c *Cluster) Leader() int {
	c.t.Helper()
	for i, m := range c.Members {
		if statusJSON(c.t, "--config", m.configPath()).IsLeader {
			return i
		}
	}
	c.t.Fatal("no member reports itself leader")
	return -1
}

// CheckHealthy asks member i's etcdvisor for the member list and checks
// that every member is there, healthy as seen from i, with one leader.
func (c *Cluster) CheckHealthy(i int) {
	c.t.Helper()
	out, errOut, code := runCLI(c.t, "member", "list", "-w", "json", "--config", c.Members[i].configPath())
	if code != 0 {
		c.t.Fatalf("member list: exit %d %s", code, errOut)
	}
	var ml api.MemberList
	if err := json.Unmarshal([]byte(out), &ml); err != nil {
		c.t.Fatal(err)
	}
	leaders := 0
	for _, m := range ml.Members {
		if !m.Healthy {
			c.t.Errorf("member %s unhealthy from %s: %s", m.Name, c.Members[i].name, m.Error)
		}
		if m.IsLeader {
			leaders++
		}
	}
	if len(ml.Members) != len(c.Members) || leaders != 1 {
		c.t.Errorf("member list: %d members, %d leaders; want %d and 1", len(ml.Members), leaders, len(c.Members))
	}
}

// Stop stops every running member with SIGTERM and checks each exits 0.
func (c *Cluster) Stop() {
	c.t.Helper()
	for i, p := range c.Procs {
		select {
		case <-p.done:
			continue
		default:
		}
		if code := p.stop(); code != 0 {
			c.t.Errorf("%s exited %d\n%s", c.Members[i].name, code, unlogged(p.stderr.String(), 20))
		}
	}
}

func TestStoppingTheLeaderHandsLeadershipToAFollower(t *testing.T) {
	c := NewCluster(t, WithMembers(3))
	leader := c.Leader()
	oldLeaderID := statusJSON(t, "--config", c.Members[leader].configPath()).MemberID

	// SIGTERM the leader: etcd's stop transfers leadership before it
	// closes, so the cluster does not wait out an election timeout.
	if code := c.Procs[leader].stop(); code != 0 {
		t.Fatalf("leader's etcdvisor exited %d", code)
	}
	if !strings.Contains(c.Procs[leader].stderr.String(), "leadership transfer finished") {
		t.Errorf("the stopped leader did not transfer leadership:\n%s", tail(c.Procs[leader].stderr.String(), 20))
	}
	// A follower learns of the new leader from its next heartbeat.
	follower := (leader + 1) % 3
	var st api.Status
	for deadline := time.Now().Add(waitLimit); ; time.Sleep(100 * time.Millisecond) {
		st = statusJSON(t, "--config", c.Members[follower].configPath())
		if st.LeaderID != "" && st.LeaderID != oldLeaderID {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the leader stopped, %s reports leader %q (old leader %s)", c.Members[follower].name, st.LeaderID, oldLeaderID)
		}
	}
	// The two remaining members are a quorum of three: writes go on.
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if _, err := c.Client(follower).Put(ctx, "after", "leader-stop"); err != nil {
		t.Errorf("put after the leader stopped: %v", err)
	}
	c.Stop()
}

func TestFiveMembersKeepServingAfterLosingTwo(t *testing.T) {
	c := NewCluster(t, WithMembers(5))
	// kill -9 two members: three of five are still a quorum.
	for _, i := range []int{1, 3} {
		c.Procs[i].cmd.Process.Kill()
		c.Procs[i].exitCode()
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	putEventually(ctx, t, c.Client(0, 2, 4), "/registry/k", "survived")
	for _, i := range []int{0, 2, 4} {
		resp, err := c.Client(i).Get(ctx, "/registry/k")
		if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "survived" {
			t.Errorf("linearizable get from %s: %v %v", c.Members[i].name, resp, err)
		}
	}
	c.Stop()
}
