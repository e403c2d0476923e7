package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"go.uber.org/zap"

	"github.com/etcdvisor/etcdvisor/internal/api"
	"github.com/etcdvisor/etcdvisor/internal/cluster"
	"github.com/etcdvisor/etcdvisor/internal/config"
)

// changer makes membership changes through the local member.
func (s *Supervisor) changer() (cluster.Changer, error) {
	tlsCfg, err := s.clientTLS()
	if err != nil {
		return cluster.Changer{}, err
	}
	cli := s.member.Client()
	if cli == nil {
		return cluster.Changer{}, errors.New("the etcd member is not running")
	}
	return cluster.Changer{Client: cli, TLS: tlsCfg, Log: s.lg.Named("membership")}, nil
}

// lockFor takes the membership lock for one operator request.
func (s *Supervisor) lockFor(ctx context.Context, what string) (*cluster.Lock, error) {
	host, _ := os.Hostname()
	return cluster.AcquireLock(ctx, s.member.Client(), fmt.Sprintf("%s, asked on %s (member %s)", what, host, s.cfg.Etcd.Name), func(h cluster.Holder) {
		s.lg.Info("waiting for the membership lock", zap.String("held-by", h.Holder), zap.String("for", what))
	})
}

// removeMember is `etcdvisor member remove`: under the lock, the safety
// rules decide; a leader hands over first.
func (s *Supervisor) removeMember(ctx context.Context, req api.RemoveRequest) (api.MemberHealth, error) {
	ch, err := s.changer()
	if err != nil {
		return api.MemberHealth{}, err
	}
	lock, err := s.lockFor(ctx, "remove of "+req.Name)
	if err != nil {
		return api.MemberHealth{}, err
	}
	defer lock.Release()
	return ch.Remove(ctx, lock, req.Name, req.Force)
}

// addMember is `etcdvisor member add`: a learner, under the lock, and the
// settings the new member must start with.
func (s *Supervisor) addMember(ctx context.Context, req api.AddRequest) (api.AddResponse, error) {
	ch, err := s.changer()
	if err != nil {
		return api.AddResponse{}, err
	}
	lock, err := s.lockFor(ctx, "add of "+req.Name)
	if err != nil {
		return api.AddResponse{}, err
	}
	defer lock.Release()
	v, err := ch.Observe(ctx)
	if err != nil {
		return api.AddResponse{}, err
	}
	if err := cluster.CheckAdd(v, req.Name, req.PeerURLs); err != nil {
		return api.AddResponse{}, err
	}
	id, members, err := ch.AddLearner(ctx, lock, req.PeerURLs)
	if err != nil {
		return api.AddResponse{}, err
	}
	return api.AddResponse{
		ID:                  cluster.HexID(id),
		InitialCluster:      cluster.InitialCluster(members, id, req.Name),
		InitialClusterState: "existing",
	}, nil
}

// AbortJoin undoes a join that did not finish, on the joining host, with
// its etcdvisor stopped: it removes the learner this host added (under the
// lock, so it cannot race a resumed join), journals the abort, and moves
// the half-made member data aside so the next start begins afresh. A
// member the join already removed (a replace) stays removed.
func AbortJoin(ctx context.Context, cfg *config.Config, lg *zap.Logger) (cluster.JoinRecord, error) {
	dl, err := lockDataDir(cfg.LockPath())
	if err != nil {
		return cluster.JoinRecord{}, fmt.Errorf("etcd.data-dir %q: %w (stop etcdvisor before aborting its join)", cfg.Etcd.DataDir, err)
	}
	defer dl.release()
	j := &joiner{s: &Supervisor{cfg: cfg, lg: lg}, lg: lg.Named("join"), journal: cluster.Journal{File: filepath.Join(cfg.Etcd.DataDir, JoinJournalName)}}
	local, err := j.journal.Local()
	if err != nil {
		return cluster.JoinRecord{}, err
	}
	if local == nil {
		return cluster.JoinRecord{}, fmt.Errorf("no join to abort: %s has no join journal", cfg.Etcd.DataDir)
	}
	if local.Step == cluster.StepAborted {
		return *local, fmt.Errorf("no join to abort: the join of %s was aborted already (%s)", local.Name, local.Error)
	}
	if local.Step == cluster.StepPromoted {
		return *local, fmt.Errorf("the join of %s finished (promoted at %s): remove the member instead (etcdvisor member remove %s)", local.Name, local.UpdatedAt.Format("2006-01-02 15:04:05"), local.Name)
	}
	if !cfg.Join.Joining() {
		return *local, errors.New("join.endpoints is not set: aborting needs the cluster's client URLs")
	}
	if err := j.connect(); err != nil {
		return *local, err
	}
	defer j.close()
	if err := j.acquire(ctx); err != nil {
		return *local, err
	}
	j.rec = *local
	if local.LearnerID != "" {
		v, err := j.ch.Observe(ctx)
		if err != nil {
			return *local, err
		}
		if m, ok := v.Find(local.LearnerID); ok {
			if !m.IsLearner {
				return *local, fmt.Errorf("member %s (%s) is a voter already: remove it instead (etcdvisor member remove)", m.Name, m.ID)
			}
			if _, err := j.ch.Remove(ctx, j.lock, m.ID, true); err != nil {
				return *local, err
			}
		}
	}
	j.rec.Error = "aborted by the operator"
	if err := j.record(ctx, cluster.StepAborted); err != nil {
		return j.rec, err
	}
	if hasMember(cfg.Etcd.DataDir, cfg.Etcd.WalDir) {
		aside := filepath.Join(cfg.Etcd.DataDir, "member.aborted-join")
		os.RemoveAll(aside)
		if err := os.Rename(filepath.Join(cfg.Etcd.DataDir, "member"), aside); err != nil {
			return j.rec, fmt.Errorf("move the learner's data aside: %w", err)
		}
		lg.Info("moved the aborted learner's data aside", zap.String("to", aside))
		if w := cfg.Etcd.WalDir; w != "" {
			os.RemoveAll(w + ".aborted-join")
			if err := os.Rename(w, w+".aborted-join"); err != nil {
				return j.rec, fmt.Errorf("move the learner's WAL aside: %w", err)
			}
		}
	}
	return j.rec, nil
}
