package health

import (
	"strings"
	"testing"
	"time"
)

var defaults = DefaultThresholds(Thresholds{}, 100*time.Millisecond, time.Second)

func known(p99 time.Duration) Latency { return Latency{P99: p99, Count: 50, Known: true} }

func TestDefaultsDeriveFromRaftTimers(t *testing.T) {
	got := DefaultThresholds(Thresholds{FsyncDegraded: 5 * time.Millisecond}, 50*time.Millisecond, 500*time.Millisecond)
	if got.FsyncDegraded != 5*time.Millisecond {
		t.Errorf("a configured threshold was replaced: %v", got.FsyncDegraded)
	}
	if got.FsyncCritical != 25*time.Millisecond || got.PeerRTTCritical != 50*time.Millisecond || got.FsyncInFlightCritical != 150*time.Millisecond || got.StallAfter != 500*time.Millisecond {
		t.Errorf("derived %+v, want fsync-critical 25ms, peer-rtt-critical 50ms, fsync-in-flight-critical 150ms, stall-after 500ms", got)
	}
}

func TestEvaluate(t *testing.T) {
	peers := func(rtts ...time.Duration) []Peer {
		var ps []Peer
		for i, d := range rtts {
			ps = append(ps, Peer{Name: string(rune('b' + i)), RTT: known(d), Answered: d < time.Hour})
		}
		return ps
	}
	cases := []struct {
		name   string
		in     Inputs
		want   State
		reason string // a substring of the first reason
	}{
		{"all quiet", Inputs{Probe: known(time.Millisecond), WALFsync: known(2 * time.Millisecond), EtcdKnown: true, HasLeader: true, PressureKnown: true, Peers: peers(time.Millisecond, time.Millisecond)}, OK, ""},
		{"nothing known", Inputs{}, OK, ""},
		{"wal fsync over etcd's target", Inputs{WALFsync: known(12 * time.Millisecond)}, Degraded, "wal fsync p99 12ms over the last 5s (etcd's target: under 10ms)"},
		{"wal fsync over half a heartbeat", Inputs{WALFsync: known(84 * time.Millisecond)}, Critical, "wal fsync p99 84ms over the last 5s (budget 50ms: half of heartbeat-interval 100ms)"},
		{"probe in flight past the budget after a slow one", Inputs{Probe: Latency{P99: time.Millisecond, Last: 55 * time.Millisecond, InFlight: 60 * time.Millisecond, Known: true}}, Critical, "fsync probe p99 60ms"},
		{"probe in flight past the budget after a fast one", Inputs{Probe: Latency{P99: time.Millisecond, Last: time.Millisecond, InFlight: 60 * time.Millisecond, Known: true}}, OK, ""},
		{"stalled", Inputs{Probe: Latency{InFlight: 1500 * time.Millisecond, Known: true}}, Critical, "fsync probe stalled: one has not returned for 1.5s"},
		{"one probe in flight three heartbeats, the first slow one", Inputs{Probe: Latency{P99: time.Millisecond, Last: time.Millisecond, InFlight: 300 * time.Millisecond, Known: true}}, Critical, "fsync probe: one has not returned for 300ms (limit 300ms"},
		{"one probe in flight just under three heartbeats", Inputs{Probe: Latency{P99: time.Millisecond, Last: time.Millisecond, InFlight: 290 * time.Millisecond, Known: true}}, OK, ""},
		{"backend commit", Inputs{BackendCommit: known(30 * time.Millisecond)}, Degraded, "backend commit p99 30ms"},
		{"heartbeat failures", Inputs{EtcdKnown: true, HasLeader: true, HeartbeatFailures: 3}, Degraded, "3 heartbeats failed"},
		{"no leader", Inputs{EtcdKnown: true}, Degraded, "no leader"},
		{"io pressure", Inputs{PressureKnown: true, IOFull: 0.7}, Degraded, "IO pressure: tasks stalled 70%"},
		{"one slow peer of two", Inputs{Peers: peers(time.Millisecond, 300*time.Millisecond)}, Degraded, "round trip to peer c p99 300ms"},
		{"both peers slow: no quorum in time", Inputs{Peers: peers(200*time.Millisecond, 300*time.Millisecond)}, Critical, "only 0 of 2 peers answer within 100ms"},
		{"two of four peers silent: quorum still reachable", Inputs{Peers: peers(time.Millisecond, time.Millisecond, 2*time.Hour, 2*time.Hour)}, Degraded, "has not answered"},
		{"three of four peers silent", Inputs{Peers: peers(time.Millisecond, 2*time.Hour, 2*time.Hour, 2*time.Hour)}, Critical, "only 1 of 4 peers"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.in.Window = 5 * time.Second
			got, reasons := Evaluate(c.in, defaults)
			if got != c.want {
				t.Fatalf("state %v, want %v (reasons %v)", got, c.want, reasons)
			}
			if c.reason == "" {
				if len(reasons) != 0 {
					t.Fatalf("reasons %v for an ok member", reasons)
				}
				return
			}
			if len(reasons) == 0 || !strings.Contains(reasons[0].Text, c.reason) {
				t.Fatalf("first reason %v, want it to say %q", reasons, c.reason)
			}
			if reasons[0].State != got {
				t.Errorf("the first reason is %v, the state %v: worst must come first", reasons[0].State, got)
			}
		})
	}
}

func TestJudgeReportsWorseAtOnceAndBetterAfterItHolds(t *testing.T) {
	j := Judge{RecoverAfter: 10 * time.Second}
	t0 := time.Unix(0, 0)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }

	if s, changed := j.Update(at(0), Critical); s != Critical || !changed {
		t.Fatalf("critical at once: got %v changed %v", s, changed)
	}
	// Better for 9 s, then a relapse: still critical, never reported ok.
	for i := 1; i <= 9; i++ {
		if s, _ := j.Update(at(i), OK); s != Critical {
			t.Fatalf("at %ds reported %v before recover-after", i, s)
		}
	}
	j.Update(at(10), Critical)
	for i := 11; i < 21; i++ {
		if s, _ := j.Update(at(i), OK); s != Critical {
			t.Fatalf("at %ds reported %v: the relapse must restart the clock", i, s)
		}
	}
	if s, changed := j.Update(at(21), OK); s != OK || !changed {
		t.Fatalf("after 10s of ok: got %v changed %v", s, changed)
	}
	if !j.Since().Equal(at(21)) {
		t.Errorf("since %v, want %v", j.Since(), at(21))
	}
}

func TestJudgeReportsTheWorstStateOfTheRecovery(t *testing.T) {
	j := Judge{RecoverAfter: 5 * time.Second}
	t0 := time.Unix(0, 0)
	j.Update(t0, Critical)
	j.Update(t0.Add(time.Second), OK)
	j.Update(t0.Add(2*time.Second), Degraded) // restarts the clock at degraded
	if s, _ := j.Update(t0.Add(6*time.Second), OK); s != Critical {
		t.Fatalf("reported %v 4s into a degraded recovery", s)
	}
	if s, _ := j.Update(t0.Add(7*time.Second), OK); s != Degraded {
		t.Fatalf("reported %v, want degraded: ok has not held 5s without a degraded moment", s)
	}
}
