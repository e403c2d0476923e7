package snapshot

import (
	"fmt"
	"testing"
	"time"
)

func at(hoursAgo float64) time.Time {
	return time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC).Add(-time.Duration(hoursAgo * float64(time.Hour)))
}

var now = at(0)

func names(es []Entry) string {
	return fmt.Sprint(func() []string {
		var out []string
		for _, e := range es {
			out = append(out, e.Name)
		}
		return out
	}())
}

func TestRetentionPolicies(t *testing.T) {
	// Every 30 minutes for 3 days back from 12:00, newest first: s0 at
	// 12:00, s1 at 11:30, s2 at 11:00, s25 at 23:30 the day before, ...
	var series []Entry
	for i := 0; i < 144; i++ {
		series = append(series, Entry{Name: fmt.Sprintf("s%d", i), CreatedAt: at(float64(i) * 0.5)})
	}
	tests := []struct {
		name       string
		policy     Policy
		snapshots  []Entry
		wantKeep   string
		wantRemove int
	}{
		{"a zero policy keeps everything", Policy{}, series[:3], "[s0 s1 s2]", 0},
		{"keep the newest three", Policy{Keep: 3}, series[:6], "[s0 s1 s2]", 3},
		{"max age removes older ones", Policy{MaxAge: 90 * time.Minute}, series[:6], "[s0 s1 s2 s3]", 2},
		{"hourly keeps the newest of each hour", Policy{Hourly: 3}, series[:8], "[s0 s1 s3]", 5},
		{"daily keeps the newest of each day", Policy{Daily: 3}, series, "[s0 s25 s73]", 141},
		{"rules add up", Policy{Keep: 2, Daily: 2}, series, "[s0 s1 s25]", 141},
		{
			"the newest is kept even when too old",
			Policy{MaxAge: time.Hour},
			[]Entry{{"old", at(48)}, {"older", at(72)}},
			"[old]", 1,
		},
		{"nothing to do", Policy{Keep: 1}, nil, "[]", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keep, remove := tt.policy.Apply(tt.snapshots, now)
			if got := names(keep); got != tt.wantKeep || len(remove) != tt.wantRemove {
				t.Errorf("got keep %s remove %d, want keep %s remove %d", got, len(remove), tt.wantKeep, tt.wantRemove)
			}
			if len(keep)+len(remove) != len(tt.snapshots) {
				t.Errorf("lost track of snapshots: %d kept + %d removed != %d", len(keep), len(remove), len(tt.snapshots))
			}
		})
	}
}
