package cluster

import (
	"context"
	"net"
	"strings"
	"testing"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/etcdvisor/etcdvisor/internal/api"
	"github.com/etcdvisor/etcdvisor/internal/testetcd"
)

// A member whose client port refuses connections is reported down from
// the refusal itself, not from a timeout spent waiting for a connection.
func TestProbeOfAMemberWhosePortIsClosedSaysConnectionRefused(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String()
	l.Close()

	h := ProbeMember(context.Background(), zap.NewNop(), nil, api.Member{Name: "dead", ClientURLs: []string{closed}})
	if h.Healthy || !strings.Contains(h.Error, "connection refused") {
		t.Fatalf("probe of %s: healthy %v, error %q; want unhealthy with connection refused", closed, h.Healthy, h.Error)
	}

	live := testetcd.Start(t, "http", func(*embed.Config) {})
	h = ProbeMember(context.Background(), zap.NewNop(), nil, api.Member{Name: "m1", ClientURLs: []string{live.ClientURL}})
	if !h.Healthy || h.RaftIndex == 0 {
		t.Fatalf("probe of a live member: %+v", h)
	}
}
