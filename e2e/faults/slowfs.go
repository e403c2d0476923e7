//go:build linux

package faults

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// slowFSName is the mount's type suffix: /proc/self/mountinfo shows
// "fuse.etcdvisor-slowfs", which is how a stale mount is recognised.
const slowFSName = "etcdvisor-slowfs"

// unmountWait bounds how long Unmount waits for the serve loop once the
// kernel has let go of the mount. It is a failure bound: the loop normally
// ends at once.
const unmountWait = 30 * time.Second

// SlowFS is a loopback FUSE filesystem over a backing directory whose
// fsyncs and writes can be delayed, or whose fsyncs can be made to hang,
// while processes use it. Writes go straight through to the backing files.
// Only file fsyncs are slowed: an fsync of a directory is not.
//
// While it is mounted, change the backing files only through the mount:
// the kernel caches names and attributes for up to a second.
type SlowFS struct {
	mountpoint string
	server     *fuse.Server
	served     chan struct{} // closed when the serve loop has returned
	conn       uint32        // FUSE connection id, as named under /sys/fs/fuse/connections

	fsyncLatency atomic.Int64 // nanoseconds
	writeLatency atomic.Int64 // nanoseconds

	fsyncs     atomic.Int64
	writes     atomic.Int64
	stalled    atomic.Int64
	interrupts atomic.Int64
	injected   atomic.Int64 // nanoseconds

	mu    sync.Mutex
	stall chan struct{} // non-nil while stalled; Unstall closes it

	// closing is closed by Unmount: it wakes every call sleeping in a
	// latency or a stall, and makes later calls skip them.
	closing    chan struct{}
	unmount    sync.Once
	unmountErr error
}

// SlowFSStats is a snapshot of a SlowFS's counters.
type SlowFSStats struct {
	Fsyncs        int64         // fsync and fdatasync calls on files
	Writes        int64         // write requests from the kernel
	Stalled       int64         // fsyncs blocked in a stall right now
	Interrupts    int64         // delayed calls the kernel interrupted: the caller got a signal
	InjectedDelay time.Duration // total time calls spent in injected latency and stalls
}

// MountSlowFS mounts a SlowFS at mountpoint (created if missing) over the
// backing directory. It needs root: without fusermount, go-fuse mounts with
// mount(2) itself. A SlowFS left mounted at mountpoint by a crashed run is
// detached first.
func MountSlowFS(backing, mountpoint string) (*SlowFS, error) {
	backing, err := filepath.Abs(backing)
	if err != nil {
		return nil, err
	}
	mountpoint, err = canonicalMountpoint(mountpoint)
	if err != nil {
		return nil, err
	}
	// A crashed run leaves a mount whose server is gone: every access
	// fails with ENOTCONN, including the MkdirAll below.
	if err := detachStale(mountpoint); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(mountpoint, 0o755); err != nil {
		return nil, fmt.Errorf("slowfs: mountpoint: %w", err)
	}

	root, err := fs.NewLoopbackRoot(backing)
	if err != nil {
		return nil, fmt.Errorf("slowfs: backing dir: %w", err)
	}
	s := &SlowFS{
		mountpoint: mountpoint,
		served:     make(chan struct{}),
		closing:    make(chan struct{}),
	}
	loopback := root.(*fs.LoopbackNode)
	rootNode := &slowNode{LoopbackNode: loopback, s: s}
	loopback.RootData.RootNode = rootNode

	// The kernel may cache names and attributes for a second (libfuse's
	// default), which spares a LOOKUP and a GETATTR on most calls. Data is
	// not write-back cached: a write reaches the backing file, and the
	// write latency, before write(2) returns. File locks stay in the
	// kernel (EnableLocks is off), so etcd's flocks work as on a local
	// disk.
	cacheFor := time.Second
	opts := &fs.Options{
		EntryTimeout:    &cacheFor,
		AttrTimeout:     &cacheFor,
		NullPermissions: true, // keep mode 000 files as they are
		Logger:          log.New(io.Discard, "", 0),
		MountOptions: fuse.MountOptions{
			// Another user's etcd member may use the mount; with
			// default_permissions the kernel checks mode bits, as on
			// a real disk, since the server itself runs as root.
			AllowOther: true,
			Options:    []string{"default_permissions"},
			Name:       slowFSName,
			FsName:     backing,
			// Strict: with plain DirectMount a failed mount(2) or
			// umount(2) falls back to fusermount, which is not
			// installed, and the real error is replaced by "not found".
			DirectMountStrict: true,
			// Fewer, larger WRITE requests for snapshot-sized writes
			// (the kernel caps it at its maximum).
			MaxWrite: 1 << 20,
			// No xattrs: otherwise the kernel asks for
			// security.capability before every write.
			DisableXAttrs: true,
			// Passthrough would send reads and writes straight to the
			// backing file, around the injected write latency.
			DisabledCapabilities: fuse.CAP_PASSTHROUGH,
			Logger:               log.New(io.Discard, "", 0),
		},
	}
	server, err := fuse.NewServer(fs.NewNodeFS(rootNode, opts), mountpoint, &opts.MountOptions)
	if err != nil {
		// NewServer can fail after mount(2) succeeded (the INIT
		// handshake), leaving a dead mount behind.
		detachStale(mountpoint)
		return nil, fmt.Errorf("slowfs: mount %s: %w", mountpoint, err)
	}
	closeOnExecFuseFDs()
	s.server = server
	go func() {
		server.Serve()
		close(s.served)
	}()
	if err := server.WaitMount(); err != nil {
		s.Unmount()
		return nil, fmt.Errorf("slowfs: mount %s: %w", mountpoint, err)
	}
	// The connection's name under fusectl is the mount's anonymous
	// device number, whose major is 0.
	var st unix.Stat_t
	if err := unix.Stat(mountpoint, &st); err != nil {
		s.Unmount()
		return nil, fmt.Errorf("slowfs: stat mount: %w", err)
	}
	s.conn = unix.Minor(st.Dev)
	return s, nil
}

