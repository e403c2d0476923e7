package supervisor

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.uber.org/zap"

	"github.com/etcdvisor/etcdvisor/internal/api"
	"github.com/etcdvisor/etcdvisor/internal/fence"
	"github.com/etcdvisor/etcdvisor/internal/health"
	"github.com/etcdvisor/etcdvisor/internal/health/etcdstats"
	"github.com/etcdvisor/etcdvisor/internal/health/host"
	"github.com/etcdvisor/etcdvisor/internal/health/peer"
	"github.com/etcdvisor/etcdvisor/internal/health/probe"
)

// errStalled ends the daemon when the disk under the member stopped
// answering: etcd cannot recover from a hung fsync by itself, and systemd
// restarts a unit that exits non-zero.
var errStalled = errors.New("the disk under the etcd member is stalled")

// stallExitGrace is added to the member's stop timeout after a stall: the
// time the rest of the daemon gets to stop before the process just exits.
const stallExitGrace = 5 * time.Second

// watch is the starvation watch as the daemon runs it: the watcher, the
// leadership mover and the stall exit.
type watch struct {
	s       *Supervisor
	w       *health.Watcher
	peers   *peer.Prober
	t       health.Thresholds
	stallFn time.Duration // stalled this long: exit; <= 0 never
	fatal   chan error
	gate    *fence.Gate

	mu           sync.Mutex
	stalledSince time.Time
	exiting      bool // the stall exit has begun
	mover        leaderMover

	fenceMu sync.Mutex   // one fence decision at a time: the watch's, or the mover's
	movedAt atomic.Int64 // unix nanos of the last leadership move off this member
}

func newWatch(s *Supervisor) (*watch, error) {
	h, e := s.cfg.Health, s.cfg.Etcd
	t := health.DefaultThresholds(health.Thresholds{
		FsyncDegraded:          h.FsyncDegraded.D(),
		FsyncCritical:          h.FsyncCritical.D(),
		BackendCommitDegraded:  h.BackendCommitDegraded.D(),
		BackendCommitCritical:  h.BackendCommitCritical.D(),
		PeerRTTDegraded:        h.PeerRTTDegraded.D(),
		PeerRTTCritical:        h.PeerRTTCritical.D(),
		FsyncInFlightCritical:  h.FsyncInFlightCritical.D(),
		StallAfter:             h.StallAfter.D(),
		IOPressureDegraded:     h.IOPressureDegraded,
		CPUPressureDegraded:    h.CPUPressureDegraded,
		MemoryPressureDegraded: h.MemoryPressureDegraded,
	}, e.HeartbeatInterval.D(), e.ElectionTimeout.D())
	lg := s.lg.Named("health")

	var peerTLS *tls.Config
	if pt := e.PeerTLS; pt.Enabled() {
		cfg, err := transport.TLSInfo{CertFile: pt.CertFile, KeyFile: pt.KeyFile, TrustedCAFile: pt.TrustedCAFile}.ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("etcd.peer-transport-security: %w", err)
		}
		peerTLS = cfg
	}
	rtt := s.metrics.Health.PeerRTT
	peers := peer.New(peer.Options{
		Timeout: e.ElectionTimeout.D(),
		Span:    h.Window.D(),
		TLS:     peerTLS,
		Observe: func(name string, d time.Duration) { rtt.WithLabelValues(name).Observe(d.Seconds()) },
	})
	src := health.Sources{
		Peers:    peers,
		Etcd:     etcdstats.New(prometheus.DefaultGatherer, h.Window.D()),
		Pressure: host.NewPressure("/"),
		Net:      host.NewNet("/"),
	}
	fsync := s.metrics.Health.FsyncProbe
	var wt *watch // set below, before any probe runs
	// A slow fsync asks for a judgement once the next probe (it starts a
	// probe interval later) is in flight well past the critical budget,
	// and once more a probe interval after that: a disk that stays slow is
	// then critical at once, not at the next tick.
	nudgeAfter := h.ProbeInterval.D() + t.FsyncCritical*3/2
	observe := func(d time.Duration) {
		fsync.Observe(d.Seconds())
		if d >= t.FsyncDegraded {
			time.AfterFunc(nudgeAfter, wt.w.Nudge)
			time.AfterFunc(nudgeAfter+h.ProbeInterval.D(), wt.w.Nudge)
		}
	}
	for _, dir := range probeDirs(e.DataDir, e.WalDir) {
		src.Probes = append(src.Probes, probe.New(dir, probe.Options{
			Interval:  h.ProbeInterval.D(),
			Span:      h.Window.D(),
			Observe:   observe,
			OnSlow:    func() { wt.w.Nudge() },
			SlowAfter: t.FsyncInFlightCritical,
		}))
	}
	if dev, err := host.DeviceFor("/", e.DataDir); err != nil {
		lg.Info("no block device statistics for the data dir; judging without them", zap.String("data-dir", e.DataDir), zap.Error(err))
	} else {
		src.Disk = host.NewDisk("/", dev)
	}

	stallExit := h.StallExitAfter.D()
	if stallExit == 0 {
		stallExit = 10 * e.ElectionTimeout.D()
	}
	wt = &watch{s: s, peers: peers, t: t, stallFn: stallExit, fatal: make(chan error, 1), gate: fence.New(e.Name)}
	s.metrics.Health.CountGate(wt.gate)
	wt.mover = leaderMover{
		s: s, lg: lg, interval: h.LeaderMoveInterval.D(), enabled: h.LeaderMove, gate: wt.gate, onMoved: wt.fenceAfterMove,
		moveLeader: func(ctx context.Context, to uint64) error {
			_, err := s.member.Client().MoveLeader(ctx, to)
			return err
		},
		peerTLS: peerTLS,
	}
	wt.w = health.NewWatcher(src, t, h.Window.D(), h.RecoverAfter.D(), lg)
	wt.w.OnReport = wt.onReport
	return wt, nil
}

