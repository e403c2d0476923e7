package progress

import (
	"os"

	"golang.org/x/sys/unix"
)

// isTerminal reports whether f is a terminal, as golang.org/x/term does.
func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// width is the terminal's width in columns, or 0 when unknown.
func width(f *os.File) int {
	ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ)
	if err != nil {
		return 0
	}
	return int(ws.Col)
}
