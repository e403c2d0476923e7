package control

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// staleDialTimeout bounds the probe that asks whether a socket file already
// has a live server behind it.
const staleDialTimeout = time.Second

// maxSocketPath is the size of sun_path in struct sockaddr_un on Linux.
const maxSocketPath = 108

// Listen listens on the unix socket at path, which the daemon owns until the
// returned listener is closed (closing it removes the file).
//
//   - The parent directory must already exist: the daemon creates it, with
//     permissions that keep other users out, and Listen does not guess them.
//   - If a server answers on path, Listen refuses: another etcdvisor is
//     running on the same socket.
//   - If a socket file is there but nothing answers, it is stale (a crash left
//     it behind) and is removed. Anything else at path (a regular file, a
//     directory, a symlink) is never removed; Listen refuses and names it.
//   - The socket gets mode (0600; 0660 when a group may use it) and, when
//     gid >= 0, that group.
//
// Between the probe and the bind another process could claim the path; bind
// then fails and Listen reports the path as in use.
func Listen(path string, mode os.FileMode, gid int) (net.Listener, error) {
	if len(path) > maxSocketPath {
		return nil, fmt.Errorf("control socket path %s is %d bytes long; a unix socket path may be at most %d", path, len(path), maxSocketPath)
	}
	dir := filepath.Dir(path)
	switch fi, err := os.Stat(dir); {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("directory %s for control socket %s does not exist", dir, path)
	case err != nil:
		return nil, fmt.Errorf("checking directory of control socket %s: %w", path, err)
	case !fi.IsDir():
		return nil, fmt.Errorf("%s, the parent of control socket %s, is not a directory", dir, path)
	}
	if err := removeStale(path); err != nil {
		return nil, err
	}

	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, inUseError(path)
	}
	if err != nil {
		return nil, fmt.Errorf("listening on control socket %s: %w", path, err)
	}
	ln.SetUnlinkOnClose(true)

	// bind creates the file with mode 0777 &^ umask, and only the chmod
	// below narrows it, so for a moment the file may be more open than mode.
	// That is acceptable: reaching the file at all needs search permission on
	// the parent directory, which the daemon keeps closed to others, and every
	// request is checked against Policy with the caller's SO_PEERCRED
	// credentials whatever the file mode. Setting the process umask instead
	// would race with every other goroutine that creates files.
	//
	// Chown comes first so that the group bits granted by chmod never apply to
	// the daemon's own primary group.
	if gid >= 0 {
		if err := os.Chown(path, -1, gid); err != nil {
			ln.Close()
			return nil, fmt.Errorf("setting group of control socket %s to gid %d: %w", path, gid, err)
		}
	}
	if err := os.Chmod(path, mode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("setting mode of control socket %s to %#o: %w", path, mode, err)
	}
	return ln, nil
}

func inUseError(path string) error {
	return fmt.Errorf("control socket %s is in use by another process (is another etcdvisor running?)", path)
}

// removeStale makes path free for bind: it refuses when a server answers
// there or when the file is not a socket, and removes a socket nobody
// listens on.
func removeStale(path string) error {
	c, dialErr := net.DialTimeout("unix", path, staleDialTimeout)
	if dialErr == nil {
		c.Close()
		return inUseError(path)
	}
	// EAGAIN: the listener's backlog is full. A timeout: something holds the
	// connection open without accepting. Either way a process is there.
	var ne net.Error
	if errors.Is(dialErr, syscall.EAGAIN) || (errors.As(dialErr, &ne) && ne.Timeout()) {
		return inUseError(path)
	}

	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("checking control socket %s: %w", path, err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("control socket path %s is %s, not a socket; refusing to remove it (move it away or choose another control.socket)", path, describeType(fi.Mode()))
	}
	// Only ECONNREFUSED proves that no process listens on the socket; any
	// other failure (EACCES, say) leaves the question open.
	if !errors.Is(dialErr, syscall.ECONNREFUSED) {
		return fmt.Errorf("cannot tell whether control socket %s is in use: %w", path, dialErr)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing stale control socket %s: %w", path, err)
	}
	return nil
}

func describeType(m fs.FileMode) string {
	switch t := m.Type(); {
	case t == 0:
		return "a regular file"
	case t&fs.ModeDir != 0:
		return "a directory"
	case t&fs.ModeSymlink != 0:
		return "a symbolic link"
	case t&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case t&fs.ModeDevice != 0:
		return "a device"
	default:
		return fmt.Sprintf("a file of type %v", t)
	}
}
