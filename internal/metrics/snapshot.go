package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Snapshot holds the snapshot metrics an alert needs: how old the newest
// good snapshot is, and whether the last attempts failed.
type Snapshot struct {
	lastSuccess  prometheus.Gauge
	lastResult   prometheus.Gauge
	duration     prometheus.Gauge
	size         prometheus.Gauge
	revision     prometheus.Gauge
	failures     prometheus.Counter
	consecutive  prometheus.Gauge
	kept         prometheus.Gauge
	hookFailures *prometheus.CounterVec
}

func newSnapshot(reg prometheus.Registerer) *Snapshot {
	g := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
	}
	s := &Snapshot{
		lastSuccess: g("etcdvisor_snapshot_last_success_timestamp_seconds", "When the newest good snapshot was taken, in seconds since the Unix epoch."),
		lastResult:  g("etcdvisor_snapshot_last_attempt_success", "1 when the last snapshot attempt succeeded, else 0."),
		duration:    g("etcdvisor_snapshot_last_duration_seconds", "How long the last good snapshot took."),
		size:        g("etcdvisor_snapshot_last_size_bytes", "Size on disk of the last good snapshot."),
		revision:    g("etcdvisor_snapshot_last_revision", "The etcd revision the last good snapshot holds."),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "etcdvisor_snapshot_failures_total",
			Help: "Snapshot attempts that failed.",
		}),
		consecutive: g("etcdvisor_snapshot_consecutive_failures", "Snapshot attempts that failed since the last good one."),
		kept:        g("etcdvisor_snapshots_kept", "Good snapshots on disk after retention."),
		hookFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "etcdvisor_snapshot_hook_failures_total",
			Help: "Snapshot hooks that failed, by hook (before or after).",
		}, []string{"hook"}),
	}
	reg.MustRegister(s.lastSuccess, s.lastResult, s.duration, s.size, s.revision, s.failures, s.consecutive, s.kept, s.hookFailures)
	return s
}

// Succeeded records a good snapshot.
func (s *Snapshot) Succeeded(at time.Time, took time.Duration, size, revision int64) {
	s.lastSuccess.Set(float64(at.Unix()))
	s.lastResult.Set(1)
	s.duration.Set(took.Seconds())
	s.size.Set(float64(size))
	s.revision.Set(float64(revision))
	s.consecutive.Set(0)
}

// Failed records a failed attempt.
func (s *Snapshot) Failed() {
	s.lastResult.Set(0)
	s.failures.Inc()
	s.consecutive.Inc()
}

// Kept records how many good snapshots retention left.
func (s *Snapshot) Kept(n int) { s.kept.Set(float64(n)) }

// HookFailed counts a failed hook ("before" or "after").
func (s *Snapshot) HookFailed(hook string) { s.hookFailures.WithLabelValues(hook).Inc() }

// LastSuccess seeds the last-success time from disk at start, so the
// metric does not read 0 (1970) until the next snapshot.
func (s *Snapshot) LastSuccess(at time.Time) { s.lastSuccess.Set(float64(at.Unix())) }
