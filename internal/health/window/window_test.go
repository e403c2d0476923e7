package window

import (
	"testing"
	"time"
)

func TestStatsCoverOnlyTheSpan(t *testing.T) {
	w := New(10 * time.Second)
	t0 := time.Unix(1000, 0)
	// An old slow observation, then 100 fast ones inside the window.
	w.Add(t0, 900*time.Millisecond)
	for i := range 100 {
		w.Add(t0.Add(5*time.Second+time.Duration(i)*time.Millisecond), time.Duration(i+1)*time.Millisecond)
	}
	got := w.Stats(t0.Add(10 * time.Second))
	// t0 is exactly span old: forgotten.
	if got.Count != 100 {
		t.Fatalf("count = %d, want 100", got.Count)
	}
	if got.P50 != 50*time.Millisecond || got.P99 != 98*time.Millisecond || got.Max != 100*time.Millisecond || got.Last != 100*time.Millisecond {
		t.Fatalf("stats = %+v, want p50 50ms p99 98ms (the two largest are never p99 alone) max 100ms last 100ms", got)
	}
	if got := w.Stats(t0.Add(time.Hour)); got.Count != 0 || got.P99 != 0 {
		t.Fatalf("after the span: %+v, want empty", got)
	}
}

func TestTwoOutliersDoNotMakeTheP99(t *testing.T) {
	w := New(time.Minute)
	now := time.Unix(0, 0)
	for range 48 {
		w.Add(now, time.Millisecond)
	}
	w.Add(now, 60*time.Millisecond)
	w.Add(now, 90*time.Millisecond)
	if got := w.Stats(now); got.P99 != time.Millisecond || got.Max != 90*time.Millisecond {
		t.Fatalf("two slow of 50: %+v, want p99 1ms, max 90ms", got)
	}
	w.Add(now, 70*time.Millisecond) // a third: now it is a pattern
	if got := w.Stats(now); got.P99 != 60*time.Millisecond {
		t.Fatalf("three slow of 51: p99 %v, want 60ms", got.P99)
	}
}

func TestFewObservationsP99IsTheMaximum(t *testing.T) {
	w := New(time.Second)
	now := time.Unix(0, 0)
	w.Add(now, time.Millisecond)
	w.Add(now, 80*time.Millisecond)
	if got := w.Stats(now); got.P99 != 80*time.Millisecond || got.P50 != time.Millisecond {
		t.Fatalf("stats = %+v, want p99 80ms p50 1ms", got)
	}
}

func TestMemoryIsBounded(t *testing.T) {
	w := New(time.Hour)
	now := time.Unix(0, 0)
	for i := range maxObservations + 100 {
		w.Add(now, time.Duration(i))
	}
	got := w.Stats(now)
	if got.Count != maxObservations {
		t.Fatalf("count = %d, want %d", got.Count, maxObservations)
	}
	if got.Max != time.Duration(maxObservations+99) {
		t.Fatalf("max = %v: the newest observations must be kept", got.Max)
	}
}

func TestClockSteppingBackKeepsOrder(t *testing.T) {
	w := New(10 * time.Second)
	t0 := time.Unix(100, 0)
	w.Add(t0, time.Millisecond)
	w.Add(t0.Add(-time.Minute), 5*time.Millisecond) // recorded at t0
	if got := w.Stats(t0.Add(5 * time.Second)); got.Count != 2 {
		t.Fatalf("count = %d, want 2", got.Count)
	}
}
