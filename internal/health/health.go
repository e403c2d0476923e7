// Package health judges whether this etcd member is starving: it turns the
// samplers' figures (fsync probe, etcd's own latencies and counters, IO and
// CPU pressure, peer round trips) into ok, degraded or critical, with
// reasons a person can act on. Budgets derive from the member's raft
// timers: a leader whose fsync takes half a heartbeat interval is already
// delaying heartbeats.
package health

import (
	"fmt"
	"slices"
	"time"
)

// State is the verdict on this member.
type State int

const (
	OK State = iota
	Degraded
	Critical
)

func (s State) String() string {
	switch s {
	case OK:
		return "ok"
	case Degraded:
		return "degraded"
	case Critical:
		return "critical"
	}
	return fmt.Sprintf("state(%d)", int(s))
}

// MarshalText keeps the JSON stable for scripts: "ok", "degraded",
// "critical".
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads what MarshalText writes.
func (s *State) UnmarshalText(b []byte) error {
	for _, st := range []State{OK, Degraded, Critical} {
		if string(b) == st.String() {
			*s = st
			return nil
		}
	}
	return fmt.Errorf("unknown health state %q", b)
}

// Thresholds are the budgets. Each pair is (degraded, critical).
type Thresholds struct {
	FsyncDegraded, FsyncCritical                 time.Duration
	BackendCommitDegraded, BackendCommitCritical time.Duration
	PeerRTTDegraded, PeerRTTCritical             time.Duration
	// FsyncInFlightCritical: one probe fsync outstanding this long makes
	// the member critical on its own, the first slow one included.
	FsyncInFlightCritical time.Duration
	// StallAfter: an fsync outstanding this long is a stalled disk.
	StallAfter time.Duration
	// Pressure: the share of time (0..1) tasks were stalled.
	IOPressureDegraded, CPUPressureDegraded, MemoryPressureDegraded float64

	// Heartbeat and Election are the member's raft timers, for reasons.
	Heartbeat, Election time.Duration
}

// DefaultThresholds derives budgets from the raft timers, keeping any
// configured (non-zero) value in t. etcd's published targets set the
// degraded budgets (fsync p99 under 10 ms, backend commit p99 under 25 ms);
// the critical ones are what delays heartbeats: a WAL fsync of half a
// heartbeat interval on the leader, a commit or a peer round trip of a
// whole one, a single fsync that has kept the followers without a word
// from the leader for three.
func DefaultThresholds(t Thresholds, heartbeat, election time.Duration) Thresholds {
	set := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	t.Heartbeat, t.Election = heartbeat, election
	set(&t.FsyncDegraded, 10*time.Millisecond)
	set(&t.FsyncCritical, heartbeat/2)
	set(&t.BackendCommitDegraded, 25*time.Millisecond)
	set(&t.BackendCommitCritical, heartbeat)
	set(&t.PeerRTTDegraded, heartbeat/2)
	set(&t.PeerRTTCritical, heartbeat)
	set(&t.FsyncInFlightCritical, 3*heartbeat)
	set(&t.StallAfter, election)
	if t.IOPressureDegraded == 0 {
		t.IOPressureDegraded = 0.5
	}
	if t.CPUPressureDegraded == 0 {
		t.CPUPressureDegraded = 0.8
	}
	if t.MemoryPressureDegraded == 0 {
		t.MemoryPressureDegraded = 0.2
	}
	return t
}

// Latency is one latency signal over the window: its p99 and how many
// observations it rests on; InFlight is how long the oldest unfinished one
// has been waiting (a stalled disk completes nothing, so only this shows it).
type Latency struct {
	P99      time.Duration
	Count    int
	InFlight time.Duration
	// Last is the most recent completed observation; 0 when unknown.
	Last  time.Duration
	Known bool
}

// Peer is the round trip to one peer.
type Peer struct {
	Name     string
	RTT      Latency
	Losses   int
	Answered bool // answered at least once within the window
}

