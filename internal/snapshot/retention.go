package snapshot

import (
	"sort"
	"time"
)

// Policy decides which snapshots to keep. Zero values switch a rule off;
// a zero Policy keeps everything.
type Policy struct {
	// Keep is how many of the newest snapshots to keep.
	Keep int
	// MaxAge removes snapshots older than this.
	MaxAge time.Duration
	// Hourly, Daily and Weekly keep the newest snapshot of each of the
	// last so many hours, days and weeks (the thinning operators know
	// from backup tools: dense recent history, sparse old history).
	Hourly, Daily, Weekly int
}

// Entry is one good snapshot on disk.
type Entry struct {
	Name      string
	CreatedAt time.Time
}

// Apply splits snapshots into those to keep and those to delete under p at
// now. A snapshot is kept when it is the newest (never deleted, whatever
// the rules say: a failed later snapshot must not leave the host with
// none), or when it is younger than MaxAge and one of Keep, Hourly, Daily
// or Weekly selects it; with none of those set, age alone decides.
func (p Policy) Apply(snapshots []Entry, now time.Time) (keep, remove []Entry) {
	if len(snapshots) == 0 {
		return nil, nil
	}
	s := append([]Entry(nil), snapshots...)
	sort.SliceStable(s, func(i, j int) bool { return s[i].CreatedAt.After(s[j].CreatedAt) })

	selected := make([]bool, len(s))
	selected[0] = true
	for i := 0; i < p.Keep && i < len(s); i++ {
		selected[i] = true
	}
	p.thin(s, selected, p.Hourly, func(t time.Time) time.Time { return t.Truncate(time.Hour) })
	p.thin(s, selected, p.Daily, func(t time.Time) time.Time {
		y, m, d := t.Date()
		return time.Date(y, m, d, 0, 0, 0, 0, t.Location())
	})
	p.thin(s, selected, p.Weekly, func(t time.Time) time.Time {
		y, m, d := t.Date()
		day := time.Date(y, m, d, 0, 0, 0, 0, t.Location())
		return day.AddDate(0, 0, -int(day.Weekday()))
	})
	countRules := p.Keep > 0 || p.Hourly > 0 || p.Daily > 0 || p.Weekly > 0

	for i, e := range s {
		tooOld := p.MaxAge > 0 && now.Sub(e.CreatedAt) > p.MaxAge
		switch {
		case i == 0:
			keep = append(keep, e)
		case tooOld:
			remove = append(remove, e)
		case !countRules || selected[i]:
			keep = append(keep, e)
		default:
			remove = append(remove, e)
		}
	}
	return keep, remove
}

// thin selects the newest snapshot in each of the newest n buckets.
func (p Policy) thin(s []Entry, selected []bool, n int, bucket func(time.Time) time.Time) {
	if n <= 0 {
		return
	}
	var last time.Time
	seen := 0
	for i, e := range s { // newest first
		b := bucket(e.CreatedAt.UTC())
		if seen > 0 && b.Equal(last) {
			continue
		}
		if seen == n {
			return
		}
		selected[i] = true
		last = b
		seen++
	}
}
