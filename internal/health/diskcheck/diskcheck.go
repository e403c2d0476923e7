// Package diskcheck tells whether a disk is fast enough for etcd, with the
// test operators run with fio:
//
//	fio --rw=write --ioengine=sync --fdatasync=1 --directory=DIR --size=22m --bs=2300 --name=etcd
//
// sequential writes of one block each followed by fdatasync, as etcd's WAL
// appends, judged by the 99th percentile of the fdatasync latencies.
package diskcheck

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/fileutil"

	"github.com/etcdvisor/etcdvisor/internal/health/probe"
)

// Defaults for the zero fields of Options: fio's etcd test.
const (
	DefaultSize      = 22 << 20
	DefaultBlockSize = 2300
)

// EtcdTarget is the fdatasync p99 etcd needs: etcd's hardware guide asks
// for the 99th percentile of WAL fdatasync under 10ms, and above it a
// leader's fsync-bound heartbeats start missing the election timeout.
const EtcdTarget = 10 * time.Millisecond

// Options tune Run. Zero fields take the defaults.
type Options struct {
	// Size is the bytes to write in all, in whole blocks.
	Size int64
	// BlockSize is the bytes of each write.
	BlockSize int
	// Target is the fdatasync p99 the disk must stay below; default
	// EtcdTarget.
	Target time.Duration
	// Progress, if set, is called after each write+fdatasync with the
	// bytes written so far and the bytes to write in all.
	Progress func(written, total int64)
}

// Result is what a check measured. The quantiles are exact, over every
// fdatasync of the run, and time the fdatasync alone, as fio's "sync
// percentiles" do, so the numbers compare with fio's.
type Result struct {
	Dir       string
	BlockSize int
	Written   int64 // bytes
	Count     int   // writes, each followed by one fdatasync
	P50       time.Duration
	P90       time.Duration
	P99       time.Duration
	Max       time.Duration
	Took      time.Duration // the whole run, writes included
	Target    time.Duration
	Pass      bool   // P99 < Target
	Verdict   string // one sentence for people
}

// Run writes opts.Size bytes in dir, a block at a time, with fdatasync
// after each, and judges the fdatasync p99 against opts.Target. The file it
// writes is removed before it returns, whatever happens. It refuses a dir
// that does not exist or cannot be written.
func Run(ctx context.Context, dir string, opts Options) (Result, error) {
	if opts.Size == 0 {
		opts.Size = DefaultSize
	}
	if opts.BlockSize == 0 {
		opts.BlockSize = DefaultBlockSize
	}
	if opts.Target == 0 {
		opts.Target = EtcdTarget
	}
	bs := int64(opts.BlockSize)
	switch {
	case opts.BlockSize < 0:
		return Result{}, fmt.Errorf("disk check: block size %d: expected a positive number of bytes", opts.BlockSize)
	case opts.Size < bs:
		return Result{}, fmt.Errorf("disk check: size %d is less than one block of %d bytes", opts.Size, opts.BlockSize)
	case opts.Target < 0:
		return Result{}, fmt.Errorf("disk check: target %s: expected a positive duration", opts.Target)
	}
	if err := checkDir(dir); err != nil {
		return Result{}, fmt.Errorf("disk check: %w", err)
	}
	f, err := os.CreateTemp(dir, ".etcdvisor-disk-check-*") // mode 0600
	if err != nil {
		return Result{}, fmt.Errorf("disk check: cannot write in %s: %w", dir, err)
	}
	defer func() {
		f.Close()
		os.Remove(f.Name())
	}()
	// Preallocate as fio does by default and etcd does for each WAL
	// segment, so the writes land where etcd's would.
	if err := fileutil.Preallocate(f, opts.Size, true); err != nil {
		return Result{}, fmt.Errorf("disk check: preallocate %d bytes in %s: %w", opts.Size, dir, err)
	}

	count := opts.Size / bs
	total := count * bs
	buf := make([]byte, bs)
	for i := range buf {
		buf[i] = byte(i) // not zeros, which some storage compresses away
	}
	syncs := make([]time.Duration, 0, count)
	start := time.Now()
	for off := int64(0); off < total; off += bs {
		if err := ctx.Err(); err != nil {
			return Result{}, fmt.Errorf("disk check of %s stopped after %d of %d bytes: %w", dir, off, total, err)
		}
		if _, err := f.WriteAt(buf, off); err != nil {
			return Result{}, fmt.Errorf("disk check: %w", err)
		}
		t := time.Now()
		if err := probe.Fdatasync(f); err != nil {
			return Result{}, fmt.Errorf("disk check: fdatasync %s: %w", f.Name(), err)
		}
		syncs = append(syncs, time.Since(t))
		if opts.Progress != nil {
			opts.Progress(off+bs, total)
		}
	}
	r := Result{
		Dir:       dir,
		BlockSize: opts.BlockSize,
		Written:   total,
		Count:     len(syncs),
		Took:      time.Since(start),
		Target:    opts.Target,
	}
	slices.Sort(syncs)
	r.P50, r.P90, r.P99 = quantile(syncs, 0.50), quantile(syncs, 0.90), quantile(syncs, 0.99)
	r.Max = syncs[len(syncs)-1]
	r.Pass, r.Verdict = verdict(r.P99, r.Target)
	return r, nil
}

func verdict(p99, target time.Duration) (bool, string) {
	shown := Short(p99)
	if p99 < target {
		return true, fmt.Sprintf("fdatasync p99 %s is below the %s etcd needs", shown, target)
	}
	word := "above"
	if shown <= target { // within a rounding step of the target
		word = "not below"
	}
	return false, fmt.Sprintf("fdatasync p99 %s is %s the %s etcd needs: etcd on this disk will see heartbeat timeouts under load",
		shown, word, target)
}

// Short shortens d for people: 3.1ms, 420µs, 1.23s. It truncates, so a
// latency below a round target is never shown as the target.
func Short(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Truncate(10 * time.Millisecond)
	case d >= time.Millisecond:
		return d.Truncate(100 * time.Microsecond)
	}
	return d.Truncate(time.Microsecond)
}

// quantile returns the nearest-rank quantile of sorted values: the smallest
// value with at least q of them at or below it.
func quantile(sorted []time.Duration, q float64) time.Duration {
	rank := int(q*float64(len(sorted))+0.999999999) - 1
	return sorted[max(0, min(rank, len(sorted)-1))]
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