// Inputs is everything the judgement looks at, as of one moment. Unknown
// (unavailable) signals are left zero with Known false.
type Inputs struct {
	Window time.Duration

	Probe         Latency // own fsync probe on the data dir
	WALFsync      Latency // etcd's etcd_disk_wal_fsync_duration_seconds
	BackendCommit Latency // etcd's etcd_disk_backend_commit_duration_seconds

	HeartbeatFailures float64 // increase within the window
	SlowApplies       float64
	LeaderChanges     float64
	HasLeader         bool
	EtcdKnown         bool

	IOFull, CPUSome, MemoryFull float64 // PSI share of the last interval
	PressureKnown               bool

	Peers []Peer
}

// Reason is one finding: which signal, how bad, and a sentence.
type Reason struct {
	Signal string `json:"signal"`
	State  State  `json:"state"`
	Text   string `json:"text"`
	// Stalled: an fsync has not returned for stall-after; the disk hangs.
	Stalled bool `json:"stalled,omitempty"`
}

// Evaluate judges one moment's inputs; the worst reason sets the state.
// Reasons come worst first.
func Evaluate(in Inputs, t Thresholds) (State, []Reason) {
	var rs []Reason
	add := func(signal string, s State, format string, args ...any) {
		rs = append(rs, Reason{Signal: signal, State: s, Text: fmt.Sprintf(format, args...)})
	}
	win := short(in.Window)

	latency := func(signal, what string, l Latency, degraded, critical, inFlightCritical time.Duration, budget string) {
		if !l.Known {
			return
		}
		if l.InFlight >= t.StallAfter {
			add(signal, Critical, "%s stalled: one has not returned for %s (stall-after %s: election-timeout %s)",
				what, short(l.InFlight), short(t.StallAfter), short(t.Election))
			rs[len(rs)-1].Stalled = true
			return
		}
		// One fsync this long, not yet returned, is enough: a leader's
		// raft sends nothing while its WAL fsync runs, not even
		// heartbeats, and hands leadership over only between two of them.
		// Waiting for it to finish, or for a second slow one, would cost
		// the cluster's writes as long again.
		if inFlightCritical > 0 && l.InFlight >= inFlightCritical {
			add(signal, Critical, "%s: one has not returned for %s (limit %s: a leader sends no heartbeat meanwhile)",
				what, short(l.InFlight), short(inFlightCritical))
			return
		}
		// One in flight past the budget counts when the one before it was
		// slow too: a slowdown seen twice in a row is caught a tick early,
		// a single slow fsync is not a slow disk.
		worst := l.P99
		if l.Last >= degraded {
			worst = max(worst, l.InFlight)
		}
		switch {
		case worst >= critical:
			add(signal, Critical, "%s p99 %s over the last %s (budget %s: %s)", what, short(worst), win, short(critical), budget)
		case worst >= degraded:
			add(signal, Degraded, "%s p99 %s over the last %s (etcd's target: under %s)", what, short(worst), win, short(degraded))
		}
	}
	fsyncBudget := fmt.Sprintf("half of heartbeat-interval %s", short(t.Heartbeat))
	latency("fsync-probe", "fsync probe", in.Probe, t.FsyncDegraded, t.FsyncCritical, t.FsyncInFlightCritical, fsyncBudget)
	latency("wal-fsync", "wal fsync", in.WALFsync, t.FsyncDegraded, t.FsyncCritical, 0, fsyncBudget)
	latency("backend-commit", "backend commit", in.BackendCommit, t.BackendCommitDegraded, t.BackendCommitCritical, 0,
		fmt.Sprintf("heartbeat-interval %s", short(t.Heartbeat)))

	if in.EtcdKnown {
		if in.HeartbeatFailures > 0 {
			add("heartbeat-failures", Degraded, "%.0f heartbeats failed to send in the last %s", in.HeartbeatFailures, win)
		}
		if in.SlowApplies > 0 {
			add("slow-applies", Degraded, "%.0f applies took longer than expected in the last %s", in.SlowApplies, win)
		}
		if !in.HasLeader {
			add("leader", Degraded, "the member sees no leader")
		}
	}
	if in.PressureKnown {
		pressure := func(signal, what string, v, limit float64) {
			if v >= limit {
				add(signal, Degraded, "%s pressure: tasks stalled %.0f%% of the last interval (limit %.0f%%)", what, v*100, limit*100)
			}
		}
		pressure("io-pressure", "IO", in.IOFull, t.IOPressureDegraded)
		pressure("cpu-pressure", "CPU", in.CPUSome, t.CPUPressureDegraded)
		pressure("memory-pressure", "memory", in.MemoryFull, t.MemoryPressureDegraded)
	}
	peerReasons(in, t, add)

	slices.SortStableFunc(rs, func(a, b Reason) int { return int(b.State) - int(a.State) })
	state := OK
	if len(rs) > 0 {
		state = rs[0].State
	}
	return state, rs
}

