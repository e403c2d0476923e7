package host

import (
	"testing"
	"time"
)

func TestPressureIsTheShareOfTheIntervalSpentStalled(t *testing.T) {
	s := newStage(t)
	s.load(early, nil)
	p := NewPressure(s.root)
	first, err := p.Sample(t0)
	if err != nil {
		t.Fatal(err)
	}
	if first.Valid || first.IO.Some != 0 || first.CPU.Some != 0 {
		t.Errorf("first sample: got %+v, want not valid and zero fractions", first)
	}
	if !near(first.IO.SomeAvg10, 0.0033) || !near(first.IO.FullAvg10, 0.0018) {
		t.Errorf("first sample: got io avg10 some %v full %v, want 0.0033 and 0.0018 (the kernel's percent as a fraction)", first.IO.SomeAvg10, first.IO.FullAvg10)
	}

	s.load(later, nil)
	r, err := p.Sample(t10)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Valid || r.Interval != 10*time.Second {
		t.Fatalf("got valid %v interval %s, want valid over 10s", r.Valid, r.Interval)
	}
	// Over 10 s: cpu some +2 s; io some +1.5 s, full +0.5 s; memory none.
	for _, tt := range []struct {
		name       string
		got        Stall
		some, full float64
	}{
		{"cpu", r.CPU, 0.2, 0},
		{"io", r.IO, 0.15, 0.05},
		{"memory", r.Memory, 0, 0},
	} {
		if !near(tt.got.Some, tt.some) || !near(tt.got.Full, tt.full) || !tt.got.HasFull {
			t.Errorf("%s: got some %v full %v has-full %v, want %v, %v, true", tt.name, tt.got.Some, tt.got.Full, tt.got.HasFull, tt.some, tt.full)
		}
	}
	if !near(r.IO.SomeAvg10, 0.148) {
		t.Errorf("got io some avg10 %v, want 0.148", r.IO.SomeAvg10)
	}
}

func TestPressureTotalsGoingBackwardsStartANewBaseline(t *testing.T) {
	s := newStage(t)
	p := NewPressure(s.root)
	s.load(later, nil)
	if _, err := p.Sample(t0); err != nil {
		t.Fatal(err)
	}
	s.load(early, nil)
	r, err := p.Sample(t10)
	if err != nil {
		t.Fatal(err)
	}
	if r.Valid || r.IO.Some != 0 {
		t.Fatalf("after totals went backwards: got %+v, want not valid and zero fractions", r)
	}
	s.load(later, nil)
	r, err = p.Sample(t20)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Valid || !near(r.IO.Some, 0.15) {
		t.Errorf("got valid %v io some %v, want valid 0.15 measured from the new baseline", r.Valid, r.IO.Some)
	}
}

func TestPressureWithAClockThatDidNotMoveIsNotValid(t *testing.T) {
	s := newStage(t)
	s.load(early, nil)
	p := NewPressure(s.root)
	p.Sample(t10)
	s.load(later, nil)
	for _, now := range []time.Time{t10, t0} {
		if r, err := p.Sample(now); err != nil || r.Valid {
			t.Errorf("at %s after a sample at %s: got valid %v, %v; want not valid", now, t10, r.Valid, err)
		}
	}
}

func TestPressureOfCPUWithoutAFullLineHasNoFull(t *testing.T) {
	s := newStage(t)
	p := NewPressure(s.root)
	s.load(early, map[string]string{"proc/pressure/cpu": "some avg10=2.70 avg60=17.32 avg300=15.61 total=1896396149\n"})
	p.Sample(t0)
	s.load(later, map[string]string{"proc/pressure/cpu": "some avg10=19.50 avg60=17.70 avg300=15.70 total=1898396149\n"})
	r, err := p.Sample(t10)
	if err != nil {
		t.Fatal(err)
	}
	if r.CPU.HasFull || r.CPU.Full != 0 || !near(r.CPU.Some, 0.2) {
		t.Errorf("got cpu %+v, want has-full false, full 0, some 0.2", r.CPU)
	}
	if !r.IO.HasFull {
		t.Errorf("got io has-full false, want true: io has a full line")
	}
}

func TestPressureWithoutItsFilesIsUnavailable(t *testing.T) {
	s := newStage(t)
	s.load(early, map[string]string{"proc/pressure/cpu": "", "proc/pressure/io": "", "proc/pressure/memory": ""})
	_, err := NewPressure(s.root).Sample(t0)
	wantUnavailable(t, err, "proc/pressure/cpu")

	_, err = NewPressure(Root(t.TempDir())).Sample(t0)
	wantUnavailable(t, err, "/proc")
}

func TestMalformedPressureIsAnErrorNotUnavailable(t *testing.T) {
	for _, tt := range []struct {
		name, content string
	}{
		{"a value that is not a number", "some avg10=x avg60=0.21 avg300=0.99 total=8537362\n"},
		{"no some line", "full avg10=0.00 avg60=0.13 avg300=0.96 total=8183134\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := newStage(t)
			s.load(early, map[string]string{"proc/pressure/io": tt.content})
			_, err := NewPressure(s.root).Sample(t0)
			wantBroken(t, err, "proc/pressure/io")
		})
	}
}

// A total read a moment after the caller's clock can run past the wall time
// between samples; the share of time stalled is still at most all of it.
func TestPressureNeverExceedsAllOfTheInterval(t *testing.T) {
	s := newStage(t)
	p := NewPressure(s.root)
	s.load(early, nil)
	p.Sample(t0)
	s.load(later, nil) // io some +1.5 s of stall
	r, err := p.Sample(t0.Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if r.IO.Some != 1 || !near(r.IO.Full, 0.5) {
		t.Errorf("got io some %v full %v over 1 s, want 1 (capped) and 0.5", r.IO.Some, r.IO.Full)
	}
}
