package probe

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// start runs p until the test ends and returns a func that stops it and
// waits for Run's result.
func start(t *testing.T, p *Probe) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	var err error
	stopped := false
	stop = func() error {
		if !stopped {
			cancel()
			err = <-done
			stopped = true
		}
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

// waitFor polls cond until it holds, or fails the test after a generous
// deadline; it never judges how fast the disk is.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestProbeRecordsObservationsAndStaysWithinFileSize(t *testing.T) {
	dir := t.TempDir()
	var observed atomic.Int64
	opts := Options{
		Interval:  time.Millisecond,
		BlockSize: 100,
		FileSize:  350, // three blocks, then a rewind
		Observe:   func(time.Duration) { observed.Add(1) },
	}
	p := New(dir, opts)
	stop := start(t, p)
	waitFor(t, "ten probes", func() bool { return observed.Load() >= 10 })

	st := p.Stats(time.Now())
	if st.Count == 0 || st.Max <= 0 || st.P99 > st.Max || st.P50 > st.P99 {
		t.Fatalf("stats = %+v, want observations with p50 <= p99 <= max", st)
	}
	fi, err := os.Stat(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() > opts.FileSize {
		t.Fatalf("probe file is %d bytes, want at most FileSize %d", fi.Size(), opts.FileSize)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("probe file mode = %v, want 0600", fi.Mode().Perm())
	}
	if err := p.LastError(); err != nil || p.Errors() != 0 {
		t.Fatalf("LastError = %v, Errors = %d; want none", err, p.Errors())
	}
	if err := stop(); err != nil {
		t.Fatalf("Run = %v, want nil when ctx is done", err)
	}
}

func TestProbeCloseRemovesTheFile(t *testing.T) {
	dir := t.TempDir()
	var observed atomic.Int64
	p := New(dir, Options{Interval: time.Millisecond, Observe: func(time.Duration) { observed.Add(1) }})
	stop := start(t, p)
	waitFor(t, "a probe", func() bool { return observed.Load() >= 1 })
	stop()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p.Path()); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("after Close: stat = %v, want the file gone", err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close = %v, want nil", err)
	}
}

func TestProbeRunRefusesAMissingDirectoryNamingIt(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "no-such-dir")
	err := New(dir, Options{}).Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("Run = %v, want an error saying %s does not exist", err, dir)
	}
}

func TestProbeRunRefusesAFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	err := New(file, Options{}).Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "is not a directory") {
		t.Fatalf("Run = %v, want an error saying %s is not a directory", err, file)
	}
}

// hungDisk is a sync step that blocks until released, as fdatasync does on
// a disk that stopped answering.
type hungDisk struct {
	entered chan struct{}
	release chan struct{}
}

func newHungDisk() *hungDisk {
	return &hungDisk{entered: make(chan struct{}, 1), release: make(chan struct{})}
}

func (h *hungDisk) sync(*os.File) error {
	select {
	case h.entered <- struct{}{}:
	default:
	}
	<-h.release
	return nil
}

func TestProbeInFlightGrowsWhileTheDiskHangs(t *testing.T) {
	var observed atomic.Int64
	p := New(t.TempDir(), Options{Interval: time.Millisecond, Observe: func(time.Duration) { observed.Add(1) }})
	disk := newHungDisk()
	p.sync = disk.sync
	if got := p.InFlight(time.Now()); got != 0 {
		t.Fatalf("InFlight before Run = %v, want 0", got)
	}
	stop := start(t, p)
	<-disk.entered

	// InFlight answers while the probe is stuck, and measures from the
	// probe's start: an hour from now it has been stuck over an hour.
	if got := p.InFlight(time.Now().Add(time.Hour)); got < time.Hour {
		t.Fatalf("InFlight an hour on = %v, want at least an hour", got)
	}
	if n := observed.Load(); n != 0 {
		t.Fatalf("%d observations while the disk hangs, want 0", n)
	}
	// Run returns when asked, although the probe is still stuck.
	if err := stop(); err != nil {
		t.Fatalf("Run = %v", err)
	}
	close(disk.release)
	waitFor(t, "the stuck probe to finish", func() bool { return p.InFlight(time.Now()) == 0 })
}

// OnSlow speaks while the slow fsync is still in flight.
func TestProbeOnSlowCallsWhileTheFsyncHangs(t *testing.T) {
	slow := make(chan struct{}, 1)
	p := New(t.TempDir(), Options{Interval: time.Millisecond, SlowAfter: 20 * time.Millisecond, OnSlow: func() {
		select {
		case slow <- struct{}{}:
		default:
		}
	}})
	disk := newHungDisk()
	p.sync = disk.sync
	stop := start(t, p)
	<-disk.entered
	<-slow // with the fsync still hanging: release has not been closed
	if p.InFlight(time.Now()) < 20*time.Millisecond {
		t.Fatalf("OnSlow called with the fsync in flight only %v", p.InFlight(time.Now()))
	}
	close(disk.release)
	if err := stop(); err != nil {
		t.Fatalf("Run = %v", err)
	}
}

func TestProbeInFlightIsZeroBetweenProbes(t *testing.T) {
	p := New(t.TempDir(), Options{Interval: time.Hour})
	var observed atomic.Int64
	p.opts.Observe = func(time.Duration) { observed.Add(1) }
	start(t, p)
	waitFor(t, "the first probe", func() bool { return observed.Load() == 1 })
	// The next probe is an hour away.
	if got := p.InFlight(time.Now()); got != 0 {
		t.Fatalf("InFlight between probes = %v, want 0", got)
	}
}

func TestProbeCountsErrorsAndKeepsGoing(t *testing.T) {
	p := New(t.TempDir(), Options{Interval: time.Millisecond})
	var failing atomic.Bool
	failing.Store(true)
	p.sync = func(f *os.File) error {
		if failing.Load() {
			return syscall.EIO
		}
		return Fdatasync(f)
	}
	start(t, p)
	waitFor(t, "two failed probes", func() bool { return p.Errors() >= 2 })
	if err := p.LastError(); !errors.Is(err, syscall.EIO) || !strings.Contains(err.Error(), "fdatasync "+p.Path()) {
		t.Fatalf("LastError = %v, want EIO from fdatasync naming %s", err, p.Path())
	}

	failing.Store(false)
	waitFor(t, "a good probe", func() bool { return p.Stats(time.Now()).Count > 0 })
	waitFor(t, "LastError to clear", func() bool { return p.LastError() == nil })
}

func TestProbeReportsItsDirectoryRemovedAndKeepsGoing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	var observed atomic.Int64
	p := New(dir, Options{Interval: time.Millisecond, Observe: func(time.Duration) { observed.Add(1) }})
	stop := start(t, p)
	waitFor(t, "a probe", func() bool { return observed.Load() >= 1 })

	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "an error", func() bool { return p.Errors() > 0 })
	if err := p.LastError(); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("LastError = %v, want ENOENT naming %s", err, dir)
	}

	// Probing resumes when the directory is back.
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "LastError to clear", func() bool { return p.LastError() == nil })
	if err := stop(); err != nil {
		t.Fatalf("Run = %v, want nil: errors after the start are not fatal", err)
	}
}

func TestProbeRunTwiceIsRefused(t *testing.T) {
	p := New(t.TempDir(), Options{Interval: time.Hour})
	start(t, p)
	waitFor(t, "Run to start", func() bool { return p.running.Load() })
	if err := p.Run(context.Background()); err == nil {
		t.Fatal("a second Run was accepted")
	}
}
