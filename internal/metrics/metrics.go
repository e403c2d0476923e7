// Package metrics keeps etcdvisor's own Prometheus metrics and serves them
// beside etcd's on one listener with /healthz and /readyz.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
)

// Metrics are etcdvisor's own metrics, in their own registry so they are
// never confused with etcd's and can be linted on their own.
type Metrics struct {
	Registry    *prometheus.Registry
	memberReady prometheus.Gauge
	phase       *prometheus.GaugeVec
	members     *prometheus.GaugeVec
	isLeader    prometheus.Gauge
	hasLeader   prometheus.Gauge
	certExpiry  *prometheus.GaugeVec
	unreachable *prometheus.GaugeVec
	// Snapshot holds the snapshot metrics.
	Snapshot *Snapshot
	Health   *Health
}

// Phases that etcdvisor_phase reports, one series each.
var phases = []string{"starting", "ready", "stopping"}

// New registers etcdvisor's metrics. etcdVersion is the etcd server
// version this binary runs.
func New(version, etcdVersion, goVersion string, start time.Time) *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		Registry: reg,
		memberReady: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "etcdvisor_member_ready",
			Help: "1 when the local etcd member serves linearizable reads, else 0.",
		}),
		phase: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "etcdvisor_phase",
			Help: "The daemon's phase: 1 for the current one, 0 for the others.",
		}, []string{"phase"}),
	}
	m.members = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "etcdvisor_cluster_members",
		Help: "Members of the cluster as this member sees them, by role (voter or learner).",
	}, []string{"role"})
	m.isLeader = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "etcdvisor_member_is_leader",
		Help: "1 when this member is the raft leader, else 0.",
	})
	m.hasLeader = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "etcdvisor_member_has_leader",
		Help: "1 when this member knows a leader, else 0.",
	})
	m.certExpiry = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "etcdvisor_cert_expiry_timestamp_seconds",
		Help: "When each configured certificate expires, in seconds since the Unix epoch.",
	}, []string{"role", "file"})
	m.unreachable = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "etcdvisor_member_unreachable_seconds",
		Help: "How long each other member has had no live etcdvisor in the registry and no answer on its peer URL; 0 while it is reachable.",
	}, []string{"member"})
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "etcdvisor_build_info",
		Help:        "Always 1; labels carry the versions of etcdvisor, the etcd it runs, and Go.",
		ConstLabels: prometheus.Labels{"version": version, "etcd_version": etcdVersion, "goversion": goVersion},
	})
	buildInfo.Set(1)
	startTime := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "etcdvisor_start_time_seconds",
		Help: "When the etcdvisor daemon started, in seconds since the Unix epoch.",
	})
	startTime.Set(float64(start.UnixNano()) / 1e9)
	reg.MustRegister(buildInfo, startTime, m.memberReady, m.phase, m.members, m.isLeader, m.hasLeader, m.certExpiry, m.unreachable)
	m.Snapshot = newSnapshot(reg)
	m.Health = newHealth(reg)
	m.SetPhase("starting")
	return m
}

// SetMemberReady records whether the member serves linearizable reads.
func (m *Metrics) SetMemberReady(ready bool) { m.memberReady.Set(b2f(ready)) }

// SetCluster records the member list and leadership as this member sees them.
func (m *Metrics) SetCluster(voters, learners int, isLeader, hasLeader bool) {
	m.members.WithLabelValues("voter").Set(float64(voters))
	m.members.WithLabelValues("learner").Set(float64(learners))
	m.isLeader.Set(b2f(isLeader))
	m.hasLeader.Set(b2f(hasLeader))
}

// SetUnreachable records, for every other member by name, how long it has
// been unreachable (0: reachable); members no longer listed are dropped.
func (m *Metrics) SetUnreachable(byMember map[string]time.Duration) {
	m.unreachable.Reset()
	for name, d := range byMember {
		m.unreachable.WithLabelValues(name).Set(d.Seconds())
	}
}

// SetCertExpiry records when the certificate in file, used for role
// ("client", "peer"), expires.
func (m *Metrics) SetCertExpiry(role, file string, notAfter time.Time) {
	m.certExpiry.WithLabelValues(role, file).Set(float64(notAfter.Unix()))
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// SetPhase marks phase as current.
func (m *Metrics) SetPhase(phase string) {
	for _, p := range phases {
		v := 0.0
		if p == phase {
			v = 1
		}
		m.phase.WithLabelValues(p).Set(v)
	}
}

// Gatherer gathers etcd's metrics (embedded etcd registers in Prometheus'
// default registry, beside the Go and process collectors) with ours.
func (m *Metrics) Gatherer() prometheus.Gatherer {
	return prometheus.Gatherers{prometheus.DefaultGatherer, m.Registry}
}

// Server is the HTTP listener for /metrics, /healthz and /readyz.
type Server struct {
	lg  *zap.Logger
	srv *http.Server
}

// ReadyFunc says whether the member serves linearizable reads now; its
// error is the reason it does not, shown to whoever probes /readyz.
type ReadyFunc func(ctx context.Context) error

// NewServer serves g's metrics and the health endpoints.
func NewServer(lg *zap.Logger, g prometheus.Gatherer, ready ReadyFunc) *Server {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{
		ErrorLog: zap.NewStdLog(lg),
		// One broken collector must not hide all the others.
		ErrorHandling: promhttp.ContinueOnError,
	}))
	// healthz: the process lives and serves HTTP; nothing more, so a
	// liveness probe never restarts a member that is merely catching up.
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := ready(ctx); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	return &Server{lg: lg, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}}
}

// Listen binds addr, with an error that names it.
func Listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics.listen %q: %w", addr, err)
	}
	return ln, nil
}

// Serve answers on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	s.lg.Info("serving metrics", zap.String("address", ln.Addr().String()))
	if err := s.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve metrics: %w", err)
	}
	return nil
}

// Shutdown stops the listener, letting a scrape in flight finish.
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }
