package etcdstats

import (
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// fakeEtcd registers metrics with etcd's names and buckets in its own
// registry.
type fakeEtcd struct {
	reg                                           *prometheus.Registry
	walFsync, backendCommit                       prometheus.Histogram
	heartbeatFailures, slowApplies, slowReadIndex prometheus.Counter
	leaderChanges                                 prometheus.Counter
	hasLeader, isLeader, proposalsPending         prometheus.Gauge
}

func newFakeEtcd(t *testing.T, skip ...string) *fakeEtcd {
	t.Helper()
	buckets := prometheus.ExponentialBuckets(0.001, 2, 14) // etcd's: 1ms to 8.192s
	f := &fakeEtcd{
		reg:               prometheus.NewRegistry(),
		walFsync:          prometheus.NewHistogram(prometheus.HistogramOpts{Name: WALFsync, Help: "h", Buckets: buckets}),
		backendCommit:     prometheus.NewHistogram(prometheus.HistogramOpts{Name: BackendCommit, Help: "h", Buckets: buckets}),
		heartbeatFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: HeartbeatSendFailures, Help: "h"}),
		slowApplies:       prometheus.NewCounter(prometheus.CounterOpts{Name: SlowApplies, Help: "h"}),
		slowReadIndex:     prometheus.NewCounter(prometheus.CounterOpts{Name: SlowReadIndexes, Help: "h"}),
		leaderChanges:     prometheus.NewCounter(prometheus.CounterOpts{Name: LeaderChanges, Help: "h"}),
		hasLeader:         prometheus.NewGauge(prometheus.GaugeOpts{Name: HasLeader, Help: "h"}),
		isLeader:          prometheus.NewGauge(prometheus.GaugeOpts{Name: IsLeader, Help: "h"}),
		proposalsPending:  prometheus.NewGauge(prometheus.GaugeOpts{Name: ProposalsPending, Help: "h"}),
	}
	for name, c := range map[string]prometheus.Collector{
		WALFsync: f.walFsync, BackendCommit: f.backendCommit,
		HeartbeatSendFailures: f.heartbeatFailures, SlowApplies: f.slowApplies,
		SlowReadIndexes: f.slowReadIndex, LeaderChanges: f.leaderChanges,
		HasLeader: f.hasLeader, IsLeader: f.isLeader, ProposalsPending: f.proposalsPending,
	} {
		if !slices.Contains(skip, name) {
			f.reg.MustRegister(c)
		}
	}
	return f
}

func observe(h prometheus.Histogram, n int, d time.Duration) {
	for range n {
		h.Observe(d.Seconds())
	}
}

func sample(t *testing.T, s *Stats, at time.Time) Reading {
	t.Helper()
	r, err := s.Sample(at)
	if err != nil {
		t.Fatalf("Sample: %v", err)
	}
	return r
}

