// Package etcdstats reads etcd's own health signals from its Prometheus
// metrics in-process, over a recent window: the embedded etcd registers
// them in prometheus.DefaultRegisterer, so no scrape is needed.
// Histograms and counters are cumulative since start; a window's figures
// are the differences from a snapshot taken about a span ago, so an hour
// of good fsyncs cannot hide the last ten seconds of bad ones.
package etcdstats

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// The metrics read, as etcd v3.7 names them.
const (
	WALFsync              = "etcd_disk_wal_fsync_duration_seconds"
	BackendCommit         = "etcd_disk_backend_commit_duration_seconds"
	HeartbeatSendFailures = "etcd_server_heartbeat_send_failures_total"
	SlowApplies           = "etcd_server_slow_apply_total"
	SlowReadIndexes       = "etcd_server_slow_read_indexes_total"
	LeaderChanges         = "etcd_server_leader_changes_seen_total"
	HasLeader             = "etcd_server_has_leader"
	IsLeader              = "etcd_server_is_leader"
	ProposalsPending      = "etcd_server_proposals_pending"
)

var (
	histograms = []string{WALFsync, BackendCommit}
	counters   = []string{HeartbeatSendFailures, SlowApplies, SlowReadIndexes, LeaderChanges}
	gauges     = []string{HasLeader, IsLeader, ProposalsPending}
)

// snapshotsPerSpan bounds the ring: Sample keeps a snapshot only if the
// newest kept one is older than span/snapshotsPerSpan, so calling Sample
// often costs no memory, and the window is at most that much short of the
// span.
const snapshotsPerSpan = 64

// Reading is etcd's health over the window before one Sample. A field
// whose metric was not gathered, or not gathered at the window's start
// too, is zero, and the metric is named in Missing.
type Reading struct {
	At time.Time
	// Window is the time covered by the deltas: from the snapshot compared
	// against to At. 0 on the first Sample, which has nothing to compare
	// against; then every windowed field is zero.
	Window time.Duration

	// WALFsyncP99 is the 99th percentile of WAL fsyncs in the window, as
	// the upper bound of the histogram bucket it falls in; WALFsyncCount
	// is how many fsyncs there were, so that none (P99 0, count 0) is not
	// taken for fast ones.
	WALFsyncP99        time.Duration
	WALFsyncCount      uint64
	BackendCommitP99   time.Duration
	BackendCommitCount uint64

	// Counter increases over the window.
	HeartbeatFailures float64
	SlowApplies       float64
	SlowReadIndexes   float64
	LeaderChanges     float64

	// Gauges at At.
	HasLeader        bool
	IsLeader         bool
	ProposalsPending float64

	Missing []string // metric names
}

// Stats samples a gatherer and keeps the snapshots of the last span. It is
// safe for concurrent use.
type Stats struct {
	g    prometheus.Gatherer
	span time.Duration

	mu   sync.Mutex
	ring []snapshot // oldest first
}

// New returns a Stats reading g over windows of span. In production g is
// prometheus.DefaultGatherer, where the embedded etcd registers.
func New(g prometheus.Gatherer, span time.Duration) *Stats {
	return &Stats{g: g, span: span}
}

// Sample gathers the metrics now and compares them with the oldest
// snapshot younger than the span (or, when Sample is called less often
// than that, with the latest one; Reading.Window says how far back that
// is). An error from the gatherer comes back with a Reading of what it
// did gather.
func (s *Stats) Sample(now time.Time) (Reading, error) {
	mfs, gerr := s.g.Gather()
	if gerr != nil {
		gerr = fmt.Errorf("gather etcd metrics: %w", gerr)
		if len(mfs) == 0 {
			return Reading{At: now}, gerr
		}
	}
	cur := takeSnapshot(now, mfs)

	s.mu.Lock()
	base, ok := s.baseline(now)
	if n := len(s.ring); n == 0 || now.Sub(s.ring[n-1].at) >= s.span/snapshotsPerSpan {
		s.ring = append(s.ring, cur)
	}
	s.mu.Unlock()

	r := Reading{At: now}
	if ok {
		r.Window = now.Sub(base.at)
	}
	missing := func(name string) { r.Missing = append(r.Missing, name) }

	for _, name := range histograms {
		h, in := cur.hists[name]
		b, inBase := base.hists[name]
		if !in || (ok && !inBase) {
			missing(name)
			continue
		}
		if !ok {
			continue
		}
		p99, n := h.since(b).quantile(0.99)
		switch name {
		case WALFsync:
			r.WALFsyncP99, r.WALFsyncCount = p99, n
		case BackendCommit:
			r.BackendCommitP99, r.BackendCommitCount = p99, n
		}
	}
	for _, name := range counters {
		v, in := cur.values[name]
		b, inBase := base.values[name]
		if !in || (ok && !inBase) {
			missing(name)
			continue
		}
		if !ok {
			continue
		}
		d := v - b
		if d < 0 {
			d = v // reset: count from zero, as Prometheus's increase() does
		}
		switch name {
		case HeartbeatSendFailures:
			r.HeartbeatFailures = d
		case SlowApplies:
			r.SlowApplies = d
		case SlowReadIndexes:
			r.SlowReadIndexes = d
		case LeaderChanges:
			r.LeaderChanges = d
		}
	}
	for _, name := range gauges {
		v, in := cur.values[name]
		if !in {
			missing(name)
			continue
		}
		switch name {
		case HasLeader:
			r.HasLeader = v == 1
		case IsLeader:
			r.IsLeader = v == 1
		case ProposalsPending:
			r.ProposalsPending = v
		}
	}
	return r, gerr
}

// baseline drops the snapshots older than the span, but keeps the newest
// of them if none younger remains, and returns the oldest left.
func (s *Stats) baseline(now time.Time) (snapshot, bool) {
	cut := now.Add(-s.span)
	i := 0
	for i < len(s.ring) && s.ring[i].at.Before(cut) {
		i++
	}
	if i == len(s.ring) && i > 0 {
		i-- // nothing within the span: compare with the latest
	}
	s.ring = s.ring[i:]
	if len(s.ring) == 0 {
		return snapshot{}, false
	}
	return s.ring[0], true
}

// snapshot is one gather of the metrics read, cumulative as gathered.
type snapshot struct {
	at     time.Time
	hists  map[string]hist
	values map[string]float64 // counters and gauges
}

func takeSnapshot(at time.Time, mfs []*dto.MetricFamily) snapshot {
	s := snapshot{at: at, hists: map[string]hist{}, values: map[string]float64{}}
	for _, mf := range mfs {
		name := mf.GetName()
		switch {
		case slices.Contains(histograms, name):
			if h, ok := sumHistograms(mf.GetMetric()); ok {
				s.hists[name] = h
			}
		case slices.Contains(counters, name):
			// etcd's are unlabelled; were one labelled, the family's total
			// is the sum of its series.
			var sum float64
			n := 0
			for _, m := range mf.GetMetric() {
				if v, ok := value(m); ok {
					sum += v
					n++
				}
			}
			if n > 0 {
				s.values[name] = sum
			}
		case slices.Contains(gauges, name):
			if ms := mf.GetMetric(); len(ms) > 0 {
				if v, ok := value(ms[0]); ok {
					s.values[name] = v
				}
			}
		}
	}
	return s
}

// value reads a sample of whichever type it was registered as.
func value(m *dto.Metric) (float64, bool) {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue(), true
	case m.Gauge != nil:
		return m.Gauge.GetValue(), true
	case m.Untyped != nil:
		return m.Untyped.GetValue(), true
	}
	return 0, false
}
