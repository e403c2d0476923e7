package control

import (
	"fmt"
	"net"
	"syscall"

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
	)
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return Peer{}, fmt.Errorf("reading peer credentials: %w", err)
	}
	if credErr != nil {
		return Peer{}, fmt.Errorf("reading peer credentials (SO_PEERCRED): %w", credErr)
	}
	return Peer{UID: cred.Uid, GID: cred.Gid, PID: cred.Pid}, nil
}
