package control

import (
	"fmt"
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// readPeer returns the credentials the kernel recorded for the process that
// connected c. They are fixed at connect time, so reading them once per
// connection is enough, and a caller cannot change them by passing the
// connection to another process.
func readPeer(c net.Conn) (Peer, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return Peer{}, fmt.Errorf("connection of type %T has no file descriptor", c)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return Peer{}, fmt.Errorf("reading peer credentials: %w", err)
	}
	var (
		cred    *unix.Ucred
		credErr error
		groups  []uint32
	)
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		// Without the supplementary groups a user added to the control
		// group with "usermod -aG" would be refused. An old kernel (before
		// 4.13) lacks SO_PEERGROUPS; then only the primary gid counts.
		groups, _ = peerGroups(int(fd))
	}); err != nil {
		return Peer{}, fmt.Errorf("reading peer credentials: %w", err)
	}
	if credErr != nil {
		return Peer{}, fmt.Errorf("reading peer credentials (SO_PEERCRED): %w", credErr)
	}
	return Peer{UID: cred.Uid, GID: cred.Gid, PID: cred.Pid, Groups: groups}, nil
}

// peerGroups reads the connecting process's supplementary groups with
// SO_PEERGROUPS, which x/sys has no wrapper for.
func peerGroups(fd int) ([]uint32, error) {
	buf := make([]uint32, 64)
	for {
		size := uint32(len(buf) * 4)
		_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_PEERGROUPS,
			uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&size)), 0)
		switch {
		case errno == unix.ERANGE && int(size/4) > len(buf):
			// size now holds what the kernel needs.
			buf = make([]uint32, size/4)
			continue
		case errno != 0:
			return nil, errno
		}
		return buf[:size/4], nil
	}
}
