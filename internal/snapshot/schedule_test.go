package snapshot

import (
	"strings"
	"testing"
	"time"
)

func TestScheduleNextIntervalAndCatchUp(t *testing.T) {
	base := time.Date(2026, 11, 25, 12, 10, 0, 0, time.UTC)
	tests := []struct {
		name         string
		spec         string
		jitter       time.Duration
		wantNext     time.Time
		wantInterval time.Duration
	}{
		{"an interval", "@every 30m", 0, base.Add(30 * time.Minute), 30 * time.Minute},
		{"hourly cron at minute 0", "0 * * * *", 0, time.Date(2026, 11, 25, 13, 0, 0, 0, time.UTC), time.Hour},
		{"jitter delays by the drawn amount", "0 * * * *", 10 * time.Minute, time.Date(2026, 11, 25, 13, 5, 0, 0, time.UTC), time.Hour},
		{"daily", "@daily", 0, time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC), 24 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ParseSchedule(tt.spec, tt.jitter)
			if err != nil {
				t.Fatal(err)
			}
			s.rand = func(n int64) int64 { return n / 2 } // a fixed draw: half the jitter
			if got := s.Next(base); !got.Equal(tt.wantNext) {
				t.Errorf("Next: got %s, want %s", got, tt.wantNext)
			}
			if got := s.Interval(base); got != tt.wantInterval {
				t.Errorf("Interval: got %s, want %s", got, tt.wantInterval)
			}
		})
	}
}

func TestACatchUpSnapshotIsDueWhenTheNewestIsOlderThanAnInterval(t *testing.T) {
	s, _ := ParseSchedule("@every 30m", 0)
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		name   string
		newest time.Time
		want   bool
	}{
		{"no snapshot yet", time.Time{}, true},
		{"a fresh one", now.Add(-10 * time.Minute), false},
		{"a stale one", now.Add(-2 * time.Hour), true},
	} {
		if got := s.Due(tt.newest, now); got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestABadScheduleNamesTheSpecAndTheExpectedForm(t *testing.T) {
	_, err := ParseSchedule("every half hour", 0)
	if err == nil || !strings.Contains(err.Error(), `schedule "every half hour"`) || !strings.Contains(err.Error(), "@every 30m") {
		t.Fatalf("got %v", err)
	}
}