// Mountpoint returns the absolute path the filesystem is mounted at.
func (s *SlowFS) Mountpoint() string { return s.mountpoint }

// SetFsyncLatency delays every later fsync and fdatasync by d; 0 turns the
// delay off. Calls already sleeping keep their old delay.
func (s *SlowFS) SetFsyncLatency(d time.Duration) { s.fsyncLatency.Store(int64(max(d, 0))) }

// SetWriteLatency delays every later write request by d; 0 turns the
// delay off. The kernel splits large writes into requests of up to 1 MiB,
// each delayed.
func (s *SlowFS) SetWriteLatency(d time.Duration) { s.writeLatency.Store(int64(max(d, 0))) }

// Stall makes every fsync and fdatasync block, after its latency, until
// Unstall or Unmount: a hung disk. A process blocked in a stalled fsync
// can still be killed. Reads, writes and other files' calls go on.
func (s *SlowFS) Stall() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stall == nil {
		s.stall = make(chan struct{})
	}
}

// Unstall releases every fsync blocked by Stall; they then complete.
func (s *SlowFS) Unstall() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stall != nil {
		close(s.stall)
		s.stall = nil
	}
}

// Stats returns the counters so far.
func (s *SlowFS) Stats() SlowFSStats {
	return SlowFSStats{
		Fsyncs:        s.fsyncs.Load(),
		Writes:        s.writes.Load(),
		Stalled:       s.stalled.Load(),
		Interrupts:    s.interrupts.Load(),
		InjectedDelay: time.Duration(s.injected.Load()),
	}
}

// Unmount releases every stalled or delayed call and unmounts. If a
// process still holds a file open on the mount, the mount is detached and
// its FUSE connection aborted, so Unmount still returns with nothing
// mounted; that process's later calls on the file fail with ENOTCONN.
// Unmount is idempotent.
func (s *SlowFS) Unmount() error {
	s.unmount.Do(func() { s.unmountErr = s.doUnmount() })
	return s.unmountErr
}

func (s *SlowFS) doUnmount() error {
	// 1. Wake every call in a latency or a stall: a clean unmount waits
	// for the serve loop, which waits for those calls.
	close(s.closing)
	// 2. The clean way. go-fuse retries umount(2) for about 300ms, which
	// covers a process that has just closed its files or died.
	if err := s.server.Unmount(); err == nil {
		return s.waitServed()
	}
	// 3. Still busy: a file is held open. Detach the mount so no new path
	// reaches it, then abort the connection, which fails the open files'
	// calls and ends the serve loop; without the abort the loop would run
	// until the last file is closed.
	if err := syscall.Unmount(s.mountpoint, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
		return fmt.Errorf("slowfs: detach %s: %w", s.mountpoint, err)
	}
	if err := abortConn(s.conn); err != nil {
		return fmt.Errorf("slowfs: %s is detached but its FUSE connection lives until its files are closed: %w", s.mountpoint, err)
	}
	return s.waitServed()
}

func (s *SlowFS) waitServed() error {
	select {
	case <-s.served:
		return nil
	case <-time.After(unmountWait):
		return fmt.Errorf("slowfs: %s unmounted but the serve loop did not stop within %s", s.mountpoint, unmountWait)
	}
}

