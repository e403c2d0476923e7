// Package grpcpool gives gRPC a buffer pool with a tier for etcd's
// snapshot messages, for the whole process.
//
// etcd sends a snapshot in messages of a little over 32 KiB: a 32 KiB blob
// and a few header bytes. gRPC's default pool has tiers of 256 B, 4, 16
// and 32 KiB and then 1 MiB, so every such message takes a 1 MiB buffer,
// on the sender to marshal it and on the receiver to gather it before
// unmarshalling, and the pool zeroes the whole capacity of a buffer it
// hands out again: 32 bytes cleared for each byte sent or received. perf
// showed that clearing as 15-20% of the CPU of `etcdctl snapshot save` and
// of etcdvisor's own save. A 64 KiB tier makes it 2 bytes per byte.
//
// gRPC's codec takes buffers from the default pool, not from a per-client
// one, so the pool is set process-wide, which also covers the embedded
// etcd server; gRPC allows that only before any connection or server
// exists, so Install belongs in main's init.
package grpcpool

import (
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/mem"
)

// Exponents are the pool's tiers as powers of two: gRPC's default ones
// (256 B, 4, 16 and 32 KiB, 1 MiB) and 64 KiB.
var Exponents = []uint8{8, 12, 14, 15, 16, 20}

// Install makes a pool with Exponents gRPC's default. Call it from an
// init function, before any gRPC client or server is made.
func Install() {
	p, err := mem.NewBinaryTieredBufferPool(Exponents...)
	if err != nil {
		panic(err) // constant exponents, valid on 32 and 64 bits
	}
	experimental.SetDefaultBufferPool(p)
}
