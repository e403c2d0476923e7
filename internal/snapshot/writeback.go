package snapshot

import (
	"os"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// writebackEvery is how much a snapshot writes before it asks the kernel to
// start writing it to disk.
const writebackEvery = 8 << 20

// writebackFile starts the disk writing the file's pages as they are
// written, instead of leaving hundreds of MiB dirty for one final fsync.
// Two reasons: the final fsync then waits only for the tail, so the disk
// works while the stream is still arriving; and a huge burst of dirty pages
// flushed at once sits in front of the member's own WAL fsyncs in the disk
// queue, which is exactly the latency spike a snapshot must not cause.
// sync_file_range(SYNC_FILE_RANGE_WRITE) only starts writeback and makes
// no durability promise: the fsync at the end still does. It does block
// while it queues the pages (about 0.2 s per GiB here, more on a busy
// disk), so it runs on a goroutine of its own, off the stream's path.
type writebackFile struct {
	f   *os.File
	off int64 // bytes written so far

	upTo    atomic.Int64  // start writeback up to here; only Write stores it
	kick    chan struct{} // cap 1: upTo moved
	stopped sync.WaitGroup
}

func (w *writebackFile) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.off += int64(n)
	if w.off-w.upTo.Load() >= writebackEvery {
		if w.kick == nil {
			w.kick = make(chan struct{}, 1)
			w.stopped.Go(w.run)
		}
		w.upTo.Store(w.off)
		select {
		case w.kick <- struct{}{}:
		default: // a kick is pending; it will read the new upTo
		}
	}
	return n, err
}

// run starts writeback of each newly written range until stop.
func (w *writebackFile) run() {
	var started int64
	for range w.kick {
		if end := w.upTo.Load(); end > started {
			// Best effort: a filesystem without it (EINVAL, ENOSYS) loses
			// only the overlap; the fsync at the end is what counts.
			_ = unix.SyncFileRange(int(w.f.Fd()), started, end-started, unix.SYNC_FILE_RANGE_WRITE)
			started = end
		}
	}
}

// stop waits for the writeback goroutine to finish; call it before the
// final fsync and before closing the file. Calling it again does nothing.
func (w *writebackFile) stop() {
	if w.kick != nil {
		close(w.kick)
		w.stopped.Wait()
		w.kick = nil
	}
}