// probeDirs are the dirs to probe: the data dir, and the WAL dir when it
// is elsewhere (etcd fsyncs the WAL there). The probe writes its file into
// the dir, which must exist; the WAL dir is etcd's to create.
func probeDirs(dataDir, walDir string) []string {
	dirs := []string{dataDir}
	if walDir != "" && filepath.Clean(walDir) != filepath.Clean(dataDir) {
		if parent := filepath.Dir(filepath.Clean(walDir)); !strings.HasPrefix(parent+"/", filepath.Clean(dataDir)+"/") {
			dirs = append(dirs, parent)
		}
	}
	return dirs
}

// run runs the watch until ctx ends, or returns errStalled.
func (wt *watch) run(ctx context.Context, ready <-chan struct{}) error {
	select {
	case <-ready:
	case <-ctx.Done():
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- wt.w.Run(ctx, wt.s.cfg.Health.Interval.D()) }()
	select {
	case err := <-wt.fatal:
		cancel()
		// Not <-done: Watcher.Run ends by removing the probe file, on the stalled disk.
		return err
	case err := <-done:
		return err
	}
}

// setPeers keeps the RTT prober's list in step with the member list.
func (wt *watch) setPeers(st api.Status) {
	if st.Error != "" || len(st.Members) == 0 {
		return
	}
	peers := map[string][]string{}
	for _, m := range st.Members {
		if m.ID == st.MemberID || len(m.PeerURLs) == 0 {
			continue
		}
		name := m.Name
		if name == "" {
			name = m.ID // added, not started: no name yet
		}
		peers[name] = m.PeerURLs
	}
	wt.peers.SetPeers(peers)
}

// onReport runs after every judgement: it logs state changes, feeds the
// metrics, moves leadership off a critical leader and exits on a stall.
func (wt *watch) onReport(prev, cur health.Report) {
	s := wt.s
	s.metrics.Health.Set(cur)
	if prev.At.IsZero() || prev.State != cur.State {
		fields := []zap.Field{zap.Stringer("state", cur.State), zap.Stringer("was", prev.State), zap.Strings("reasons", reasonTexts(cur.Reasons))}
		switch {
		case prev.At.IsZero() && cur.State == health.OK:
			s.lg.Info("starvation watch started", fields...)
		case cur.State > prev.State:
			s.lg.Warn("member health changed", fields...)
		default:
			s.lg.Info("member health changed", fields...)
		}
	}
	// The move acts on this moment's verdict too, not only the reported
	// state: hysteresis holds "critical" for recover-after once the cause
	// is gone (a peer that was not yet started, say), and a move then
	// would hand leadership away for nothing.
	if cur.State == health.Critical && cur.Raw == health.Critical {
		wt.mover.maybeMove(cur)
	}
	wt.fence(cur)
	wt.checkStall(cur)
}

// fence closes the gate to client requests while this member is critical,
// and opens it again once it is not.
//
// Preconditions, each guarding the cluster against a fence that would
// refuse every client:
//   - health.fence is on;
//   - this member has been critical for fenceDwell: a member that turned
//     critical a moment ago has published it, and its peers that turned
//     critical at the same moment (a disk hiccup shared by the whole
//     host, say) have published theirs by then. A leadership move off
//     this member during this critical spell ends the wait: the move
//     found a healthy target, and from now on every write that comes
//     through this member waits for its slow disk to apply it;
//   - from this member's view, enough other voters to form a quorum answer
//     quickly and do not publish that they are critical themselves.
func (wt *watch) fence(r health.Report) {
	if !wt.s.cfg.Health.Fence {
		return
	}
	wt.fenceMu.Lock()
	defer wt.fenceMu.Unlock()
	closed, _ := wt.gate.Closed()
	critical := r.State == health.Critical
	healthy, quorum := 0, 0
	if critical {
		healthy, quorum = wt.healthyVotersElsewhere(r)
	}
	moved := wt.movedAt.Load()
	movedOff := moved != 0 && moved >= r.Since.UnixNano()
	dwelt := r.At.Sub(r.Since) >= fenceDwell || movedOff
	want := critical && dwelt && healthy >= quorum
	switch {
	case want && !closed:
		why := "critical"
		if len(r.Reasons) > 0 {
			why = r.Reasons[0].Text
		}
		wt.gate.Close(why)
		wt.s.metrics.Health.SetFenced(true)
		wt.s.lg.Warn("refusing client requests while this member is critical; clients go to the other members",
			zap.String("reason", why), zap.Int("healthy-voters-elsewhere", healthy), zap.Int("quorum", quorum))
	case !want && closed:
		wt.gate.Open()
		wt.s.metrics.Health.SetFenced(false)
		wt.s.lg.Info("serving client requests again", zap.Stringer("state", r.State),
			zap.Int("healthy-voters-elsewhere", healthy), zap.Int("quorum", quorum))
	case critical && dwelt && !want:
		wt.s.warnOnce("fence-quorum", "this member is critical but keeps serving clients: too few healthy voters elsewhere to fence it",
			zap.Int("healthy-voters-elsewhere", healthy), zap.Int("quorum", quorum))
	}
}

