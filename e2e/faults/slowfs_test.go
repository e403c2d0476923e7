//go:build linux

package faults

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// mountSlowFS mounts a SlowFS over a fresh backing dir and unmounts it at
// cleanup. It skips where FUSE cannot be mounted without fusermount.
func mountSlowFS(t *testing.T) (s *SlowFS, backing string) {
	t.Helper()
	requireFUSE(t)
	backing = t.TempDir()
	s, err := MountSlowFS(backing, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Unmount(); err != nil {
			t.Errorf("unmount: %v", err)
		}
	})
	return s, backing
}

func requireFUSE(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("slowfs needs /dev/fuse: %v", err)
	}
	if os.Geteuid() != 0 {
		t.Skip("slowfs mounts with mount(2) itself (there is no fusermount), which needs root")
	}
}

// writeSync writes data to a new file at path and fsyncs it n times.
func writeSync(t *testing.T, path string, data []byte, n int) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	for range n {
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
	}
}

func assertNotMounted(t *testing.T, s *SlowFS) {
	t.Helper()
	mounted, err := slowFSMounted(s.Mountpoint())
	if err != nil {
		t.Fatal(err)
	}
	if mounted {
		t.Errorf("%s is still in /proc/self/mountinfo", s.Mountpoint())
	}
}

func TestFsyncLatencyIsInjectedIntoEveryFsyncAndCounted(t *testing.T) {
	s, backing := mountSlowFS(t)

	before := s.Stats()
	writeSync(t, filepath.Join(s.Mountpoint(), "fast"), []byte("fast"), 1)
	fast := s.Stats()
	if got := fast.Fsyncs - before.Fsyncs; got < 1 {
		t.Errorf("fsyncs counted with no latency: got %d, want at least 1", got)
	}
	if fast.InjectedDelay != 0 {
		t.Errorf("injected delay with no latency: got %s, want 0", fast.InjectedDelay)
	}

	const latency = 50 * time.Millisecond
	s.SetFsyncLatency(latency)
	writeSync(t, filepath.Join(s.Mountpoint(), "slow"), []byte("slow"), 3)
	slow := s.Stats()
	fsyncs := slow.Fsyncs - fast.Fsyncs
	if fsyncs < 3 {
		t.Errorf("fsyncs counted with latency: got %d, want at least 3", fsyncs)
	}
	// Each of the 3 calls returns only after one full delay. The kernel may
	// interrupt a delayed request when the test process gets a signal (the
	// Go runtime's preemption signals do that under load); Go retries the
	// call, so more fsyncs are counted than made, with a cut-short delay
	// among them. The bound is the calls made.
	if got, want := slow.InjectedDelay-fast.InjectedDelay, 3*latency; got < want {
		t.Errorf("injected delay for 3 fsync calls (%d counted): got %s, want at least %s", fsyncs, got, want)
	}

	for name, want := range map[string]string{"fast": "fast", "slow": "slow"} {
		got, err := os.ReadFile(filepath.Join(backing, name))
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != want {
			t.Errorf("backing file %s: got %q, want %q", name, got, want)
		}
	}
}

