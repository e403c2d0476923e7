package health

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/etcdvisor/etcdvisor/internal/health/etcdstats"
	"github.com/etcdvisor/etcdvisor/internal/health/host"
	"github.com/etcdvisor/etcdvisor/internal/health/peer"
	"github.com/etcdvisor/etcdvisor/internal/health/probe"
)

// Sources are the samplers the watch reads. Any may be nil: that signal is
// then unknown, which never makes a member look sick.
type Sources struct {
	// Probes are fsync probes, one per filesystem (data dir, WAL dir).
	Probes   []*probe.Probe
	Peers    *peer.Prober
	Etcd     *etcdstats.Stats
	Pressure *host.Pressure
	Disk     *host.Disk
	Net      *host.Net
}

// Report is the watch's latest word on this member.
type Report struct {
	State   State     `json:"state"`
	Since   time.Time `json:"since"`
	At      time.Time `json:"at"`
	Reasons []Reason  `json:"reasons"`
	// Raw is this moment's verdict before hysteresis.
	Raw     State   `json:"raw"`
	Figures Figures `json:"figures"`
}

// Figures are the numbers behind a report, for status and metrics.
// Durations are in seconds in JSON.
type Figures struct {
	Window             Seconds            `json:"windowSeconds"`
	FsyncProbeP99      Seconds            `json:"fsyncProbeP99Seconds"`
	FsyncProbeInFlight Seconds            `json:"fsyncProbeInFlightSeconds"`
	WALFsyncP99        Seconds            `json:"walFsyncP99Seconds"`
	BackendCommitP99   Seconds            `json:"backendCommitP99Seconds"`
	HeartbeatFailures  float64            `json:"heartbeatFailures"`
	SlowApplies        float64            `json:"slowApplies"`
	LeaderChanges      float64            `json:"leaderChanges"`
	HasLeader          bool               `json:"hasLeader"`
	IsLeader           bool               `json:"isLeader"`
	IOPressure         float64            `json:"ioPressureFull"`
	CPUPressure        float64            `json:"cpuPressureSome"`
	MemoryPressure     float64            `json:"memoryPressureFull"`
	DiskDevice         string             `json:"diskDevice,omitempty"`
	DiskUtilization    float64            `json:"diskUtilization"`
	DiskWriteLatency   Seconds            `json:"diskWriteLatencySeconds"`
	NetDropsPerSec     float64            `json:"netDropsPerSecond"`
	TCPRetransPerSec   float64            `json:"tcpRetransmitsPerSecond"`
	PeerRTTP99         map[string]Seconds `json:"peerRttP99Seconds,omitempty"`
	Unavailable        []string           `json:"unavailable,omitempty"`
	peerStats          map[string]peer.PeerStats
}

// Seconds is a duration that marshals as float seconds.
type Seconds time.Duration

func (s Seconds) MarshalJSON() ([]byte, error) {
	return strconv.AppendFloat(nil, time.Duration(s).Seconds(), 'g', -1, 64), nil
}

// UnmarshalJSON reads what MarshalJSON writes.
func (s *Seconds) UnmarshalJSON(b []byte) error {
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return fmt.Errorf("seconds: %w", err)
	}
	*s = Seconds(f * float64(time.Second))
	return nil
}

// probeCloseWait bounds the removal of the probe files at the end of Run.
const probeCloseWait = time.Second

// Watcher samples, judges and keeps the latest Report.
type Watcher struct {
	src    Sources
	t      Thresholds
	window time.Duration
	lg     *zap.Logger
	// OnReport, if set, gets every report, in order, from Run's goroutine.
	OnReport func(prev, cur Report)

	judge Judge

	nudge chan struct{} // a judgement wanted before the next tick

	mu       sync.Mutex
	report   Report
	reported map[string]bool // sources whose unavailability was logged
}

// minNudgeGap spaces judgements asked for by Nudge.
const minNudgeGap = 100 * time.Millisecond

// NewWatcher judges src against t over window; recoverAfter is the
// hysteresis.
func NewWatcher(src Sources, t Thresholds, window, recoverAfter time.Duration, lg *zap.Logger) *Watcher {
	return &Watcher{src: src, t: t, window: window, lg: lg, judge: Judge{RecoverAfter: recoverAfter},
		reported: map[string]bool{}, nudge: make(chan struct{}, 1)}
}

// Nudge asks Run for a judgement now rather than at the next tick. A probe
// that has just seen a slow fsync asks, so a disk that turns slow is judged
// (and a leader moved off it) within a fraction of the interval, while a
// healthy host is still sampled only once an interval. Nudges closer than
// minNudgeGap to the last judgement are dropped.
func (w *Watcher) Nudge() {
	select {
	case w.nudge <- struct{}{}:
	default:
	}
}

// Report is the latest report; State OK with no At before the first tick.
func (w *Watcher) Report() Report {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.report
}

// Run starts the probes and the peer prober, then judges every interval
// until ctx ends.
func (w *Watcher) Run(ctx context.Context, interval time.Duration) error {
	var wg sync.WaitGroup
	defer func() {
		wg.Wait()
		// Removing a probe file is a metadata write on the very disk the
		// probe watches; on a hung disk it never returns. Wait a moment,
		// then leave it: the next start truncates the file anyway.
		closed := make(chan struct{})
		go func() {
			defer close(closed)
			for _, p := range w.src.Probes {
				p.Close()
			}
		}()
		select {
		case <-closed:
		case <-time.After(probeCloseWait):
			w.lg.Warn("fsync probe file not removed: the disk does not answer")
		}
	}()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for _, p := range w.src.Probes {
		wg.Go(func() {
			if err := p.Run(ctx); err != nil {
				w.lg.Warn("fsync probe stopped", zap.String("path", p.Path()), zap.Error(err))
			}
		})
	}
	if w.src.Peers != nil {
		wg.Go(func() { w.src.Peers.Run(ctx) })
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			last = now
			w.Tick(now)
		case <-w.nudge:
			if now := time.Now(); now.Sub(last) >= minNudgeGap {
				last = now
				w.Tick(now)
			}
		}
	}
}

