// Package version holds the versions etcdvisor reports about itself.
package version

import (
	"runtime"

	etcdversion "go.etcd.io/etcd/api/v3/version"
)

// Version is etcdvisor's version, set at build time with
// -ldflags "-X github.com/etcdvisor/etcdvisor/internal/version.Version=v1.2.3".
var Version = "v0.1.0-dev"

// Etcd is the version of the etcd server compiled into this binary.
var Etcd = etcdversion.Version

// Go is the Go toolchain that built this binary.
var Go = runtime.Version()
