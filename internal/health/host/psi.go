package host

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/procfs"
)

// psiResources are the files of /proc/pressure the sampler reads, in the
// order of PressureReading's fields.
var psiResources = [3]string{"cpu", "io", "memory"}

// Stall is one resource's pressure over the interval between two samples.
type Stall struct {
	// Some is the fraction of wall time (0..1) in which at least one task
	// was stalled waiting for the resource.
	Some float64
	// Full is the fraction of wall time (0..1) in which all non-idle tasks
	// were stalled at once. It is 0 when HasFull is false.
	Full float64
	// HasFull is false when the kernel prints no "full" line for the
	// resource (cpu before Linux 5.13).
	HasFull bool
	// SomeAvg10 and FullAvg10 are the kernel's own 10-second averages as
	// fractions (0..1; the kernel prints percent), for display: too slow
	// for judging, but set from the first sample on.
	SomeAvg10, FullAvg10 float64
}

// PressureReading is the pressure stall information over one interval.
type PressureReading struct {
	// Valid is false for the first sample, and for one that follows a
	// counter reset or a clock that did not move forward: there is no
	// baseline to take a difference from, so Some and Full are zero. The
	// avg10 fields are set regardless.
	Valid bool
	// Interval is the wall time since the previous sample; 0 when not Valid.
	Interval        time.Duration
	CPU, IO, Memory Stall
}

// Pressure samples /proc/pressure/{cpu,io,memory}. It keeps the previous
// sample's stall totals (microseconds) and reports the fraction of the time
// since then spent stalled. It is safe for concurrent use, but each Sample
// measures from the previous one whoever called it: give each consumer its
// own Pressure.
type Pressure struct {
	root Root

	mu     sync.Mutex
	prev   [3]procfs.PSIStats
	prevAt time.Time
}

// NewPressure returns a sampler of root/proc/pressure.
func NewPressure(root Root) *Pressure {
	return &Pressure{root: root}
}

// Sample reads the three pressure files at now. Without /proc/pressure
// (kernel before 4.20, or built or booted without PSI) it returns an error
// wrapping ErrUnavailable.
func (p *Pressure) Sample(now time.Time) (PressureReading, error) {
	p.mu.Lock()
	defer p.mu.Unlock()

	var cur [3]procfs.PSIStats
	procFS, err := procfs.NewFS(p.root.path("proc"))
	if err != nil {
		return PressureReading{}, readErr(p.root.path("proc"), err)
	}
	for i, res := range psiResources {
		path := p.root.path("proc", "pressure", res)
		st, err := procFS.PSIStatsForResource(res)
		if errors.Is(err, procfs.ErrFileRead) {
			return PressureReading{}, readErr(path, err)
		}
		if err != nil {
			return PressureReading{}, fmt.Errorf("parse %s: %w", path, err)
		}
		if st.Some == nil {
			return PressureReading{}, fmt.Errorf("parse %s: no \"some\" line", path)
		}
		cur[i] = st
	}
	prev, prevAt := p.prev, p.prevAt
	p.prev, p.prevAt = cur, now

	var r PressureReading
	stalls := [3]*Stall{&r.CPU, &r.IO, &r.Memory}
	for i, st := range cur {
		s := stalls[i]
		s.SomeAvg10 = st.Some.Avg10 / 100
		if st.Full != nil {
			s.HasFull = true
			s.FullAvg10 = st.Full.Avg10 / 100
		}
	}
	d, ok := interval(prevAt, now)
	if !ok || !forward(psiTotals(prev), psiTotals(cur)) {
		return r, nil
	}
	r.Valid, r.Interval = true, d
	wall := float64(d.Microseconds())
	for i := range cur {
		s := stalls[i]
		s.Some = fraction(float64(cur[i].Some.Total-prev[i].Some.Total), wall)
		if s.HasFull && prev[i].Full != nil {
			s.Full = fraction(float64(cur[i].Full.Total-prev[i].Full.Total), wall)
		}
	}
	return r, nil
}

// psiTotals lists the stall totals of a sample, "full" as 0 where absent,
// for the reset check.
func psiTotals(st [3]procfs.PSIStats) []uint64 {
	var out []uint64
	for _, s := range st {
		var some, full uint64
		if s.Some != nil {
			some = s.Some.Total
		}
		if s.Full != nil {
			full = s.Full.Total
		}
		out = append(out, some, full)
	}
	return out
}
