// Package faults injects the faults the starvation-watch tests need into
// real processes on one machine: a slow or hung disk (SlowFS, a FUSE
// loopback filesystem whose fsyncs and writes can be delayed or stalled)
// and a slow network (DelayProxy, a loopback TCP proxy that delays the
// bytes it forwards).
//
// The kernel has no netem and the machines have no fusermount, so both are
// built in-process: go-fuse mounts with mount(2) directly (which needs
// root), and toxiproxy runs as a library.
package faults
