package snapshot

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/robfig/cron/v3"
)

// Schedule says when snapshots are due: a cron expression ("0 * * * *")
// or an interval ("@every 30m"), plus a random delay so the members of a
// cluster, started together, do not all snapshot at once.
type Schedule struct {
	spec   string
	cron   cron.Schedule
	jitter time.Duration
	rand   func(n int64) int64 // rand.Int64N; tests fix it
}

// ParseSchedule reads spec as cron does (five fields, or @every, @hourly,
// @daily, ...).
func ParseSchedule(spec string, jitter time.Duration) (*Schedule, error) {
	c, err := cron.ParseStandard(spec)
	if err != nil {
		return nil, fmt.Errorf("schedule %q: %w (expected a cron expression like \"0 * * * *\" or \"@every 30m\")", spec, err)
	}
	if jitter < 0 {
		return nil, fmt.Errorf("jitter %s: must not be negative", jitter)
	}
	return &Schedule{spec: spec, cron: c, jitter: jitter, rand: rand.Int64N}, nil
}

// Next is when the first snapshot after t is due, jitter included.
func (s *Schedule) Next(t time.Time) time.Time {
	next := s.cron.Next(t)
	if s.jitter > 0 {
		next = next.Add(time.Duration(s.rand(int64(s.jitter))))
	}
	return next
}

// Interval is the gap between two runs after t, without jitter: a member
// whose newest snapshot is older than this at start takes one at once
// (the catch-up snapshot), rather than waiting a whole period more.
func (s *Schedule) Interval(t time.Time) time.Duration {
	first := s.cron.Next(t)
	return s.cron.Next(first).Sub(first)
}

// Due reports whether a catch-up snapshot is needed at start: there is
// none yet, or the newest is older than one interval.
func (s *Schedule) Due(newest time.Time, now time.Time) bool {
	return newest.IsZero() || now.Sub(newest) > s.Interval(now)
}

func (s *Schedule) String() string { return s.spec }