func TestWriteLatencyIsInjectedIntoEveryWriteAndTheDataReachesTheBackingFile(t *testing.T) {
	s, backing := mountSlowFS(t)
	const latency = 20 * time.Millisecond
	s.SetWriteLatency(latency)

	f, err := os.Create(filepath.Join(s.Mountpoint(), "w"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	before := s.Stats()
	for _, chunk := range []string{"a", "b", "c"} {
		if _, err := f.WriteString(chunk); err != nil {
			t.Fatal(err)
		}
	}
	after := s.Stats()
	writes := after.Writes - before.Writes
	if writes < 3 {
		t.Errorf("writes counted: got %d, want at least 3", writes)
	}
	// As for fsyncs: the bound is the 3 calls made, not the writes counted.
	if got, want := after.InjectedDelay-before.InjectedDelay, 3*latency; got < want {
		t.Errorf("injected delay for 3 write calls (%d counted): got %s, want at least %s", writes, got, want)
	}
	// No write-back cache: the data is in the backing file before any
	// fsync or close.
	if got, err := os.ReadFile(filepath.Join(backing, "w")); err != nil || string(got) != "abc" {
		t.Errorf("backing file: got %q, %v; want %q", got, err, "abc")
	}
}

func TestStalledFsyncBlocksUntilUnstallWhileOtherFilesAreStillRead(t *testing.T) {
	s, backing := mountSlowFS(t)
	// Written behind the mount's back, so reading it later must go
	// through FUSE: nothing about it is cached.
	if err := os.WriteFile(filepath.Join(backing, "other"), []byte("other"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(s.Mountpoint(), "stalled"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	s.Stall()
	done := make(chan error, 1)
	go func() { done <- f.Sync() }()
	waitFor(t, "fsync blocked in the stall", func() bool { return s.Stats().Stalled == 1 })

	got, err := os.ReadFile(filepath.Join(s.Mountpoint(), "other"))
	if err != nil || string(got) != "other" {
		t.Fatalf("read of another file during the stall: got %q, %v; want %q", got, err, "other")
	}
	select {
	case err := <-done:
		t.Fatalf("fsync returned during the stall: %v", err)
	default:
	}

	s.Unstall()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("fsync after unstall: %v", err)
		}
	case <-time.After(waitLimit):
		t.Fatal("fsync still blocked after Unstall")
	}
	if st := s.Stats(); st.Stalled != 0 || st.InjectedDelay <= 0 {
		t.Errorf("after unstall: got %d stalled and %s injected, want 0 stalled and some delay", st.Stalled, st.InjectedDelay)
	}
}

// syncChildEnv makes the test binary a child that writes one block to the
// file it names and calls fdatasync once, without retrying on EINTR, as
// bbolt does (see TestMain). It takes SIGUSR1 and does nothing with it,
// and prints the ID of the thread that syncs, for a signal to reach it.
const syncChildEnv = "FAULTS_SYNC_CHILD"

func syncChild(path string) {
	signal.Notify(make(chan os.Signal, 1), syscall.SIGUSR1)
	runtime.LockOSThread()
	fmt.Println(unix.Gettid())
	f, err := os.Create(path)
	if err == nil {
		_, err = f.Write(make([]byte, 4096))
	}
	if err == nil {
		err = syscall.Fdatasync(int(f.Fd()))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// startSyncer runs syncChild on path in a child process, and returns it
// with the ID of its syncing thread.
func startSyncer(t *testing.T, path string) (*exec.Cmd, int) {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), syncChildEnv+"="+path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the syncing child: %v", err)
	}
	var tid int
	if _, err := fmt.Fscan(out, &tid); err != nil {
		t.Fatalf("the syncing child's thread: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if stderr.Len() > 0 {
			t.Logf("syncing child: %s", stderr.String())
		}
	})
	return cmd, tid
}

// A disk does not fail an fsync because the caller got a signal, and
// neither does the slow disk: the kernel's interrupt is ignored, and the
// fsync completes once released.
func TestASignalDoesNotFailAHeldFsync(t *testing.T) {
	s, _ := mountSlowFS(t)
	s.Stall()
	cmd, tid := startSyncer(t, filepath.Join(s.Mountpoint(), "f"))
	waitFor(t, "the child's fdatasync held in the stall", func() bool { return s.Stats().Stalled == 1 })
	if err := unix.Tgkill(cmd.Process.Pid, tid, syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the kernel's interrupt", func() bool { return s.Stats().Interrupts >= 1 })
	if st := s.Stats(); st.Stalled != 1 {
		t.Fatalf("after the interrupt: %d fsyncs held, want the child's still held", st.Stalled)
	}
	s.Unstall()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v; a signal during its fdatasync must not fail it", err)
	}
}

// A process killed while its fsync is held still dies: the call is let go
// once the caller has SIGKILL pending.
func TestAProcessKilledInAStallDies(t *testing.T) {
	s, _ := mountSlowFS(t)
	s.Stall()
	defer s.Unstall()
	cmd, _ := startSyncer(t, filepath.Join(s.Mountpoint(), "f"))
	waitFor(t, "the child's fdatasync held in the stall", func() bool { return s.Stats().Stalled == 1 })
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("child ended with %v, want killed", err)
		}
	case <-time.After(waitLimit):
		t.Fatal("child killed in a stall did not die")
	}
	waitFor(t, "the held call let go", func() bool { return s.Stats().Stalled == 0 })
}