func TestSampleReportsTheWindowsP99BucketAndCounterDeltas(t *testing.T) {
	f := newFakeEtcd(t)
	t0 := time.Unix(1000, 0)
	s := New(f.reg, 10*time.Second)

	// Lifetime history before the first sample: slow, and never counted.
	observe(f.walFsync, 50, 3*time.Second)
	f.heartbeatFailures.Add(7)
	f.leaderChanges.Add(2)
	first := sample(t, s, t0)
	if first.Window != 0 || first.WALFsyncCount != 0 || first.WALFsyncP99 != 0 || first.HeartbeatFailures != 0 {
		t.Fatalf("first sample = %+v, want an empty window: nothing to compare with", first)
	}
	if len(first.Missing) != 0 {
		t.Fatalf("first sample: missing %v, want none", first.Missing)
	}

	// 99 fast fsyncs and one slow: the 99th lands in the (1ms, 2ms] bucket.
	observe(f.walFsync, 99, 1500*time.Microsecond)
	observe(f.walFsync, 1, 100*time.Millisecond)
	// 97 fast commits and three slow: the 99th lands in (64ms, 128ms].
	// (Two slow would not: the two slowest alone never set the p99.)
	observe(f.backendCommit, 97, 500*time.Microsecond)
	observe(f.backendCommit, 3, 100*time.Millisecond)
	f.heartbeatFailures.Add(3)
	f.slowApplies.Add(1)
	f.slowReadIndex.Add(4)
	f.leaderChanges.Inc()
	f.hasLeader.Set(1)
	f.proposalsPending.Set(5)

	got := sample(t, s, t0.Add(5*time.Second))
	want := Reading{
		At:                 t0.Add(5 * time.Second),
		Window:             5 * time.Second,
		WALFsyncP99:        2 * time.Millisecond,
		WALFsyncCount:      100,
		BackendCommitP99:   128 * time.Millisecond,
		BackendCommitCount: 100,
		HeartbeatFailures:  3,
		SlowApplies:        1,
		SlowReadIndexes:    4,
		LeaderChanges:      1,
		HasLeader:          true,
		IsLeader:           false,
		ProposalsPending:   5,
	}
	if !equal(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
}

func TestSnapshotsOlderThanTheSpanFallOutOfTheWindow(t *testing.T) {
	f := newFakeEtcd(t)
	t0 := time.Unix(1000, 0)
	s := New(f.reg, 10*time.Second)

	sample(t, s, t0)
	observe(f.walFsync, 10, 5*time.Second) // between t0 and t0+5s
	f.heartbeatFailures.Add(9)
	sample(t, s, t0.Add(5*time.Second))
	observe(f.walFsync, 10, 3*time.Millisecond) // between t0+5s and t0+12s
	f.heartbeatFailures.Add(1)

	// At t0+12s the t0 snapshot is older than the span: the window starts
	// at t0+5s, and the slow fsyncs before it are gone.
	got := sample(t, s, t0.Add(12*time.Second))
	if got.Window != 7*time.Second || got.WALFsyncCount != 10 || got.WALFsyncP99 != 4*time.Millisecond || got.HeartbeatFailures != 1 {
		t.Fatalf("got window %s, %d fsyncs, p99 %s, %v heartbeat failures; want 7s, 10, 4ms, 1",
			got.Window, got.WALFsyncCount, got.WALFsyncP99, got.HeartbeatFailures)
	}

	// Nothing new: the window holds no fsyncs, which is not fast ones.
	got = sample(t, s, t0.Add(13*time.Second))
	if got.WALFsyncCount != 10 {
		t.Fatalf("at t0+13s: %d fsyncs, want the 10 since t0+5s", got.WALFsyncCount)
	}
	got = sample(t, s, t0.Add(30*time.Second))
	if got.Window != 17*time.Second || got.WALFsyncCount != 0 || got.WALFsyncP99 != 0 {
		t.Fatalf("sampled after a gap: window %s, %d fsyncs, p99 %s; want 17s (the latest snapshot), 0, 0",
			got.Window, got.WALFsyncCount, got.WALFsyncP99)
	}
}

func TestSlowestBucketIsTheHighestFiniteBound(t *testing.T) {
	f := newFakeEtcd(t)
	t0 := time.Unix(1000, 0)
	s := New(f.reg, time.Minute)
	sample(t, s, t0)
	observe(f.walFsync, 3, 30*time.Second) // beyond etcd's last bucket, 8.192s
	got := sample(t, s, t0.Add(time.Second))
	if got.WALFsyncP99 != 8192*time.Millisecond || got.WALFsyncCount != 3 {
		t.Fatalf("got p99 %s over %d, want 8.192s over 3", got.WALFsyncP99, got.WALFsyncCount)
	}
}

func TestAMissingMetricIsReportedNotAnError(t *testing.T) {
	f := newFakeEtcd(t, ProposalsPending, WALFsync, SlowApplies)
	t0 := time.Unix(1000, 0)
	s := New(f.reg, 10*time.Second)
	sample(t, s, t0)
	f.hasLeader.Set(1)
	f.isLeader.Set(1)
	got := sample(t, s, t0.Add(time.Second))
	want := []string{WALFsync, SlowApplies, ProposalsPending}
	if !slices.Equal(got.Missing, want) {
		t.Fatalf("missing %v, want %v", got.Missing, want)
	}
	if !got.HasLeader || !got.IsLeader {
		t.Fatalf("got %+v, want the gauges present read", got)
	}
}

func TestFrequentSamplesKeepTheRingSmall(t *testing.T) {
	f := newFakeEtcd(t)
	t0 := time.Unix(1000, 0)
	s := New(f.reg, 10*time.Second)
	for i := range 10000 {
		sample(t, s, t0.Add(time.Duration(i)*time.Millisecond))
	}
	if n := len(s.ring); n > snapshotsPerSpan+1 {
		t.Fatalf("%d snapshots kept, want at most %d", n, snapshotsPerSpan+1)
	}
	got := sample(t, s, t0.Add(10*time.Second))
	if got.Window < 10*time.Second-10*time.Second/snapshotsPerSpan || got.Window > 10*time.Second {
		t.Fatalf("window %s, want within a ring step of the span", got.Window)
	}
}

func equal(a, b Reading) bool { return reflect.DeepEqual(a, b) }