// Tick samples every source, judges and publishes one report.
func (w *Watcher) Tick(now time.Time) Report {
	in, fig := w.collect(now)
	raw, reasons := Evaluate(in, w.t)
	state, _ := w.judge.Update(now, raw)
	if reasons == nil {
		reasons = []Reason{}
	}
	r := Report{State: state, Since: w.judge.Since(), At: now, Reasons: reasons, Raw: raw, Figures: fig}

	w.mu.Lock()
	prev := w.report
	w.report = r
	w.mu.Unlock()
	if w.OnReport != nil {
		w.OnReport(prev, r)
	}
	return r
}

func (w *Watcher) collect(now time.Time) (Inputs, Figures) {
	in := Inputs{Window: w.window}
	var fig Figures
	fig.Window = Seconds(w.window)

	for _, p := range w.src.Probes {
		st, fl := p.Stats(now), p.InFlight(now)
		l := Latency{P99: st.P99, Count: st.Count, InFlight: fl, Last: st.Last, Known: st.Count > 0 || fl > 0}
		// Several probes: the slowest filesystem speaks for the member.
		if max(l.P99, l.InFlight) >= max(in.Probe.P99, in.Probe.InFlight) {
			in.Probe = l
		}
		if err := p.LastError(); err != nil {
			w.unavailable(&fig, "fsync-probe:"+p.Path(), err)
		}
	}
	fig.FsyncProbeP99, fig.FsyncProbeInFlight = Seconds(in.Probe.P99), Seconds(in.Probe.InFlight)

	if w.src.Etcd != nil {
		r, err := w.src.Etcd.Sample(now)
		if err != nil {
			w.unavailable(&fig, "etcd-metrics", err)
		}
		if r.Window > 0 {
			in.EtcdKnown = true
			in.WALFsync = Latency{P99: r.WALFsyncP99, Count: int(r.WALFsyncCount), Known: r.WALFsyncCount > 0}
			in.BackendCommit = Latency{P99: r.BackendCommitP99, Count: int(r.BackendCommitCount), Known: r.BackendCommitCount > 0}
			in.HeartbeatFailures, in.SlowApplies, in.LeaderChanges = r.HeartbeatFailures, r.SlowApplies, r.LeaderChanges
			in.HasLeader = r.HasLeader
		}
		fig.WALFsyncP99, fig.BackendCommitP99 = Seconds(r.WALFsyncP99), Seconds(r.BackendCommitP99)
		fig.HeartbeatFailures, fig.SlowApplies, fig.LeaderChanges = r.HeartbeatFailures, r.SlowApplies, r.LeaderChanges
		fig.HasLeader, fig.IsLeader = r.HasLeader, r.IsLeader
	}
	if w.src.Pressure != nil {
		r, err := w.src.Pressure.Sample(now)
		if err != nil {
			w.unavailable(&fig, "pressure", err)
		} else if r.Valid {
			in.PressureKnown = true
			in.IOFull, in.CPUSome, in.MemoryFull = r.IO.Full, r.CPU.Some, r.Memory.Full
			fig.IOPressure, fig.CPUPressure, fig.MemoryPressure = r.IO.Full, r.CPU.Some, r.Memory.Full
		}
	}
	if w.src.Disk != nil {
		r, err := w.src.Disk.Sample(now)
		if err != nil {
			w.unavailable(&fig, "diskstats", err)
		} else if r.Valid {
			fig.DiskDevice, fig.DiskUtilization, fig.DiskWriteLatency = r.Device, r.Utilization, Seconds(r.WriteLatency)
		}
	}
	if w.src.Net != nil {
		r, err := w.src.Net.Sample(now)
		if err != nil {
			w.unavailable(&fig, "net", err)
		} else if r.Valid {
			fig.NetDropsPerSec, fig.TCPRetransPerSec = r.DropsPerSec, r.RetransPerSec
		}
	}
	if w.src.Peers != nil {
		stats := w.src.Peers.Stats(now)
		fig.peerStats = stats
		fig.PeerRTTP99 = map[string]Seconds{}
		names := make([]string, 0, len(stats))
		for name := range stats {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			ps := stats[name]
			answered := !ps.LastSuccess.IsZero() && now.Sub(ps.LastSuccess) < w.window
			in.Peers = append(in.Peers, Peer{
				Name:     name,
				RTT:      Latency{P99: ps.RTT.P99, Count: ps.RTT.Count, InFlight: ps.InFlight, Last: ps.RTT.Last, Known: true},
				Losses:   ps.Losses,
				Answered: answered,
			})
			fig.PeerRTTP99[name] = Seconds(ps.RTT.P99)
		}
	}
	return in, fig
}

// unavailable notes a source that failed, logging it once: a host without
// PSI says so at start, not every second.
func (w *Watcher) unavailable(fig *Figures, name string, err error) {
	fig.Unavailable = append(fig.Unavailable, name)
	w.mu.Lock()
	seen := w.reported[name]
	w.reported[name] = true
	w.mu.Unlock()
	if seen {
		return
	}
	if errors.Is(err, host.ErrUnavailable) {
		w.lg.Info("health source unavailable on this host; judging without it", zap.String("source", name), zap.Error(err))
		return
	}
	w.lg.Warn("health source failed", zap.String("source", name), zap.Error(err))
}

// PeerStats is the latest peer view, for choosing a leadership target.
func (r Report) PeerStats() map[string]peer.PeerStats { return r.Figures.peerStats }
