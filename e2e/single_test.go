package e2e

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdvisor/etcdvisor/internal/api"
)

func newClient(t *testing.T, url string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{url}, DialTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func statusJSON(t *testing.T, args ...string) api.Status {
	t.Helper()
	out, errOut, code := runCLI(t, append([]string{"status", "-w", "json"}, args...)...)
	if code != 0 {
		t.Fatalf("etcdvisor status exited %d: %s", code, errOut)
	}
	var st api.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status -w json is not JSON: %v\n%s", err, out)
	}
	return st
}

func TestSingleMemberServesReportsAndStopsCleanly(t *testing.T) {
	m := newMember(t, "solo")
	cfg := m.writeConfig(t)
	// WATCHDOG_USEC as systemd sets it: etcdvisor must ping at half of it.
	p := startDaemon(t, []string{"--config", cfg}, "WATCHDOG_USEC=2000000")
	p.waitReady()

	// The member serves clients.
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	cli := newClient(t, m.clientURL)
	if _, err := cli.Put(ctx, "/registry/pods/default/web", "v1"); err != nil {
		t.Fatalf("put: %v", err)
	}

	// Prometheus sees etcd's metrics and etcdvisor's on one listener.
	code, body := httpGet(t, "http://"+m.metricsAddr+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	if got := gaugeValue(families["etcd_server_has_leader"]); got != 1 {
		t.Errorf("etcd_server_has_leader = %v, want 1", got)
	}
	if got := gaugeValue(families["etcdvisor_member_ready"]); got != 1 {
		t.Errorf("etcdvisor_member_ready = %v, want 1", got)
	}
	bi := families["etcdvisor_build_info"]
	if bi == nil || len(bi.Metric) != 1 || labelValue(bi.Metric[0].GetLabel(), "etcd_version") != "3.7.3" {
		t.Errorf("etcdvisor_build_info missing or without etcd_version 3.7.3: %v", bi)
	}
	if code, body := httpGet(t, "http://"+m.metricsAddr+"/readyz"); code != 200 {
		t.Errorf("/readyz: %d %s, want 200", code, body)
	}
	if code, _ := httpGet(t, "http://"+m.metricsAddr+"/healthz"); code != 200 {
		t.Errorf("/healthz: %d, want 200", code)
	}

	// Status through the control socket, found from the config file.
	st := statusJSON(t, "--config", cfg)
	if st.Phase != api.PhaseReady || st.Name != "solo" || !st.IsLeader || st.MemberID == "" || st.MemberID != st.LeaderID {
		t.Errorf("status: got phase %q name %q leader %v member %q leader-id %q", st.Phase, st.Name, st.IsLeader, st.MemberID, st.LeaderID)
	}
	if st.Revision < 2 || st.RaftTerm == 0 || st.DBSize == 0 || len(st.Members) != 1 || st.Members[0].ClientURLs[0] != m.clientURL {
		t.Errorf("status: revision %d term %d db %d members %+v", st.Revision, st.RaftTerm, st.DBSize, st.Members)
	}
	// ... and from the data dir and from the environment.
	if st2 := statusJSON(t, "--data-dir", m.dataDir()); st2.MemberID != st.MemberID {
		t.Errorf("status via --data-dir: member %q, want %q", st2.MemberID, st.MemberID)
	}
	t.Setenv("ETCDVISOR_SOCKET", m.socket())
	if st3 := statusJSON(t); st3.MemberID != st.MemberID {
		t.Errorf("status via ETCDVISOR_SOCKET: member %q, want %q", st3.MemberID, st.MemberID)
	}
	out, errOut, code := runCLI(t, "etcd-servers", "--config", cfg)
	if code != 0 || strings.TrimSpace(out) != m.clientURL {
		t.Errorf("etcd-servers: got %q (exit %d, %s), want %q", out, code, errOut, m.clientURL)
	}
	out, _, code = runCLI(t, "status", "--config", cfg)
	if code != 0 || !strings.Contains(out, "PHASE") || !strings.Contains(out, "(this member)") {
		t.Errorf("status table: exit %d\n%s", code, out)
	}

	// The supervisor loop pings the watchdog and keeps a STATUS line.
	if err := p.notify.waitFor("WATCHDOG=1", p.done); err != nil {
		t.Error(err)
	}
	if err := p.notify.waitFor("STATUS=ready, leader", p.done); err != nil {
		t.Error(err)
	}

	// SIGTERM: STOPPING=1, exit 0, the socket file is gone.
	if code := p.stop(); code != 0 {
		t.Fatalf("exit code after SIGTERM: %d, want 0", code)
	}
	if err := p.notify.waitFor("STOPPING=1", p.done); err != nil {
		t.Error(err)
	}
	if _, err := os.Stat(m.socket()); !os.IsNotExist(err) {
		t.Errorf("control socket still there after stop: %v", err)
	}

	// The key survives a restart.
	p2 := startDaemon(t, []string{"--config", cfg})
	p2.waitReady()
	resp, err := newClient(t, m.clientURL).Get(ctx, "/registry/pods/default/web")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v1" {
		t.Fatalf("after restart: %v %v, want the key with v1", resp, err)
	}
	if code := p2.stop(); code != 0 {
		t.Fatalf("second exit code: %d", code)
	}
}

func TestRunWithNoConfigWorksForAUserWhoIsNotRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run the binary as another user")
	}
	// The README's first command, as a new user would run it: no config,
	// no flags, default ports, data in ./etcdvisor-data.
	for _, addr := range []string{"127.0.0.1:2379", "127.0.0.1:2380", "127.0.0.1:2381"} {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Skipf("default port %s is taken on this machine: %v", addr, err)
		}
		ln.Close()
	}
	cwd := shortDir(t)
	if err := os.Chown(cwd, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	nobody := &syscall.Credential{Uid: 65534, Gid: 65534}
	p := startDaemonWith(t, runOpts{cred: nobody, dir: cwd})
	p.waitReady()

	info, err := os.Stat(filepath.Join(cwd, "etcdvisor-data", "etcdvisor.sock"))
	if err != nil {
		t.Fatalf("no socket in ./etcdvisor-data: %v", err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want 0600", info.Mode().Perm())
	}
	out, errOut, code := runCLIAs(t, nobody, cwd, "etcd-servers")
	if code != 0 || strings.TrimSpace(out) != "http://127.0.0.1:2379" {
		t.Errorf("etcd-servers as the same user: %q exit %d %s", out, code, errOut)
	}
	if code, _ := httpGet(t, "http://127.0.0.1:2381/readyz"); code != 200 {
		t.Errorf("/readyz on the default metrics port: %d", code)
	}
	// Ctrl-C, as the user at the terminal would stop it.
	if code := p.signal(syscall.SIGINT); code != 0 {
		t.Fatalf("exit code after SIGINT: %d, want 0", code)
	}
}

func gaugeValue(mf *dto.MetricFamily) float64 {
	if mf == nil || len(mf.Metric) == 0 {
		return -1
	}
	m := mf.Metric[0]
	if m.Gauge != nil {
		return m.Gauge.GetValue()
	}
	return -1
}

func labelValue(labels []*dto.LabelPair, name string) string {
	for _, l := range labels {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
