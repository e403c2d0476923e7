package snapshot

import (
	"os"

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
// sync_file_range(SYNC_FILE_RANGE_WRITE) only starts writeback; it does not
// wait and makes no durability promise: the fsync at the end still does.
type writebackFile struct {
	f       *os.File
	off     int64 // bytes written so far
	started int64 // bytes handed to writeback so far
}

func (w *writebackFile) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.off += int64(n)
	if w.off-w.started >= writebackEvery {
		// Best effort: a filesystem without it (EINVAL, ENOSYS) loses only
		// the overlap; the fsync at the end is what counts.
		_ = unix.SyncFileRange(int(w.f.Fd()), w.started, w.off-w.started, unix.SYNC_FILE_RANGE_WRITE)
		w.started = w.off
	}
	return n, err
}
