package grpcpool

import (
	"testing"

	"google.golang.org/grpc/mem"
)

// A snapshot message (32 KiB of blob and a few header bytes) gets a
// 64 KiB buffer, not gRPC's default 1 MiB one.
func TestASnapshotMessageTakesA64KiBBuffer(t *testing.T) {
	const msg = 32<<10 + 20
	if got := cap(*mem.DefaultBufferPool().Get(msg)); got != 1<<20 {
		t.Fatalf("before Install: a %d-byte message took a buffer of %d bytes; this test assumes gRPC's 1 MiB tier", msg, got)
	}
	Install()
	pool := mem.DefaultBufferPool()
	buf := pool.Get(msg)
	if got := cap(*buf); got != 64<<10 {
		t.Fatalf("a %d-byte message took a buffer of %d bytes, want 64 KiB", msg, got)
	}
	// Smaller and larger messages keep gRPC's tiers.
	for size, want := range map[int]int{100: 256, 16 << 10: 16 << 10, 32 << 10: 32 << 10, 100 << 10: 1 << 20} {
		if got := cap(*pool.Get(size)); got != want {
			t.Errorf("a %d-byte message took a buffer of %d bytes, want %d", size, got, want)
		}
	}
}