// inject holds a call for latency d, then, if stallable, for as long as a
// stall lasts. It returns EINTR only when the calling process is being
// killed, so a process hung in a stall stays killable (see hold).
func (s *SlowFS) inject(ctx context.Context, d time.Duration, stallable bool) syscall.Errno {
	start := time.Now()
	delayed := false
	defer func() {
		if delayed {
			s.injected.Add(int64(time.Since(start)))
		}
	}()
	if d > 0 {
		delayed = true
		t := time.NewTimer(d)
		defer t.Stop()
		if !hold(ctx, s, t.C) {
			return syscall.EINTR
		}
	}
	if !stallable {
		return 0
	}
	// Take the stall channel under the lock, wait outside it: a stalled
	// call must not keep Unstall, or anything else, from the lock.
	s.mu.Lock()
	stall := s.stall
	s.mu.Unlock()
	if stall == nil {
		return 0
	}
	delayed = true
	s.stalled.Add(1)
	defer s.stalled.Add(-1)
	if !hold(ctx, s, stall) {
		return syscall.EINTR
	}
	return 0
}

// hold waits until release fires or the filesystem closes, and reports
// false if the calling process is killed first.
//
// The kernel interrupts a FUSE request for any signal its caller gets,
// and Go's runtime signals its own threads all the time (preemption). A
// disk does not fail an fsync for that; failing it here made bbolt's
// commit fail with EINTR and etcd exit. So an interrupt is answered only
// once the caller has SIGKILL pending; until then the call goes on, and
// the caller is looked at every killPoll, since the kernel sends one
// interrupt per request.
func hold[T any](ctx context.Context, s *SlowFS, release <-chan T) bool {
	interrupted := ctx.Done()
	var poll <-chan time.Time
	for {
		select {
		case <-release:
			return true
		case <-s.closing:
			return true
		case <-interrupted:
			s.interrupts.Add(1)
			if callerKilled(ctx) {
				return false
			}
			interrupted = nil
			t := time.NewTicker(killPoll)
			defer t.Stop()
			poll = t.C
		case <-poll:
			if callerKilled(ctx) {
				return false
			}
		}
	}
}

// killPoll is how often an interrupted call looks for its caller's death.
const killPoll = 20 * time.Millisecond

// callerKilled tells whether the thread that made the request has SIGKILL
// pending (or is gone). The kernel marks SIGKILL pending on every thread
// of a process it kills, and the thread waits on the request meanwhile.
func callerKilled(ctx context.Context) bool {
	caller, ok := fuse.FromContext(ctx)
	if !ok {
		return true
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", caller.Pid))
	if err != nil {
		return true
	}
	const sigkill = 1 << (syscall.SIGKILL - 1)
	for line := range strings.SplitSeq(string(b), "\n") {
		for _, field := range []string{"SigPnd:", "ShdPnd:"} {
			if v, ok := strings.CutPrefix(line, field); ok {
				if mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64); err == nil && mask&sigkill != 0 {
					return true
				}
			}
		}
	}
	return false
}

// slowNode is a loopback node whose open files are slowFiles. Children
// get wrapped too (WrapChild), so every node in the tree is a slowNode.
type slowNode struct {
	*fs.LoopbackNode
	s *SlowFS
}

var (
	_ fs.NodeWrapChilder = (*slowNode)(nil)
	_ fs.NodeOpener      = (*slowNode)(nil)
	_ fs.NodeCreater     = (*slowNode)(nil)
)

func (n *slowNode) WrapChild(ctx context.Context, ops fs.InodeEmbedder) fs.InodeEmbedder {
	return &slowNode{LoopbackNode: ops.(*fs.LoopbackNode), s: n.s}
}

func (n *slowNode) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	fh, fuseFlags, errno := n.LoopbackNode.Open(ctx, flags)
	if errno != 0 {
		return nil, 0, errno
	}
	return n.s.wrap(fh), fuseFlags, 0
}

func (n *slowNode) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	inode, fh, fuseFlags, errno := n.LoopbackNode.Create(ctx, name, flags, mode, out)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	return inode, n.s.wrap(fh), fuseFlags, 0
}

// wrap turns a loopback file handle into a slowFile. go-fuse's loopback
// returns *fs.LoopbackFile; anything else is passed through unslowed
// rather than failing the open.
func (s *SlowFS) wrap(fh fs.FileHandle) fs.FileHandle {
	lf, ok := fh.(*fs.LoopbackFile)
	if !ok {
		return fh
	}
	return &slowFile{LoopbackFile: lf, s: s}
}

// slowFile is a loopback file whose fsyncs and writes take the injected
// latency. Everything else is the loopback's.
type slowFile struct {
	*fs.LoopbackFile
	s *SlowFS
}