func TestUnmountDuringAStallReleasesTheFsyncAndLeavesNoMount(t *testing.T) {
	s, _ := mountSlowFS(t)
	f, err := os.Create(filepath.Join(s.Mountpoint(), "stalled"))
	if err != nil {
		t.Fatal(err)
	}
	s.Stall()
	done := make(chan error, 1)
	go func() {
		err := f.Sync()
		f.Close()
		done <- err
	}()
	waitFor(t, "fsync blocked in the stall", func() bool { return s.Stats().Stalled == 1 })

	if err := s.Unmount(); err != nil {
		t.Fatalf("unmount during a stall: %v", err)
	}
	select {
	case <-done:
	case <-time.After(waitLimit):
		t.Fatal("fsync still blocked after Unmount")
	}
	assertNotMounted(t, s)
}

func TestUnmountWithAFileStillOpenDetachesTheMountAndFailsTheFile(t *testing.T) {
	s, backing := mountSlowFS(t)
	f, err := os.Create(filepath.Join(s.Mountpoint(), "open"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("before"); err != nil {
		t.Fatal(err)
	}
	s.Stall()
	done := make(chan error, 1)
	go func() { done <- f.Sync() }()
	waitFor(t, "fsync blocked in the stall", func() bool { return s.Stats().Stalled == 1 })

	if err := s.Unmount(); err != nil {
		t.Fatalf("unmount with a file open: %v", err)
	}
	<-done
	assertNotMounted(t, s)
	if _, err := f.WriteString("after"); !errors.Is(err, syscall.ENOTCONN) {
		t.Errorf("write to a file of the aborted mount: got %v, want ENOTCONN", err)
	}
	if got, err := os.ReadFile(filepath.Join(backing, "open")); err != nil || string(got) != "before" {
		t.Errorf("backing file: got %q, %v; want %q", got, err, "before")
	}
}

func TestMountDetachesADeadMountLeftByACrashedRun(t *testing.T) {
	requireFUSE(t)
	backing, mnt := t.TempDir(), t.TempDir()
	// A crashed run: a slowfs mount whose server end is closed.
	fd, err := syscall.Open("/dev/fuse", syscall.O_RDWR|syscall.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	err = syscall.Mount(backing, mnt, "fuse."+slowFSName, syscall.MS_NOSUID|syscall.MS_NODEV,
		fmt.Sprintf("fd=%d,rootmode=40000,user_id=0,group_id=0", fd))
	syscall.Close(fd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { detachStale(mnt) })
	if _, err := os.Stat(mnt); !errors.Is(err, syscall.ENOTCONN) {
		t.Fatalf("stat of the dead mount: got %v, want ENOTCONN", err)
	}

	s, err := MountSlowFS(backing, mnt)
	if err != nil {
		t.Fatalf("mount over a dead mount: %v", err)
	}
	t.Cleanup(func() { s.Unmount() })
	writeSync(t, filepath.Join(mnt, "x"), []byte("x"), 1)
	if err := s.Unmount(); err != nil {
		t.Fatal(err)
	}
	assertNotMounted(t, s)
}

func TestThousandAppendsWithFdatasyncGoThroughUnderLoad(t *testing.T) {
	s, backing := mountSlowFS(t)
	f, err := os.OpenFile(filepath.Join(s.Mountpoint(), "log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	record := bytes.Repeat([]byte("r"), 63)
	record = append(record, '\n')
	const n = 1000
	before := s.Stats()
	for i := range n {
		if _, err := f.Write(record); err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
		if err := unix.Fdatasync(int(f.Fd())); err != nil {
			t.Fatalf("fdatasync %d: %v", i, err)
		}
	}
	if got := s.Stats().Fsyncs - before.Fsyncs; got != n {
		t.Errorf("fsyncs counted: got %d, want %d", got, n)
	}
	got, err := os.ReadFile(filepath.Join(backing, "log"))
	if err != nil {
		t.Fatal(err)
	}
	if want := bytes.Repeat(record, n); !bytes.Equal(got, want) {
		t.Errorf("backing file: got %d bytes, want %d", len(got), len(want))
	}
}

func TestMountedFUSEDescriptorIsNotInheritedByChildren(t *testing.T) {
	mountSlowFS(t)
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err != nil || target != "/dev/fuse" {
			continue
		}
		var fd int
		fmt.Sscan(e.Name(), &fd)
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		if err != nil {
			t.Fatal(err)
		}
		if flags&unix.FD_CLOEXEC == 0 {
			t.Errorf("/dev/fuse fd %d is not close-on-exec", fd)
		}
	}
}
