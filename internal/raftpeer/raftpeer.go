// Package raftpeer sends one raft message to a peer the way etcd's own
// peer transport does: a POST to the peer URL's /raft, which etcd hands
// to its raft node.
//
// etcdvisor uses it for one message, MsgTimeoutNow, to hand leadership
// off a leader whose disk is slow. etcd's MoveLeader makes the leader's
// raft send that message, but the leader's raft sends nothing between two
// of its WAL fsyncs: on a disk that takes 500 ms per fsync, the handover
// waits one or two of them, while every write of the cluster waits on
// the slow leader. Sent by the leader's etcdvisor over the network
// instead, it reaches the target at once.
//
// Why it is safe: MsgTimeoutNow only makes the target start an election
// now (raft lets any member campaign at any time, and its vote rules
// alone keep committed entries: a candidate wins only with a log as
// complete as a quorum's). What the early message gives up is what
// raft's own handover waits for: that the target already holds the
// leader's last entries. Entries the old leader has not yet sent are not
// committed, and are lost with its leadership; etcd's clients are told
// their writes timed out (see package fence).
package raftpeer

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/version"
	"go.etcd.io/etcd/client/pkg/v3/types"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// Path is where etcd's peer listener takes single raft messages (its
// "pipeline"; rafthttp.RaftPrefix).
const Path = "/raft"

// Handover is what a leader tells a peer to make it campaign at once.
type Handover struct {
	Cluster uint64 // cluster ID; a peer of another cluster refuses
	From    uint64 // the leader: this member
	To      uint64 // the member to take over
	Term    uint64 // the leader's term
}

// SendTimeoutNow posts MsgTimeoutNow from h.From to h.To at peerURL, and
// returns once the peer's raft has taken the message (etcd answers 204
// then). tlsCfg is this member's peer client TLS, nil for plain http.
func SendTimeoutNow(ctx context.Context, tlsCfg *tls.Config, peerURL string, h Handover) error {
	m := &raftpb.Message{
		Type: raftpb.MsgTimeoutNow.Enum(),
		From: proto.Uint64(h.From),
		To:   proto.Uint64(h.To),
		Term: proto.Uint64(h.Term),
	}
	return post(ctx, tlsCfg, peerURL, h.Cluster, m)
}

func post(ctx context.Context, tlsCfg *tls.Config, peerURL string, cluster uint64, m *raftpb.Message) error {
	u, err := url.Parse(peerURL)
	if err != nil {
		return fmt.Errorf("peer URL %q: %w", peerURL, err)
	}
	u.Path = Path
	body, err := proto.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode %v: %w", m.GetType(), err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%v to %s: %w", m.GetType(), u, err)
	}
	// The headers etcd's peer handler checks: who sends, which etcd, and
	// which cluster (createPostRequest in rafthttp).
	req.Header.Set("Content-Type", "application/protobuf")
	req.Header.Set("X-Server-From", types.ID(m.GetFrom()).String())
	req.Header.Set("X-Server-Version", version.Version)
	req.Header.Set("X-Min-Cluster-Version", version.MinClusterVersion)
	req.Header.Set("X-Etcd-Cluster-ID", types.ID(cluster).String())

	tr := &http.Transport{TLSClientConfig: tlsCfg, DisableKeepAlives: true, ResponseHeaderTimeout: time.Second}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return fmt.Errorf("%v to %s: %w", m.GetType(), u.Host, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNoContent {
		return nil
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	return fmt.Errorf("%v to %s: peer answered %s: %s", m.GetType(), u.Host, resp.Status, strings.TrimSpace(string(msg)))
}
