package probe

import (
	"os"

	"golang.org/x/sys/unix"
)

// Fdatasync makes f's data durable without flushing metadata that reads do
// not need (mtime), as etcd's WAL does after each append. It goes through
// the file's raw descriptor under a reference, so a Close from another
// goroutine waits for the syscall to return instead of closing, and maybe
// reusing, the descriptor under it.
func Fdatasync(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.Fdatasync(int(fd)) }); err != nil {
		return err
	}
	return serr
}
