// Package host samples the host's pressure, disk and network counters from
// /proc and /sys, and turns them into rates over the interval between two
// samples. The starvation watch judges windows of seconds: the kernel's own
// averages (PSI avg10, lifetime disk counters) are too slow to show a disk
// that turned slow a second ago.
//
// Every sampler reads under a Root, so tests point it at fixture files, and
// returns an error wrapping ErrUnavailable when this host lacks the source
// (no PSI on an old kernel, a data dir with no block device). The caller
// logs that once and stops asking; this package never logs.
package host

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"syscall"
	"time"
)

// Root is the filesystem root the samplers read /proc and /sys under: "/"
// in production, a testdata directory in tests.
type Root string

// path joins elements under the root: Root("/x").path("proc", "diskstats")
// is "/x/proc/diskstats".
func (r Root) path(elem ...string) string {
	return filepath.Join(append([]string{string(r)}, elem...)...)
}

// ErrUnavailable is wrapped by the errors of a sampler whose source this
// host does not have; the rest of the message names the file or device.
// Any other error means the source exists but could not be read or parsed.
var ErrUnavailable = errors.New("source unavailable")

// readErr wraps an error reading path. A missing file, or one the kernel
// refuses as unsupported (PSI disabled at boot), makes the source
// unavailable; anything else (permissions, I/O) is a real failure.
// The message names the file that failed, which is not always path: procfs
// checks that root/proc and root/sys exist before opening anything.
func readErr(path string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		path = pe.Path
	}
	var errno syscall.Errno
	if errors.As(err, &errno) && (errno == syscall.ENOENT || errno == syscall.EOPNOTSUPP) {
		return fmt.Errorf("%w: read %s: %w", ErrUnavailable, path, errno)
	}
	return fmt.Errorf("read %s: %w", path, err)
}

// interval is the wall time since the previous sample, or false when there
// is none to measure from: no previous sample, or a clock that did not move
// forward. Callers pass time.Now(), whose monotonic reading keeps a step of
// the wall clock out of the difference.
func interval(prev, now time.Time) (time.Duration, bool) {
	if prev.IsZero() {
		return 0, false
	}
	d := now.Sub(prev)
	return d, d > 0
}

// forward reports whether every counter in cur is at least its value in
// prev. A counter that went backwards was reset (device replaced, reboot of
// a virtual device) or wrapped (diskstats prints the tick fields as 32-bit
// milliseconds, which wrap after about 49.7 days of accumulated time); either
// way there is no rate to take, and cur becomes the new baseline.
func forward(prev, cur []uint64) bool {
	for i := range prev {
		if cur[i] < prev[i] {
			return false
		}
	}
	return true
}

// perSecond is n events over d.
func perSecond(n uint64, d time.Duration) float64 {
	return float64(n) / d.Seconds()
}

// fraction is part over whole, capped at 1: a counter read a little after
// the caller's clock may run slightly past the wall time between samples.
func fraction(part, whole float64) float64 {
	return min(part/whole, 1)
}
