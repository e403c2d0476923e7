package supervisor

import (
	"context"
	"fmt"
	"strings"

	"github.com/dustin/go-humanize"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdvisor/etcdvisor/internal/api"
	"github.com/etcdvisor/etcdvisor/internal/version"
)

// status reads this member's state. Everything it asks is answered
// locally (maintenance status and a serializable member list), so status
// works even when the cluster has lost quorum.
func (s *Supervisor) status(ctx context.Context) api.Status {
	st := api.Status{
		Name:             s.cfg.Etcd.Name,
		Phase:            s.getPhase(),
		EtcdvisorVersion: version.Version,
		EtcdVersion:      version.Etcd,
		StartedAt:        s.started,
		DataDir:          s.cfg.Etcd.DataDir,
		ClientURLs:       s.cfg.Etcd.AdvertiseClientURLs,
	}
	if s.snaps != nil {
		s.snaps.mu.Lock()
		if l := s.snaps.last; l != nil {
			st.LastSnapshot = &api.SnapshotSummary{Path: l.Path, CreatedAt: l.CreatedAt, Revision: l.Revision, Size: l.Size}
		}
		st.LastSnapshotError = s.snaps.lastErr
		s.snaps.mu.Unlock()
	}
	if s.watch != nil {
		if r := s.watch.report(); !r.At.IsZero() {
			st.Health = &r
		}
	}
	if st.Phase == api.PhaseStarting {
		st.Error = "the etcd member is not serving yet"
		if n := s.joinNote.Load(); n != nil {
			st.Error += "; joining the cluster: " + *n
		}
		return st
	}
	cli := s.member.Client()
	if cli == nil {
		st.Error = "the etcd member is not running"
		return st
	}
	ms, err := cli.Status(ctx, "")
	if err != nil {
		st.Error = fmt.Sprintf("read member status: %v", err)
		return st
	}
	st.MemberID = hexID(ms.Header.MemberId)
	st.ClusterID = hexID(ms.Header.ClusterId)
	st.LeaderID = hexID(ms.Leader)
	st.IsLeader = ms.Leader != 0 && ms.Leader == ms.Header.MemberId
	st.IsLearner = ms.IsLearner
	st.RaftTerm = ms.RaftTerm
	st.RaftIndex = ms.RaftIndex
	st.RaftAppliedIndex = ms.RaftAppliedIndex
	st.Revision = ms.Header.Revision
	st.DBSize = ms.DbSize
	st.DBSizeInUse = ms.DbSizeInUse
	st.EtcdVersion = ms.Version
	st.Errors = ms.Errors

	ml, err := cli.MemberList(ctx, clientv3.WithSerializable())
	if err != nil {
		st.Error = fmt.Sprintf("list members: %v", err)
		return st
	}
	for _, m := range ml.Members {
		st.Members = append(st.Members, api.Member{
			ID:         hexID(m.ID),
			Name:       m.Name,
			PeerURLs:   m.PeerURLs,
			ClientURLs: m.ClientURLs,
			IsLearner:  m.IsLearner,
			IsLeader:   m.ID == ms.Leader,
		})
	}
	return st
}

// statusLine is the one line systemd shows for the service. It leaves
// out figures that change on every write so it is not resent each second.
func statusLine(st api.Status) string {
	if st.Error != "" {
		return st.Phase + ": " + st.Error
	}
	role := "follower"
	switch {
	case st.IsLeader:
		role = "leader"
	case st.IsLearner:
		role = "learner"
	case st.LeaderID == "":
		role = "no leader"
	}
	parts := []string{
		st.Phase,
		role,
		fmt.Sprintf("%d member(s)", len(st.Members)),
		fmt.Sprintf("term %d", st.RaftTerm),
		"db " + humanize.IBytes(uint64(st.DBSize)),
	}
	if len(st.Errors) > 0 {
		parts = append(parts, "errors: "+strings.Join(st.Errors, "; "))
	}
	if st.Health != nil {
		parts = append(parts, healthLine(*st.Health))
	}
	return strings.Join(parts, ", ")
}

// hexID prints an etcd ID the way etcdctl does; 0 (no leader) is "".
func hexID(id uint64) string {
	if id == 0 {
		return ""
	}
	return fmt.Sprintf("%x", id)
}

// startingNote says what the daemon does before its member exists.
func (s *Supervisor) startingNote() string {
	if n := s.joinNote.Load(); n != nil {
		return "joining the cluster: " + *n
	}
	return s.getPhase()
}

// noteJoin records where a join stands, for status before the member starts.
func (s *Supervisor) noteJoin(format string, args ...any) {
	n := fmt.Sprintf(format, args...)
	s.joinNote.Store(&n)
}
