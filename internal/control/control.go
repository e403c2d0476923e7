// Package control serves etcdvisor's local HTTP+JSON API on a unix socket and
// is the client the CLI uses.
//
// The socket is the only door into a running daemon, so it is locked down in
// layers: the socket file's mode and group (Listen), the caller's kernel
// credentials checked against a Policy on every request (Server), and the
// refusal of anything that looks like a browser (Origin, Referer or
// Sec-Fetch-* headers, or an unexpected Host).
package control

import (
	"context"
	"fmt"
	"slices"
)

// Peer is the caller at the other end of a control connection, as the kernel
// reported it (SO_PEERCRED) when the connection was made.
type Peer struct {
	UID, GID uint32
	PID      int32
	// Groups are the caller's supplementary groups (SO_PEERGROUPS); empty
	// where the kernel cannot tell.
	Groups []uint32
}

type peerKey struct{}

// withPeer returns ctx carrying peer.
func withPeer(ctx context.Context, peer Peer) context.Context {
	return context.WithValue(ctx, peerKey{}, peer)
}

// PeerFrom returns the caller's credentials from a request context served by
// Server. ok is false when they could not be read; Server refuses such
// requests before any handler runs, so handlers may rely on ok being true.
func PeerFrom(ctx context.Context) (peer Peer, ok bool) {
	peer, ok = ctx.Value(peerKey{}).(Peer)
	return peer, ok
}

// Policy decides who may use the control API.
//
// Root (uid 0) is always allowed. Besides root, UIDs are allowed: the daemon
// passes its own effective uid, so reasons call a match "the daemon's uid".
// When GID >= 0, callers in group GID are allowed too, whether it is their
// primary group (SO_PEERCRED) or a supplementary one (SO_PEERGROUPS), so a
// user added with "usermod -aG" gets in; GID -1 means no group. The zero
// Policy therefore allows group 0 (root's group); set GID to -1 when no
// group is configured.
type Policy struct {
	UIDs []uint32
	GID  int
}

// Allow reports whether peer may call the API, and why, in a short phrase
// that is logged on both outcomes and returned to denied callers.
func (p Policy) Allow(peer Peer) (ok bool, reason string) {
	switch {
	case peer.UID == 0:
		return true, "uid 0 is root"
	case slices.Contains(p.UIDs, peer.UID):
		return true, fmt.Sprintf("uid %d is the daemon's uid", peer.UID)
	case p.GID >= 0 && int64(peer.GID) == int64(p.GID):
		return true, fmt.Sprintf("uid %d has primary gid %d, the control group", peer.UID, peer.GID)
	case p.GID >= 0 && slices.Contains(peer.Groups, uint32(p.GID)):
		return true, fmt.Sprintf("uid %d is in the control group %d", peer.UID, p.GID)
	case p.GID < 0:
		return false, fmt.Sprintf("uid %d is not root or the daemon's uid", peer.UID)
	default:
		return false, fmt.Sprintf("uid %d is not root, the daemon's uid or in group %d", peer.UID, p.GID)
	}
}
