// Package window keeps the latencies observed over the last few seconds and
// answers quantiles over them. The starvation watch judges short windows:
// a Prometheus histogram's lifetime quantiles would hide a disk that turned
// slow a second ago behind hours of good samples.
package window

import (
	"slices"
	"sync"
	"time"
)

// maxObservations bounds memory if a caller observes far faster than the
// window drains; the oldest observations go first.
const maxObservations = 8192

type observation struct {
	at time.Time
	v  time.Duration
}

// Window holds timestamped durations younger than its span. It is safe for
// concurrent use.
type Window struct {
	span time.Duration

	mu  sync.Mutex
	obs []observation // ordered by at
}

// New returns a window that forgets observations older than span.
func New(span time.Duration) *Window {
	return &Window{span: span}
}

// Span is how far back the window looks.
func (w *Window) Span() time.Duration { return w.span }

// Add records v as observed at time at.
func (w *Window) Add(at time.Time, v time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if n := len(w.obs); n > 0 && at.Before(w.obs[n-1].at) {
		at = w.obs[n-1].at // keep the slice ordered if clocks step back
	}
	w.obs = append(w.obs, observation{at: at, v: v})
	if len(w.obs) > maxObservations {
		w.obs = slices.Delete(w.obs, 0, len(w.obs)-maxObservations)
	}
}

// Stats summarises one window.
type Stats struct {
	Count int
	P50   time.Duration
	P99   time.Duration
	Max   time.Duration
	// Last is the most recent observation.
	Last time.Duration
}

// Stats returns the summary of the observations in (now-span, now].
func (w *Window) Stats(now time.Time) Stats {
	w.mu.Lock()
	w.prune(now)
	vs := make([]time.Duration, len(w.obs))
	for i, o := range w.obs {
		vs[i] = o.v
	}
	w.mu.Unlock()

	if len(vs) == 0 {
		return Stats{}
	}
	last := vs[len(vs)-1]
	slices.Sort(vs)
	return Stats{
		Count: len(vs),
		P50:   quantile(vs, 0.50),
		P99:   quantile(vs, 0.99),
		Max:   vs[len(vs)-1],
		Last:  last,
	}
}

func (w *Window) prune(now time.Time) {
	cut := now.Add(-w.span)
	i := 0
	for i < len(w.obs) && !w.obs[i].at.After(cut) {
		i++
	}
	if i > 0 {
		w.obs = slices.Delete(w.obs, 0, i)
	}
}

// quantile returns the nearest-rank quantile of sorted values: the smallest
// value with at least q of the observations at or below it, except that a
// high quantile never rests on the two largest values alone. With the few
// dozen observations of a window, the nearest-rank p99 is the maximum, and
// one fsync that met a busy moment on a shared disk would make a healthy
// member critical; a real slowdown is slow three times and more.
func quantile(sorted []time.Duration, q float64) time.Duration {
	n := len(sorted)
	rank := int(q*float64(n)+0.999999999) - 1
	if n >= 3 {
		rank = min(rank, n-3)
	}
	rank = max(0, min(rank, n-1))
	return sorted[rank]
}
