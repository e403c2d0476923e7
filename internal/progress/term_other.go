//go:build !linux && !darwin && !dragonfly && !freebsd && !netbsd && !openbsd

package progress

import "os"

// isTerminal is false where etcdvisor does not know how to ask: no bar.
func isTerminal(*os.File) bool { return false }

func width(*os.File) int { return 0 }
