//go:build !linux

package probe

import "os"

// Fdatasync makes f's data durable. Outside Linux it is a full fsync:
// etcd runs on Linux, and elsewhere this only has to work.
func Fdatasync(f *os.File) error { return f.Sync() }
