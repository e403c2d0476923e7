package control

import (
	"strings"
	"testing"
)

func TestPolicyAllow(t *testing.T) {
	const daemonUID = 990
	tests := []struct {
		name       string
		policy     Policy
		peer       Peer
		wantOK     bool
		wantReason string
	}{
		{
			name:       "root is allowed",
			policy:     Policy{UIDs: []uint32{daemonUID}, GID: -1},
			peer:       Peer{UID: 0, GID: 0, PID: 1},
			wantOK:     true,
			wantReason: "uid 0 is root",
		},
		{
			name:       "root is allowed with no uids listed",
			policy:     Policy{GID: -1},
			peer:       Peer{UID: 0, GID: 1234},
			wantOK:     true,
			wantReason: "uid 0 is root",
		},
		{
			name:       "the daemon's uid is allowed",
			policy:     Policy{UIDs: []uint32{daemonUID}, GID: -1},
			peer:       Peer{UID: daemonUID, GID: daemonUID},
			wantOK:     true,
			wantReason: "uid 990 is the daemon's uid",
		},
		{
			name:       "a member of the control group is allowed",
			policy:     Policy{UIDs: []uint32{daemonUID}, GID: 997},
			peer:       Peer{UID: 1000, GID: 997},
			wantOK:     true,
			wantReason: "uid 1000 has primary gid 997, the control group",
		},
		{
			name:       "a user with the control group as a supplementary group is allowed",
			policy:     Policy{UIDs: []uint32{daemonUID}, GID: 997},
			peer:       Peer{UID: 1000, GID: 1000, Groups: []uint32{4, 997}},
			wantOK:     true,
			wantReason: "uid 1000 is in the control group 997",
		},
		{
			name:       "another user is denied",
			policy:     Policy{UIDs: []uint32{daemonUID}, GID: 997},
			peer:       Peer{UID: 1000, GID: 1000},
			wantOK:     false,
			wantReason: "uid 1000 is not root, the daemon's uid or in group 997",
		},
		{
			name:       "GID -1 means no group, not even gid 0",
			policy:     Policy{UIDs: []uint32{daemonUID}, GID: -1},
			peer:       Peer{UID: 1000, GID: 0},
			wantOK:     false,
			wantReason: "uid 1000 is not root or the daemon's uid",
		},
		{
			name:       "GID -1 does not match a gid that wraps to -1",
			policy:     Policy{GID: -1},
			peer:       Peer{UID: 1000, GID: 1<<32 - 1},
			wantOK:     false,
			wantReason: "uid 1000 is not root or the daemon's uid",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, reason := tt.policy.Allow(tt.peer)
			if ok != tt.wantOK || reason != tt.wantReason {
				t.Errorf("got (%v, %q), want (%v, %q)", ok, reason, tt.wantOK, tt.wantReason)
			}
			if strings.TrimSpace(reason) == "" {
				t.Error("reason is empty; it is logged and must say why")
			}
		})
	}
}
