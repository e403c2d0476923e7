// Package probe measures the disk under etcd as etcd's WAL uses it: a
// small write at the next offset of a preallocated file, then fdatasync. etcd's
// own fsync histogram only moves when an fsync completes; a disk that
// stops answering shows up here as a probe in flight for ever longer.
package probe

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/fileutil"

	"github.com/etcdvisor/etcdvisor/internal/health/window"
)

// FileName is the probe's file in the probed directory.
const FileName = ".etcdvisor-fsync-probe"

// Defaults for the zero fields of Options.
const (
	DefaultInterval  = 100 * time.Millisecond
	DefaultBlockSize = 2300 // bytes: fio's etcd test, about one small WAL entry
	DefaultFileSize  = 1 << 20
	DefaultSpan      = 10 * time.Second
)

// Options tune a Probe. Zero fields take the defaults above.
type Options struct {
	// Interval is the pause between the end of one probe and the start of
	// the next: a slow disk gets fewer probes, never overlapping ones.
	Interval time.Duration
	// BlockSize is the bytes written by each probe.
	BlockSize int
	// FileSize is the bytes cycled through before the file is cut back and
	// preallocated again; at least one block.
	FileSize int64
	// Span is how far back Stats looks.
	Span time.Duration
	// Observe, if set, is called with each completed write+fdatasync, one
	// call at a time (for a Prometheus histogram, say).
	Observe func(time.Duration)
	// OnSlow, if set, is called on its own goroutine once a
	// write+fdatasync has been in flight for SlowAfter, without waiting
	// for it to finish: a disk that has just turned slow shows in
	// InFlight long before its first slow fsync completes.
	OnSlow    func()
	SlowAfter time.Duration
}

// Probe writes and fdatasyncs one block at a time in a directory and keeps
// the latencies of the last Span. Its methods other than Run and Close may
// be called from any goroutine, and none of them waits for the disk.
type Probe struct {
	dir  string
	path string
	opts Options
	win  *window.Window
	buf  []byte

	// sync makes a written block durable. Tests replace it with a disk
	// that hangs.
	sync func(*os.File) error

	running atomic.Bool
	// start is when the write+fdatasync in flight began; nil when none is.
	// An atomic, not the mutex, so InFlight answers while the probe is
	// stuck in the kernel.
	start  atomic.Pointer[time.Time]
	errors atomic.Int64

	mu      sync.Mutex
	lastErr error
}

// New returns a probe of dir; Run starts it.
func New(dir string, opts Options) *Probe {
	if opts.Interval <= 0 {
		opts.Interval = DefaultInterval
	}
	if opts.BlockSize <= 0 {
		opts.BlockSize = DefaultBlockSize
	}
	if opts.FileSize <= 0 {
		opts.FileSize = DefaultFileSize
	}
	opts.FileSize = max(opts.FileSize, int64(opts.BlockSize))
	if opts.Span <= 0 {
		opts.Span = DefaultSpan
	}
	buf := make([]byte, opts.BlockSize)
	for i := range buf {
		buf[i] = byte(i) // not zeros, which some storage compresses away
	}
	return &Probe{
		dir:  dir,
		path: filepath.Join(dir, FileName),
		opts: opts,
		win:  window.New(opts.Span),
		buf:  buf,
		sync: Fdatasync,
	}
}

// Path is the probe's file.
func (p *Probe) Path() string { return p.path }

// Stats summarises the write+fdatasync latencies that completed in the
// Span before now.
func (p *Probe) Stats(now time.Time) window.Stats { return p.win.Stats(now) }

// InFlight is how long the write+fdatasync in progress has been running at
// now, or 0 between probes. A hung disk completes no probe, so Stats stays
// quiet; this grows.
func (p *Probe) InFlight(now time.Time) time.Duration {
	s := p.start.Load()
	if s == nil {
		return 0
	}
	return max(0, now.Sub(*s))
}

// LastError is the error of the latest probe: nil once a probe succeeds.
func (p *Probe) LastError() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lastErr
}

// Errors counts the failed probes since Run started.
func (p *Probe) Errors() int64 { return p.errors.Load() }