var (
	_ fs.FileFsyncer         = (*slowFile)(nil)
	_ fs.FileWriter          = (*slowFile)(nil)
	_ fs.FilePassthroughFder = (*slowFile)(nil)
)

// Fsync serves both fsync and fdatasync: go-fuse delivers both as FSYNC.
// The delay comes first, so when the call returns the data is on the
// backing disk, as a real slow disk would have it.
func (f *slowFile) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	f.s.fsyncs.Add(1)
	if errno := f.s.inject(ctx, time.Duration(f.s.fsyncLatency.Load()), true); errno != 0 {
		return errno
	}
	return f.LoopbackFile.Fsync(ctx, flags)
}

func (f *slowFile) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	f.s.writes.Add(1)
	if errno := f.s.inject(ctx, time.Duration(f.s.writeLatency.Load()), false); errno != 0 {
		return 0, errno
	}
	return f.LoopbackFile.Write(ctx, data, off)
}

// PassthroughFd refuses kernel passthrough, which would route reads and
// writes around Write. The capability is also off for the whole mount;
// this keeps the embedded LoopbackFile's method from being promoted.
func (f *slowFile) PassthroughFd() (int, bool) { return -1, false }

// canonicalMountpoint returns mountpoint as /proc/self/mountinfo would
// show it: absolute, with symlinks in its parent resolved. The mountpoint
// itself is not resolved: it may be a dead mount that cannot be stat'ed.
func canonicalMountpoint(mountpoint string) (string, error) {
	abs, err := filepath.Abs(mountpoint)
	if err != nil {
		return "", err
	}
	parent, err := filepath.EvalSymlinks(filepath.Dir(abs))
	if err != nil {
		return "", fmt.Errorf("slowfs: mountpoint: %w", err)
	}
	return filepath.Join(parent, filepath.Base(abs)), nil
}

// detachStale lazily unmounts every SlowFS mounted at mountpoint. Only
// mounts of our own type are touched, so a wrong path cannot take down a
// real filesystem.
func detachStale(mountpoint string) error {
	for {
		ok, err := slowFSMounted(mountpoint)
		if err != nil || !ok {
			return err
		}
		if err := syscall.Unmount(mountpoint, syscall.MNT_DETACH); err != nil {
			return fmt.Errorf("slowfs: detach stale mount at %s: %w", mountpoint, err)
		}
	}
}

// slowFSMounted reports whether a SlowFS is mounted at mountpoint, per
// /proc/self/mountinfo.
func slowFSMounted(mountpoint string) (bool, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// 36 35 0:45 / /mnt/x rw,nosuid - fuse.etcdvisor-slowfs /backing rw,...
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		fields, after := strings.Fields(pre), strings.Fields(post)
		if len(fields) < 5 || len(after) < 1 {
			continue
		}
		if after[0] == "fuse."+slowFSName && unescapeMountinfo(fields[4]) == mountpoint {
			return true, nil
		}
	}
	return false, sc.Err()
}

// unescapeMountinfo undoes the kernel's octal escapes (\040 for a space,
// and tab, newline and backslash likewise) in a mountinfo path.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// abortConn aborts FUSE connection id through the fusectl filesystem,
// mounting fusectl on a private temporary dir when it is not mounted at
// /sys/fs/fuse/connections (containers usually lack it). A connection
// fusectl does not list is already gone.
func abortConn(id uint32) error {
	name := strconv.FormatUint(uint64(id), 10)
	abort := func(dir string) error {
		return os.WriteFile(filepath.Join(dir, name, "abort"), []byte("1"), 0)
	}
	if err := abort("/sys/fs/fuse/connections"); !errors.Is(err, os.ErrNotExist) {
		return err
	}
	dir, err := os.MkdirTemp("", "fusectl-")
	if err != nil {
		return err
	}
	defer os.Remove(dir)
	if err := syscall.Mount("fusectl", dir, "fusectl", 0, ""); err != nil {
		return fmt.Errorf("mount fusectl: %w", err)
	}
	defer syscall.Unmount(dir, syscall.MNT_DETACH)
	if err := abort(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// closeOnExecFuseFDs marks this process's /dev/fuse descriptors
// close-on-exec. go-fuse's direct mount opens /dev/fuse with a bare
// open(2) and, unlike its fusermount path, never sets FD_CLOEXEC, so every
// etcd or etcdvisor a test starts would inherit the server end of the
// mount. If the test process then dies, that child keeps the connection
// alive with nobody serving it, and whatever touches the mount hangs
// instead of failing with ENOTCONN.
func closeOnExecFuseFDs() {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); err == nil && target == "/dev/fuse" {
			syscall.CloseOnExec(fd)
		}
	}
}
