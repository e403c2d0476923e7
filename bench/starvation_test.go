package main

import (
	"strings"
	"testing"
	"time"

	"github.com/etcdvisor/etcdvisor/internal/config"
)

// TestStarvationConfigSwitchesBothActionsAndValidates checks the configs
// the -starvation mode writes against etcdvisor's strict loader.
func TestStarvationConfigSwitchesBothActionsAndValidates(t *testing.T) {
	ms, err := planLoopback(t.TempDir(), "test", starveMembers)
	if err != nil {
		t.Fatal(err)
	}
	for _, act := range []bool{false, true} {
		for _, m := range ms {
			text := starveConfig(m, act)
			cfg, err := config.Parse("etcdvisor.yaml", []byte(text))
			if err != nil {
				t.Fatalf("act %v, member %s: %v\n%s", act, m.name, err, text)
			}
			if err := cfg.Validate(); err != nil {
				t.Fatalf("act %v, member %s: %v\n%s", act, m.name, err, text)
			}
			if cfg.Health.LeaderMove != act || cfg.Health.Fence != act {
				t.Errorf("act %v: got leader-move %v, fence %v", act, cfg.Health.LeaderMove, cfg.Health.Fence)
			}
			if cfg.Log.Level != "info" {
				t.Errorf("act %v: got log level %q, want info", act, cfg.Log.Level)
			}
			if !strings.HasPrefix(m.client, "http://127.0.0.1:") || !strings.HasPrefix(m.peer, "http://127.0.0.1:") {
				t.Errorf("member %s is not on 127.0.0.1: %s %s", m.name, m.client, m.peer)
			}
		}
	}
}

func TestMetricSumAddsEveryLabelSet(t *testing.T) {
	body := []byte(`# HELP etcdvisor_leader_moves_total Leadership moved.
# TYPE etcdvisor_leader_moves_total counter
etcdvisor_leader_moves_total{reason="fsync-probe"} 2
etcdvisor_leader_moves_total{reason="wal-fsync"} 1
etcdvisor_leader_moves_totally_other 7
etcdvisor_health_state 2
`)
	for _, tc := range []struct {
		name   string
		metric string
		want   float64
		found  bool
	}{
		{"counter vector", "etcdvisor_leader_moves_total", 3, true},
		{"gauge", "etcdvisor_health_state", 2, true},
		{"absent", "etcdvisor_health_fenced", 0, false},
	} {
		got, found := metricSum(body, tc.metric)
		if got != tc.want || found != tc.found {
			t.Errorf("%s: got %v %v, want %v %v", tc.name, got, found, tc.want, tc.found)
		}
	}
}

func TestQuantileIsNearestRank(t *testing.T) {
	var xs []time.Duration
	for i := 1; i <= 100; i++ {
		xs = append(xs, time.Duration(i)*time.Millisecond)
	}
	for _, tc := range []struct {
		name string
		xs   []time.Duration
		q    float64
		want time.Duration
	}{
		{"p50 of 1..100", xs, 0.50, 50 * time.Millisecond},
		{"p99 of 1..100", xs, 0.99, 99 * time.Millisecond},
		{"p99 of one", xs[:1], 0.99, time.Millisecond},
		{"none", nil, 0.5, 0},
	} {
		if got := quantile(tc.xs, tc.q); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestLineFilterPassesWholeLinesSplitAcrossWrites(t *testing.T) {
	out := newTailBuffer(1 << 10)
	f := &lineFilter{to: out, keep: func(line []byte) bool { return !containsAny(line, noisyLog) }}
	for _, chunk := range []string{"keep", " one\napply request took", " too long\nkeep two\npart"} {
		f.Write([]byte(chunk))
	}
	if got, want := out.lastLines(10), "keep one\nkeep two"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestEventsReadsActionsAndTimesThemFromTheFault(t *testing.T) {
	fault := time.Date(2026, 11, 26, 1, 26, 10, 0, time.UTC)
	acts := newTailBuffer(1 << 12)
	acts.Write([]byte(`{"level":"warn","ts":"2026-11-26T01:26:10.93Z","caller":"supervisor/health.go:170","msg":"member health changed","state":"critical","was":"degraded","reasons":["fsync probe p99 204ms"]}
{"level":"warn","ts":"2026-11-26T01:26:10.93Z","caller":"supervisor/health.go:204","msg":"refusing client requests while this member is critical; clients go to the other members","reason":"fsync probe p99 204ms"}
{"level":"warn","ts":"2026-11-26T01:26:09.5Z","caller":"supervisor/health.go:170","msg":"member health changed","state":"degraded","was":"ok","reasons":["wal fsync p99 16ms"]}
{"level":"warn","ts":"2026-11-26T01:26:11.44Z","logger":"health","caller":"supervisor/leadermove.go:133","msg":"moved leadership off this critical member","to":"a","took":"503ms"}
`))
	c := &starveCluster{ms: []member{{name: "b"}}, acts: []*tailBuffer{acts}}
	got := c.events(fault)
	want := []event{
		{member: "b", at: -500 * time.Millisecond, msg: msgHealth, detail: "ok -> degraded: wal fsync p99 16ms"},
		{member: "b", at: 930 * time.Millisecond, msg: evCritical, detail: "degraded -> critical: fsync probe p99 204ms"},
		{member: "b", at: 930 * time.Millisecond, msg: msgFenced, detail: "fsync probe p99 204ms"},
		{member: "b", at: 1440 * time.Millisecond, msg: msgMoved, detail: "to a, took 503ms"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d events %+v, want %d", len(got), got, len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("event %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
	e := episode{slow: "b", fenced: -1, timeline: got}
	e.fromEvents(fault, fault.Add(10*time.Second))
	if e.fenced != 930*time.Millisecond || e.othersFenced != 0 || e.falseCritical != 0 {
		t.Errorf("got fenced %v, others fenced %d, false criticals %d; want 930ms, 0, 0", e.fenced, e.othersFenced, e.falseCritical)
	}
}

func TestAnEpisodeThatBeganWithAMemberCriticalMissesEveryGoal(t *testing.T) {
	good := episode{
		target: starveTargets[2], detect: 900 * time.Millisecond, moved: 1250 * time.Millisecond,
		baseP50: 3 * time.Millisecond, p50: 3 * time.Millisecond, longest: 800 * time.Millisecond,
		elections: 1, moves: 1,
	}
	for goal, met := range good.goals() {
		if !met {
			t.Errorf("calm episode: goal %s not met", goal)
		}
	}
	if len(good.goals()) != 5 {
		t.Errorf("got %d goals, want 5", len(good.goals()))
	}
	bad := good
	bad.preFault = "a b c"
	if bad.valid() {
		t.Error("an episode that began with members critical is valid")
	}
	for _, goal := range []string{"detect", "move", "p50", "stuck", "elections"} {
		if bad.goals()[goal] {
			t.Errorf("episode that began critical: goal %s met", goal)
		}
	}
}