// fenceAfterMove fences at once after leadership moved off this member,
// and gives up the writes it took as leader that are still pending.
func (wt *watch) fenceAfterMove() {
	wt.movedAt.Store(time.Now().UnixNano())
	wt.gate.HandedOver()
	if r := wt.report(); r.State == health.Critical {
		wt.fence(r)
	}
}

// fenceDwell is how long a member must have been critical before it fences.
const fenceDwell = 2 * time.Second

// healthyVotersElsewhere counts the other voting members that answered
// this member's peer probes within the window and the RTT budget and whose
// etcdvisor does not publish that it is critical, and returns the
// cluster's quorum size.
func (wt *watch) healthyVotersElsewhere(r health.Report) (healthy, quorum int) {
	st := wt.s.lastStatus()
	recs := wt.s.registryRecent(wt.t.Heartbeat)
	voters := 0
	stats := r.PeerStats()
	for _, m := range st.Members {
		if m.IsLearner {
			continue
		}
		voters++
		if m.ID == st.MemberID {
			continue
		}
		if rec, ok := recs[m.Name]; ok && rec.Health == health.Critical.String() {
			continue
		}
		ps, ok := stats[m.Name]
		if ok && !ps.LastSuccess.IsZero() && r.At.Sub(ps.LastSuccess) < time.Duration(r.Figures.Window) &&
			ps.RTT.P99 < wt.t.PeerRTTCritical {
			healthy++
		}
	}
	return healthy, voters/2 + 1
}

// checkStall ends the daemon once the raw verdict has shown a stalled disk
// for stall-exit-after.
func (wt *watch) checkStall(r health.Report) {
	stalled := false
	for _, reason := range r.Reasons {
		stalled = stalled || reason.Stalled
	}
	wt.mu.Lock()
	defer wt.mu.Unlock()
	if !stalled {
		wt.stalledSince = time.Time{}
		return
	}
	if wt.stalledSince.IsZero() {
		wt.stalledSince = r.At
	}
	if wt.stallFn > 0 && r.At.Sub(wt.stalledSince) >= wt.stallFn && !wt.exiting {
		wt.exiting = true
		wt.s.lg.Error("disk stalled for too long; exiting so systemd restarts etcdvisor",
			zap.Duration("stalled-for", r.At.Sub(wt.stalledSince)), zap.Duration("stall-exit-after", wt.stallFn),
			zap.Strings("reasons", reasonTexts(r.Reasons)))
		select {
		case wt.fatal <- fmt.Errorf("%w for %s (health.stall-exit-after %s)", errStalled, r.At.Sub(wt.stalledSince).Round(time.Millisecond), wt.stallFn):
			// The orderly stop can itself hang on the stalled disk: any
			// part of the daemon may be waiting on etcd's backend, whose
			// commit waits on the fsync that never returns. Bound it.
			grace := 2*wt.s.cfg.Etcd.ElectionTimeout.D() + stallExitGrace
			time.AfterFunc(grace, func() {
				wt.s.lg.Error("the stop after a stalled disk did not finish; exiting now", zap.Duration("waited", grace))
				wt.s.lg.Sync()
				os.Exit(1)
			})
		default:
		}
	}
}

func (wt *watch) report() health.Report { return wt.w.Report() }

// stalled reports whether the last judgement saw a stalled disk.
func (wt *watch) stalled() bool {
	wt.mu.Lock()
	defer wt.mu.Unlock()
	return !wt.stalledSince.IsZero()
}

func reasonTexts(rs []health.Reason) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.Text
	}
	return out
}

// healthLine is the health part of systemd's STATUS line.
func healthLine(r health.Report) string {
	if r.At.IsZero() {
		return ""
	}
	if len(r.Reasons) == 0 {
		return "health " + r.State.String()
	}
	return "health " + r.State.String() + ": " + r.Reasons[0].Text
}
