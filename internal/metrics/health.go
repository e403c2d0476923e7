package metrics

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/etcdvisor/etcdvisor/internal/health"
)

// Health holds the starvation watch's metrics: the verdict, the figures
// behind it, and what etcdvisor did about it.
type Health struct {
	state         prometheus.Gauge
	signals       *prometheus.GaugeVec
	FsyncProbe    prometheus.Histogram
	PeerRTT       *prometheus.HistogramVec
	moves         *prometheus.CounterVec
	moveFailures  *prometheus.CounterVec
	unavailable   *prometheus.GaugeVec
	fenced        prometheus.Gauge
	gate          atomic.Pointer[GateCounts]
	sourcesByName map[string]bool
}

// latencyBuckets span a healthy SSD's fsync (100µs) to a stalled disk (8s).
var latencyBuckets = prometheus.ExponentialBuckets(0.0001, 2, 17)

func newHealth(reg prometheus.Registerer) *Health {
	h := &Health{
		state: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "etcdvisor_health_state",
			Help: "The starvation watch's verdict on this member: 0 ok, 1 degraded, 2 critical.",
		}),
		signals: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "etcdvisor_health_signal",
			Help: "The figures the verdict rests on, over the watch's window (seconds for latencies, 0..1 for pressure and utilisation).",
		}, []string{"signal"}),
		FsyncProbe: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "etcdvisor_fsync_probe_duration_seconds",
			Help:    "Write plus fdatasync of a small block in the data dir's filesystem, as a WAL append does.",
			Buckets: latencyBuckets,
		}),
		PeerRTT: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "etcdvisor_peer_round_trip_seconds",
			Help:    "Round trip of a small request to each peer's peer URL, measured by etcdvisor several times a second.",
			Buckets: latencyBuckets,
		}, []string{"peer"}),
		moves: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "etcdvisor_leader_moves_total",
			Help: "Leadership moved off this member because it was critical, by the signal that made it so.",
		}, []string{"reason"}),
		moveFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "etcdvisor_leader_move_failures_total",
			Help: "Moves of leadership that were needed but did not happen, by why.",
		}, []string{"why"}),
		unavailable: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "etcdvisor_health_source_unavailable",
			Help: "1 for a health source this host lacks or that failed at the last judgement.",
		}, []string{"source"}),
		fenced: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "etcdvisor_health_fenced",
			Help: "1 while this member refuses client requests because it is critical.",
		}),
		sourcesByName: map[string]bool{},
	}
	counts := []prometheus.Collector{
		h.gateCounter("etcdvisor_fence_refused_requests_total",
			"Client requests this member refused while fenced; clients resend them to another endpoint.", GateCounts.Refused),
		h.gateCounter("etcdvisor_dropped_proposals_resent_total",
			"Client writes raft dropped (during a leadership transfer) that this member asked raft for again.", GateCounts.Resent),
		h.gateCounter("etcdvisor_requests_held_for_leader_move_total",
			"Client requests that waited while this member handed its leadership to another.", GateCounts.Held),
		h.gateCounter("etcdvisor_writes_given_up_after_leader_change_total",
			"Client writes still pending after a new term began here, answered as timed out instead of at the client's deadline.", GateCounts.GivenUp),
	}
	reg.MustRegister(h.state, h.signals, h.FsyncProbe, h.PeerRTT, h.moves, h.moveFailures, h.unavailable, h.fenced)
	reg.MustRegister(counts...)
	return h
}

// GateCounts are the fence gate's counts (fence.Gate).
type GateCounts interface {
	Refused() uint64
	Resent() uint64
	Held() uint64
	GivenUp() uint64
}

// gateCounter is a counter that reads one of the gate's counts, once set.
func (h *Health) gateCounter(name, help string, count func(GateCounts) uint64) prometheus.CounterFunc {
	return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 {
		if g := h.gate.Load(); g != nil {
			return float64(count(*g))
		}
		return 0
	})
}

// CountGate makes the gate's counters read g.
func (h *Health) CountGate(g GateCounts) { h.gate.Store(&g) }

// Set records one report.
func (h *Health) Set(r health.Report) {
	h.state.Set(float64(r.State))
	f := r.Figures
	for name, v := range map[string]float64{
		"fsync_probe_p99_seconds":       secs(f.FsyncProbeP99),
		"fsync_probe_in_flight_seconds": secs(f.FsyncProbeInFlight),
		"wal_fsync_p99_seconds":         secs(f.WALFsyncP99),
		"backend_commit_p99_seconds":    secs(f.BackendCommitP99),
		"heartbeat_failures":            f.HeartbeatFailures,
		"slow_applies":                  f.SlowApplies,
		"io_pressure_full":              f.IOPressure,
		"cpu_pressure_some":             f.CPUPressure,
		"memory_pressure_full":          f.MemoryPressure,
		"disk_utilization":              f.DiskUtilization,
		"disk_write_latency_seconds":    secs(f.DiskWriteLatency),
		"net_drops_per_second":          f.NetDropsPerSec,
		"tcp_retransmits_per_second":    f.TCPRetransPerSec,
	} {
		h.signals.WithLabelValues(name).Set(v)
	}
	now := map[string]bool{}
	for _, s := range f.Unavailable {
		now[s] = true
		h.sourcesByName[s] = true
	}
	for s := range h.sourcesByName {
		v := 0.0
		if now[s] {
			v = 1
		}
		h.unavailable.WithLabelValues(s).Set(v)
	}
}

// SetFenced records whether the member refuses client requests.
func (h *Health) SetFenced(on bool) {
	v := 0.0
	if on {
		v = 1
	}
	h.fenced.Set(v)
}

// LeaderMoved counts a move made because of reason.
func (h *Health) LeaderMoved(reason string) { h.moves.WithLabelValues(reason).Inc() }

// LeaderMoveFailed counts a needed move that did not happen.
func (h *Health) LeaderMoveFailed(why string) { h.moveFailures.WithLabelValues(why).Inc() }

func secs(s health.Seconds) float64 { return float64(s) / 1e9 }
