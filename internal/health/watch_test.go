package health

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/etcdvisor/etcdvisor/internal/health/etcdstats"
	"github.com/etcdvisor/etcdvisor/internal/health/host"
	"github.com/etcdvisor/etcdvisor/internal/health/probe"
)

// etcdLikeRegistry stands in for the embedded etcd's registry: the same
// metric names and buckets etcd registers, fed with chosen observations.
func etcdLikeRegistry(t *testing.T) (*prometheus.Registry, prometheus.Histogram) {
	reg := prometheus.NewRegistry()
	wal := prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "etcd", Subsystem: "disk", Name: "wal_fsync_duration_seconds",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
	})
	hasLeader := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "etcd", Subsystem: "server", Name: "has_leader"})
	hasLeader.Set(1)
	reg.MustRegister(wal, hasLeader)
	return reg, wal
}

func TestWatcherReportsASlowWALAtOnceAndRecoversAfterItHolds(t *testing.T) {
	reg, wal := etcdLikeRegistry(t)
	th := DefaultThresholds(Thresholds{}, 100*time.Millisecond, time.Second)
	w := NewWatcher(Sources{Etcd: etcdstats.New(reg, 5*time.Second)}, th, 5*time.Second, 3*time.Second, zap.NewNop())
	var changes []State
	w.OnReport = func(prev, cur Report) {
		if prev.At.IsZero() || prev.State != cur.State {
			changes = append(changes, cur.State)
		}
	}
	t0 := time.Unix(1000, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }

	w.Tick(at(0)) // baseline
	for range 20 {
		wal.Observe(0.002)
	}
	if r := w.Tick(at(1)); r.State != OK {
		t.Fatalf("2ms fsyncs: %v %v", r.State, r.Reasons)
	}
	for range 20 {
		wal.Observe(0.2) // 200 ms: four times the budget
	}
	r := w.Tick(at(2))
	if r.State != Critical || len(r.Reasons) == 0 || r.Reasons[0].Signal != "wal-fsync" {
		t.Fatalf("200ms fsyncs: state %v reasons %v, want critical for wal-fsync", r.State, r.Reasons)
	}
	if w.Report().State != Critical {
		t.Fatalf("Report() = %v after a critical tick", w.Report().State)
	}
	// The slow observations leave the 5 s window; ok must then hold 3 s.
	for _, s := range []float64{7.5, 8.5, 9.5} {
		for range 20 {
			wal.Observe(0.002)
		}
		if r := w.Tick(at(s)); r.State != Critical {
			t.Fatalf("at %.1fs reported %v before recover-after held", s, r.State)
		}
	}
	for range 20 {
		wal.Observe(0.002)
	}
	if r := w.Tick(at(10.6)); r.State != OK {
		t.Fatalf("at 10.6s: %v %v, want ok", r.State, r.Reasons)
	}
	if len(changes) != 3 || changes[0] != OK || changes[1] != Critical || changes[2] != OK {
		t.Errorf("state changes %v, want [ok critical ok]", changes)
	}
}

func TestWatcherRunsProbesAndLogsAMissingSourceOnce(t *testing.T) {
	dir := t.TempDir()
	p := probe.New(dir, probe.Options{Interval: 10 * time.Millisecond})
	th := DefaultThresholds(Thresholds{}, 100*time.Millisecond, time.Second)
	// A root without /proc: pressure is unavailable, which is no sickness.
	core, logs := observer.New(zap.InfoLevel)
	w := NewWatcher(Sources{Probes: []*probe.Probe{p}, Pressure: host.NewPressure(host.Root(t.TempDir()))},
		th, 5*time.Second, time.Second, zap.New(core))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, 20*time.Millisecond) }()
	deadline := time.After(30 * time.Second)
	for w.Report().Figures.FsyncProbeP99 == 0 {
		select {
		case <-deadline:
			cancel()
			t.Fatal("no fsync probe figure after 30s")
		case <-time.After(20 * time.Millisecond):
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	r := w.Report()
	if len(r.Figures.Unavailable) != 1 || r.Figures.Unavailable[0] != "pressure" {
		t.Errorf("unavailable %v, want [pressure]", r.Figures.Unavailable)
	}
	// The probe writes to the real disk, which a busy machine may make
	// slow; only a reason from the missing source would be this test's.
	for _, reason := range r.Reasons {
		if strings.Contains(reason.Signal, "pressure") || strings.Contains(reason.Text, "unavailable") {
			t.Errorf("the missing source gave a reason: %+v", reason)
		}
	}
	if err := p.LastError(); err != nil {
		t.Errorf("probe error: %v", err)
	}
	if n := logs.FilterMessageSnippet("unavailable").Len(); n != 1 {
		t.Errorf("the missing source was logged %d times over many ticks, want once", n)
	}
}

// Nudge gets a judgement between ticks: with an hour between ticks, the
// report that arrives comes from the nudge.
func TestNudgeJudgesBeforeTheNextTick(t *testing.T) {
	reg, _ := etcdLikeRegistry(t)
	th := DefaultThresholds(Thresholds{}, 100*time.Millisecond, time.Second)
	w := NewWatcher(Sources{Etcd: etcdstats.New(reg, 5*time.Second)}, th, 5*time.Second, 3*time.Second, zap.NewNop())
	reports := make(chan Report, 10)
	w.OnReport = func(_, cur Report) { reports <- cur }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, time.Hour) }()
	defer func() {
		cancel()
		<-done
	}()
	w.Nudge()
	select {
	case r := <-reports:
		if r.At.IsZero() {
			t.Fatalf("report without a time: %+v", r)
		}
	case <-time.After(30 * time.Second): // a hang guard, not a speed claim
		t.Fatal("no judgement after Nudge with an hour between ticks")
	}
}