// Run probes until ctx is done, then returns nil. It returns an error at
// once only if the directory does not exist or is not one; later errors
// (ENOSPC, EIO, the directory removed) are kept for LastError and counted,
// and probing goes on. A probe stuck in the kernel does not hold Run up
// when ctx is done: it finishes, or not, on its own goroutine. Run may be
// called once.
func (p *Probe) Run(ctx context.Context) error {
	if !p.running.CompareAndSwap(false, true) {
		return errors.New("fsync probe: Run called twice")
	}
	if err := checkDir(p.dir); err != nil {
		return fmt.Errorf("fsync probe: %w", err)
	}
	var (
		f   *os.File
		off int64 // where the next block goes
	)
	defer func() {
		if f != nil {
			f.Close() // a stuck probe holds its own reference; the descriptor closes when it returns
		}
	}()
	bs := int64(p.opts.BlockSize)
	for {
		var (
			fresh bool
			err   error
		)
		f, fresh, err = p.ensureFile(f)
		if fresh {
			off = 0
		}
		if err == nil && off+bs > p.opts.FileSize {
			off, err = 0, p.prepare(f)
		}
		if err == nil {
			done := make(chan error, 1)
			go func(f *os.File, off int64) { done <- p.once(f, off) }(f, off)
			select {
			case err = <-done:
			case <-ctx.Done():
				return nil
			}
		}
		if err == nil {
			off += bs
		} else if f != nil {
			// After a failed write or fdatasync the file's state is
			// unknown (a failed fsync may drop the dirty pages): start
			// over with a fresh file.
			f.Close()
			f = nil
		}
		p.record(err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(p.opts.Interval):
		}
	}
}

// once times one write+fdatasync of a block at off in f.
func (p *Probe) once(f *os.File, off int64) error {
	start := time.Now()
	p.start.Store(&start)
	if p.opts.OnSlow != nil && p.opts.SlowAfter > 0 {
		slow := time.AfterFunc(p.opts.SlowAfter, p.opts.OnSlow)
		defer slow.Stop()
	}
	err := p.writeAndSync(f, off)
	d := time.Since(start)
	p.start.Store(nil) // before Observe, so an observer never sees itself in flight
	if err != nil {
		return err
	}
	p.win.Add(start.Add(d), d)
	if p.opts.Observe != nil {
		p.opts.Observe(d)
	}
	return nil
}

func (p *Probe) writeAndSync(f *os.File, off int64) error {
	if _, err := f.WriteAt(p.buf, off); err != nil {
		return err // *fs.PathError: names the op and the file
	}
	if err := p.sync(f); err != nil {
		return fmt.Errorf("fdatasync %s: %w", p.path, err)
	}
	return nil
}

// ensureFile returns f, or a new, prepared probe file (fresh) if f is nil
// or has been unlinked: probing a file that was removed, with its
// directory perhaps, would say nothing about the directory etcd uses.
func (p *Probe) ensureFile(f *os.File) (_ *os.File, fresh bool, _ error) {
	if f != nil {
		if fi, err := f.Stat(); err == nil && !unlinked(fi) {
			return f, false, nil
		}
		f.Close()
	}
	f, err := os.OpenFile(p.path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, false, err // *fs.PathError names the file; ENOENT if the directory went
	}
	if err := p.prepare(f); err != nil {
		f.Close()
		return nil, false, err
	}
	return f, true, nil
}

// prepare cuts f back and preallocates FileSize, as etcd does for each new
// WAL segment, so every write lands in freshly allocated blocks like a WAL
// append; rewriting blocks already written would time a cheaper fdatasync
// than etcd sees.
func (p *Probe) prepare(f *os.File) error {
	if err := f.Truncate(0); err != nil {
		return err
	}
	if err := fileutil.Preallocate(f, p.opts.FileSize, true); err != nil {
		return fmt.Errorf("preallocate %d bytes for %s: %w", p.opts.FileSize, p.path, err)
	}
	return nil
}

func (p *Probe) record(err error) {
	if err != nil {
		p.errors.Add(1)
	}
	p.mu.Lock()
	p.lastErr = err
	p.mu.Unlock()
}

// Close removes the probe's file. Call it after Run has returned.
func (p *Probe) Close() error {
	if err := os.Remove(p.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("fsync probe: %w", err)
	}
	return nil
}

func checkDir(dir string) error {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("directory %s does not exist", dir)
	case err != nil:
		return err
	case !fi.IsDir():
		return fmt.Errorf("%s is not a directory", dir)
	}
	return nil
}

func unlinked(fi fs.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && st.Nlink == 0
}