// peerReasons judges the network. A slow link to one peer may be that
// peer's trouble; this member is critical only when it cannot reach a
// quorum of its cluster quickly, which is what its heartbeats need.
func peerReasons(in Inputs, t Thresholds, add func(string, State, string, ...any)) {
	if len(in.Peers) == 0 {
		return
	}
	slow := 0
	for _, p := range in.Peers {
		// As for fsyncs: a request in flight past the budget counts once
		// the last answer was slow too, or once it has waited a whole
		// election timeout.
		worst := p.RTT.P99
		if p.RTT.Last >= t.PeerRTTDegraded || p.RTT.InFlight >= t.StallAfter {
			worst = max(worst, p.RTT.InFlight)
		}
		switch {
		case !p.Answered:
			slow++
			add("peer-rtt", Degraded, "peer %s has not answered in the last %s (%d probes lost)", p.Name, short(in.Window), p.Losses)
		case worst >= t.PeerRTTCritical:
			slow++
			add("peer-rtt", Degraded, "round trip to peer %s p99 %s (budget %s: heartbeat-interval %s)", p.Name, short(worst), short(t.PeerRTTCritical), short(t.Heartbeat))
		case worst >= t.PeerRTTDegraded:
			add("peer-rtt", Degraded, "round trip to peer %s p99 %s (budget %s: half of heartbeat-interval)", p.Name, short(worst), short(t.PeerRTTDegraded))
		}
	}
	// Members are the peers plus this one; a quorum needs a majority.
	members := len(in.Peers) + 1
	fast := len(in.Peers) - slow
	if fast+1 < members/2+1 {
		add("network", Critical, "only %d of %d peers answer within %s: this member cannot reach a quorum in time", fast, len(in.Peers), short(t.PeerRTTCritical))
	}
}

// short prints a duration the way people read latencies: 84ms, 1.2s, 350µs.
func short(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.3gs", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.3gms", float64(d)/float64(time.Millisecond))
	case d > 0:
		return fmt.Sprintf("%.3gµs", float64(d)/float64(time.Microsecond))
	}
	return "0s"
}

// Judge adds hysteresis: a worse state is reported at once (detection must
// beat the election timeout), a better one only after it has held for
// RecoverAfter, so a member on the edge does not flap between states and
// trigger a leadership move every time.
type Judge struct {
	RecoverAfter time.Duration

	state      State
	since      time.Time // when state began
	better     State     // the better state waiting to be reported
	betterFrom time.Time // zero while none waits
}

// Update takes one moment's raw verdict and returns the reported state and
// whether it changed.
func (j *Judge) Update(now time.Time, raw State) (State, bool) {
	if j.since.IsZero() {
		j.since = now // the first judgement starts the first state
	}
	switch {
	case raw > j.state:
		j.state, j.since, j.betterFrom = raw, now, time.Time{}
		return j.state, true
	case raw == j.state:
		j.betterFrom = time.Time{}
		return j.state, false
	}
	if j.betterFrom.IsZero() || raw > j.better {
		// A new, or a less good, improvement restarts the clock: the state
		// reported must have held the whole time.
		j.better, j.betterFrom = raw, now
	}
	if now.Sub(j.betterFrom) >= j.RecoverAfter {
		j.state, j.since, j.betterFrom = j.better, now, time.Time{}
		return j.state, true
	}
	return j.state, false
}

// Since is when the reported state began.
func (j *Judge) Since() time.Time { return j.since }
