package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestATLSClusterFormsAndEveryMemberServesTheSameData(t *testing.T) {
	c := NewCluster(t, WithMembers(3), WithTLS())
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()

	// A write through each member is read back from every other.
	for i := range c.Members {
		key := "/registry/configmaps/default/from-" + c.Members[i].name
		if _, err := c.Client(i).Put(ctx, key, "v"); err != nil {
			t.Fatalf("put through %s: %v", c.Members[i].name, err)
		}
		for j := range c.Members {
			resp, err := c.Client(j).Get(ctx, key)
			if err != nil || len(resp.Kvs) != 1 {
				t.Errorf("get %s from %s: %v %v", key, c.Members[j].name, resp, err)
			}
		}
	}

	// Everyone agrees on the members, all healthy, one leader.
	c.CheckHealthy(0)

	// etcd-servers and every member's endpoints file list the three https URLs.
	var want []string
	for _, m := range c.Members {
		want = append(want, m.clientURL)
	}
	servers, _, code := runCLI(t, "etcd-servers", "--config", c.Members[1].configPath())
	if code != 0 || !sameURLs(strings.TrimSpace(servers), want) {
		t.Errorf("etcd-servers: %q, want %v", servers, want)
	}
	// A member lists another's client URLs only once that one has
	// published them, so the file may first hold fewer and is rewritten.
	for _, m := range c.Members {
		got := waitForFile(t, m.endpoints, func(s string) bool { return sameURLs(strings.TrimSpace(s), want) })
		if !sameURLs(strings.TrimSpace(got), want) {
			t.Errorf("%s's endpoints file holds %q, want %v", m.name, got, want)
		}
	}
	haproxy, _, code := runCLI(t, "etcd-servers", "--format", "haproxy", "--config", c.Members[2].configPath())
	if code != 0 || strings.Count(haproxy, "    server ") != 3 {
		t.Errorf("haproxy stanza:\n%s", haproxy)
	}

	// Metrics: three voters, and the certificates' expiry.
	_, body := httpGet(t, "http://"+c.Members[0].metricsAddr+"/metrics")
	for _, want := range []string{
		`etcdvisor_cluster_members{role="voter"} 3`,
		`etcdvisor_cert_expiry_timestamp_seconds{file="` + filepath.Join(c.Members[0].pki, "peer.crt") + `",role="peer"}`,
		"etcdvisor_member_has_leader 1",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	c.Stop()
}

func TestOnlyAClientWithACertificateFromTheClusterCAGetsIn(t *testing.T) {
	c := NewCluster(t, WithMembers(1), WithTLS())
	url := []string{c.Members[0].clientURL}
	ca := filepath.Join(c.PKI, "ca.crt")

	// Another CA, and a client certificate it issued.
	other := filepath.Join(shortDir(t), "other")
	for _, args := range [][]string{
		{"pki", "ca", "--out", other},
		{"pki", "issue", "client", "intruder", "--ca", other},
	} {
		if _, errOut, code := runCLI(t, args...); code != 0 {
			t.Fatalf("%v: %s", args, errOut)
		}
	}
	tests := []struct {
		name      string
		cert, key string
		wantIn    bool
	}{
		{"no client certificate", "", "", false},
		{"a certificate from another CA", filepath.Join(other, "intruder.crt"), filepath.Join(other, "intruder.key"), false},
		{"kube-apiserver's certificate", filepath.Join(c.PKI, "kube-apiserver-etcd-client.crt"), filepath.Join(c.PKI, "kube-apiserver-etcd-client.key"), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := c.tlsConfig(tt.cert, tt.key, ca)
			cli, err := clientv3.New(clientv3.Config{Endpoints: url, TLS: cfg, DialTimeout: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer cli.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err = cli.Put(ctx, "/registry/secrets/kube-system/x", "y")
			if in := err == nil; in != tt.wantIn {
				t.Errorf("put succeeded: %v (err %v), want %v", in, err, tt.wantIn)
			}
		})
	}
	c.Stop()
}

func TestAKilledMemberRejoinsWithItsData(t *testing.T) {
	c := NewCluster(t, WithMembers(3), WithTLS())
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if _, err := c.Client(0, 1, 2).Put(ctx, "before", "kill"); err != nil {
		t.Fatal(err)
	}
	// kill -9 the leader: no leadership transfer, no clean close. The
	// other two elect a new leader; until then a write may time out, so
	// it is retried (it is idempotent) within the wait limit.
	killed := c.Leader()
	c.Procs[killed].cmd.Process.Kill()
	c.Procs[killed].exitCode()
	putEventually(ctx, t, c.Client((killed+1)%3, (killed+2)%3), "while", "down")
	c.Restart(killed)
	// Serializable reads answer from the member's own data: both keys
	// must be there, the second from catching up after the restart.
	for _, key := range []string{"before", "while"} {
		resp, err := c.Client(killed).Get(ctx, key, clientv3.WithSerializable())
		if err != nil || len(resp.Kvs) != 1 {
			t.Errorf("restarted member lacks %q: %v %v", key, resp, err)
		}
	}
	c.Stop()
}

func TestADaemonWithABadCertificateRefusesToStartAndNamesTheFile(t *testing.T) {
	c := NewCluster(t, WithMembers(1), WithTLS())
	c.Stop()
	m := c.Members[0]
	other := filepath.Join(shortDir(t), "other")
	if _, errOut, code := runCLI(t, "pki", "ca", "--out", other); code != 0 {
		t.Fatal(errOut)
	}
	peerCrt := filepath.Join(m.pki, "peer.crt")
	good, _ := os.ReadFile(peerCrt)
	tests := []struct {
		name   string
		break_ func()
		want   string
	}{
		{"a missing peer certificate", func() { os.Remove(peerCrt) }, peerCrt},
		{"a peer key from another pair", func() {
			os.WriteFile(peerCrt, good, 0o644)
			srv, _ := os.ReadFile(filepath.Join(m.pki, "server.key"))
			os.WriteFile(filepath.Join(m.pki, "peer.key"), srv, 0o600)
		}, "does not match"},
		{"a CA file from another CA", func() {
			ca, _ := os.ReadFile(filepath.Join(other, "ca.crt"))
			os.WriteFile(filepath.Join(m.pki, "ca.crt"), ca, 0o644)
		}, "ca.crt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.break_()
			p := startDaemon(t, []string{"--config", m.configPath()})
			if code := p.exitCode(); code == 0 {
				t.Fatal("started with a bad certificate")
			}
			got := p.stderr.String()
			if !strings.Contains(got, tt.want) {
				t.Errorf("stderr does not name %q:\n%s", tt.want, tail(got, 3))
			}
			t.Logf("refused: %s", tail(got, 1))
		})
	}
}

func TestADataDirOfAnotherClusterIsRefused(t *testing.T) {
	m := newMember(t, "a")
	m.extra = "  initial-cluster-token: first\n"
	cfg := m.writeConfig(t)
	p := startDaemon(t, []string{"--config", cfg})
	p.waitReady()
	p.stop()

	m.extra = "  initial-cluster-token: second\n"
	m.writeConfig(t)
	q := startDaemon(t, []string{"--config", cfg})
	if code := q.exitCode(); code == 0 {
		t.Fatal("started on the data dir of another cluster")
	}
	if got := q.stderr.String(); !strings.Contains(got, `initial-cluster-token "second" describe cluster`) {
		t.Errorf("stderr does not explain:\n%s", tail(got, 3))
	}
	// Nothing was wiped: the first config still starts.
	m.extra = "  initial-cluster-token: first\n"
	m.writeConfig(t)
	r := startDaemon(t, []string{"--config", cfg})
	r.waitReady()
	r.stop()
}

// putEventually retries an idempotent put until it succeeds or ctx ends:
// after a member dies, writes may time out until a new leader is elected.
func putEventually(ctx context.Context, t *testing.T, cli *clientv3.Client, key, val string) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		_, err := cli.Put(ctx, key, val)
		if err == nil {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("put %s: no success after %d attempts: %v", key, attempt, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func sameURLs(list string, want []string) bool {
	got := strings.Split(list, ",")
	if len(got) != len(want) {
		return false
	}
	seen := map[string]bool{}
	for _, u := range got {
		seen[u] = true
	}
	for _, u := range want {
		if !seen[u] {
			return false
		}
	}
	return true
}

// waitForFile returns path's content once it exists and done accepts it
// (the daemon writes it from its status loop), or the last content seen
// when waitLimit passes.
func waitForFile(t *testing.T, path string, done func(string) bool) string {
	t.Helper()
	for deadline := time.Now().Add(waitLimit); ; time.Sleep(50 * time.Millisecond) {
		b, err := os.ReadFile(path)
		if err == nil && done(string(b)) {
			return string(b)
		}
		if time.Now().After(deadline) {
			if err != nil {
				t.Fatalf("%s not written within %s", path, waitLimit)
			}
			return string(b)
		}
	}
}
