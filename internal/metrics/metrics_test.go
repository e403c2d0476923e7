package metrics

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap/zaptest"
)

func TestMetricsPassPrometheusLint(t *testing.T) {
	m := New("v0.1.0", "3.7.3", "go1.26.8", time.Unix(1700000000, 0))
	m.SetCluster(3, 1, true, true)
	m.SetCertExpiry("peer", "/etc/etcdvisor/pki/peer.crt", time.Unix(1800000000, 0))
	m.Snapshot.Succeeded(time.Unix(1700000000, 0), time.Second, 1<<20, 42)
	m.Snapshot.Failed()
	m.Snapshot.HookFailed("after")
	problems, err := testutil.GatherAndLint(m.Registry)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

func TestPhaseAndReadinessGauges(t *testing.T) {
	m := New("v0.1.0", "3.7.3", "go1.26.8", time.Unix(1700000000, 0))
	m.SetPhase("ready")
	m.SetMemberReady(true)
	want := `
# HELP etcdvisor_member_ready 1 when the local etcd member serves linearizable reads, else 0.
# TYPE etcdvisor_member_ready gauge
etcdvisor_member_ready 1
# HELP etcdvisor_phase The daemon's phase: 1 for the current one, 0 for the others.
# TYPE etcdvisor_phase gauge
etcdvisor_phase{phase="ready"} 1
etcdvisor_phase{phase="starting"} 0
etcdvisor_phase{phase="stopping"} 0
`
	if err := testutil.GatherAndCompare(m.Registry, strings.NewReader(want), "etcdvisor_member_ready", "etcdvisor_phase"); err != nil {
		t.Fatal(err)
	}
}

func TestServerAnswersMetricsHealthzAndReadyz(t *testing.T) {
	m := New("v0.1.0", "3.7.3", "go1.26.8", time.Now())
	notReady := errors.New("member is starting")
	var current atomic.Value // holds readyErr; the server reads it concurrently
	type readyErr struct{ err error }
	srv := NewServer(zaptest.NewLogger(t), m.Gatherer(), func(context.Context) error { return current.Load().(readyErr).err })
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	base := "http://" + ln.Addr().String()

	tests := []struct {
		name     string
		path     string
		ready    error
		wantCode int
		wantBody string
	}{
		{"metrics carry build info and Go's own", "/metrics", nil, 200, `etcdvisor_build_info{etcd_version="3.7.3",goversion="go1.26.8",version="v0.1.0"} 1`},
		{"metrics include the default registry", "/metrics", nil, 200, "go_goroutines"},
		{"healthz is ok while the member starts", "/healthz", notReady, 200, "ok"},
		{"readyz is 503 with the reason while not ready", "/readyz", notReady, 503, "not ready: member is starting"},
		{"readyz is ok when ready", "/readyz", nil, 200, "ok"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			current.Store(readyErr{tt.ready})
			resp, err := http.Get(base + tt.path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.wantCode || !strings.Contains(string(body), tt.wantBody) {
				t.Fatalf("got %d %q, want %d containing %q", resp.StatusCode, body, tt.wantCode, tt.wantBody)
			}
		})
	}
}

func TestClusterAndCertificateGauges(t *testing.T) {
	m := New("v0.1.0", "3.7.3", "go1.26.8", time.Unix(1700000000, 0))
	m.SetCluster(3, 1, false, true)
	m.SetCertExpiry("client", "/pki/server.crt", time.Unix(1800000000, 0))
	want := `
# HELP etcdvisor_cert_expiry_timestamp_seconds When each configured certificate expires, in seconds since the Unix epoch.
# TYPE etcdvisor_cert_expiry_timestamp_seconds gauge
etcdvisor_cert_expiry_timestamp_seconds{file="/pki/server.crt",role="client"} 1.8e+09
# HELP etcdvisor_cluster_members Members of the cluster as this member sees them, by role (voter or learner).
# TYPE etcdvisor_cluster_members gauge
etcdvisor_cluster_members{role="learner"} 1
etcdvisor_cluster_members{role="voter"} 3
# HELP etcdvisor_member_has_leader 1 when this member knows a leader, else 0.
# TYPE etcdvisor_member_has_leader gauge
etcdvisor_member_has_leader 1
# HELP etcdvisor_member_is_leader 1 when this member is the raft leader, else 0.
# TYPE etcdvisor_member_is_leader gauge
etcdvisor_member_is_leader 0
`
	if err := testutil.GatherAndCompare(m.Registry, strings.NewReader(want),
		"etcdvisor_cert_expiry_timestamp_seconds", "etcdvisor_cluster_members", "etcdvisor_member_has_leader", "etcdvisor_member_is_leader"); err != nil {
		t.Fatal(err)
	}
}
