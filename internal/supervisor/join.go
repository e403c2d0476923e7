package supervisor

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/etcdvisor/etcdvisor/internal/api"
	"github.com/etcdvisor/etcdvisor/internal/cluster"
	"github.com/etcdvisor/etcdvisor/internal/health/diskcheck"
	"github.com/etcdvisor/etcdvisor/internal/snapshot"
)

// JoinJournalName is the local join journal in the data dir.
const JoinJournalName = "etcdvisor-join.json"

// joiner carries a join from before the member starts (lock, checks,
// snapshot, remove, add learner) to after (catch up, promote, release).
type joiner struct {
	s       *Supervisor
	lg      *zap.Logger
	cli     *clientv3.Client // to join.endpoints, not to the local member
	ch      cluster.Changer
	lock    *cluster.Lock // held from the first change to the promotion
	journal cluster.Journal
	rec     cluster.JoinRecord
	id      uint64 // the learner's member ID
}

// prepareJoin runs before the member starts. With join configured and no
// member in the data dir yet, it makes this member a learner of the
// cluster and sets the member's initial cluster to join it. With a member
// already in the data dir it only resumes a join that did not reach its
// promotion. It returns nil when there is nothing to do.
func (s *Supervisor) prepareJoin(ctx context.Context) (*joiner, error) {
	cfg := s.cfg
	if !cfg.Join.Joining() {
		return nil, nil
	}
	j := &joiner{s: s, lg: s.lg.Named("join"), journal: cluster.Journal{File: filepath.Join(cfg.Etcd.DataDir, JoinJournalName)}}
	local, err := j.journal.Local()
	if err != nil {
		return nil, err
	}
	if hasMember(cfg.Etcd.DataDir, cfg.Etcd.WalDir) {
		// etcd knows its cluster from its own WAL: the join config is only
		// a reminder of how this member came to be. A learner left behind
		// by a crash is promoted once the member runs again. The member
		// joined a running cluster, so its IDs are the cluster's choice
		// and not the hash of a "new" initial cluster: say so, or the
		// data dir check would refuse this member's own data.
		cfg.Etcd.InitialClusterState = "existing"
		if local == nil || local.Step == cluster.StepPromoted || local.Step == cluster.StepAborted {
			return nil, nil
		}
		j.rec = *local
		if j.id, err = cluster.ParseID(local.LearnerID); err != nil {
			return nil, fmt.Errorf("local join journal: %w", err)
		}
		if err := j.connect(); err != nil {
			return nil, err
		}
		j.lg.Info("resuming a join: the member is a learner waiting for its promotion", zap.String("learner-id", local.LearnerID))
		return j, nil
	}
	if err := j.connect(); err != nil {
		return nil, err
	}
	if err := j.begin(ctx, local); err != nil {
		j.close()
		return nil, err
	}
	return j, nil
}

// hasMember reports whether etcd's WAL exists: etcd then restarts from it
// and ignores its initial-cluster settings.
func hasMember(dataDir, walDir string) bool {
	if walDir == "" {
		walDir = filepath.Join(dataDir, "member", "wal")
	}
	entries, err := os.ReadDir(walDir)
	return err == nil && len(entries) > 0
}

func (j *joiner) connect() error {
	tlsCfg, err := j.s.clientTLS()
	if err != nil {
		return err
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   j.s.cfg.Join.Endpoints,
		TLS:         tlsCfg,
		DialTimeout: cluster.ProbeTimeout,
		Logger:      j.lg.Named("client").WithOptions(zap.IncreaseLevel(zap.ErrorLevel)),
	})
	if err != nil {
		return fmt.Errorf("join.endpoints: %w", err)
	}
	j.cli = cli
	j.ch = cluster.Changer{Client: cli, TLS: tlsCfg, Log: j.lg}
	return nil
}

func (j *joiner) close() {
	if j.lock != nil {
		j.lock.Release()
		j.lock = nil
	}
	if j.cli != nil {
		j.cli.Close()
	}
}

// begin takes the lock and makes the changes up to the learner. Each step
// looks at the cluster as it is, so a retry after a crash at any point
// picks up where the last attempt stopped.
func (j *joiner) begin(ctx context.Context, local *cluster.JoinRecord) error {
	cfg := j.s.cfg
	name, peerURLs := cfg.Etcd.Name, []string(cfg.Etcd.InitialAdvertisePeerURLs)
	if err := j.acquire(ctx); err != nil {
		return err
	}
	v, err := j.ch.Observe(ctx)
	if err != nil {
		return err
	}
	j.rec = cluster.JoinRecord{Name: name, PeerURLs: peerURLs, Replaces: cfg.Join.Replaces}
	if local != nil && local.Step != cluster.StepPromoted && local.Step != cluster.StepAborted {
		j.rec.StartedAt, j.rec.RemovedID = local.StartedAt, local.RemovedID
	}

	// A member with this peer URL: the learner of an attempt that stopped
	// before its member ever ran is taken over; one that ran and lost its
	// data is removed and added afresh; a voter is not touched.
	if self, ok := memberWithPeerURL(v, peerURLs); ok {
		switch {
		case self.IsLearner && self.Name == "":
			j.lg.Info("taking over the learner added by an earlier attempt", zap.String("learner-id", self.ID))
			return j.startAs(ctx, self.ID)
		case self.IsLearner:
			j.lg.Warn("a learner with this peer URL ran before and its data is gone; removing it to add it afresh", zap.String("learner-id", self.ID), zap.String("name", self.Name))
			if _, err := j.ch.Remove(ctx, j.lock, self.ID, true); err != nil {
				return err
			}
			if v, err = j.ch.Observe(ctx); err != nil {
				return err
			}
		default:
			return fmt.Errorf("voting member %s (%s) already has peer URL %s, but etcd.data-dir %s holds no member: to rejoin from scratch, replace it (join.replaces: %s)",
				self.Name, self.ID, peerURLs[0], cfg.Etcd.DataDir, self.Name)
		}
	}

	replaces := cfg.Join.Replaces
	if _, present := v.Find(replaces); replaces != "" && !present {
		// Gone because an earlier attempt removed it (the journal says so),
		// or never there: a typo must not turn a replace into an add.
		if j.rec.RemovedID == "" {
			var names []string
			for _, m := range v.Members {
				names = append(names, m.Name)
			}
			return fmt.Errorf("join.replaces %q: no member of that name in the cluster (members: %s)", replaces, strings.Join(names, ", "))
		}
		j.lg.Info("the member to replace was removed by an earlier attempt; adding this member", zap.String("replaces", replaces), zap.String("removed-id", j.rec.RemovedID))
		replaces = ""
	}
	check := func(v cluster.View) error {
		if replaces != "" {
			_, err := cluster.CheckRemoveThenAdd(v, replaces, name, peerURLs, cfg.Join.Force)
			return err
		}
		return cluster.CheckAdd(v, name, peerURLs)
	}
	// A cluster that is briefly unhealthy (a member promoted a moment ago
	// by the join before this one, not serving yet) gets a while to settle
	// before the join is refused; every other refusal is final.
	deadline := time.Now().Add(healthyWait)
	for err = check(v); errors.Is(err, cluster.ErrNotHealthy) && time.Now().Before(deadline); err = check(v) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
		if v, err = j.ch.Observe(ctx); err != nil {
			return err
		}
	}
	if err != nil {
		return err
	}
	if err := j.preflight(ctx, v); err != nil {
		return err
	}
	if err := j.record(ctx, cluster.StepChecked); err != nil {
		return err
	}
	if replaces != "" {
		removed, err := j.ch.Remove(ctx, j.lock, replaces, cfg.Join.Force)
		if err != nil {
			return err
		}
		j.rec.RemovedID = removed.ID
		if err := j.record(ctx, cluster.StepRemoved); err != nil {
			return err
		}
	}
	id, _, err := j.ch.AddLearner(ctx, j.lock, peerURLs)
	if err != nil {
		return err
	}
	return j.startAs(ctx, cluster.HexID(id))
}

// startAs journals the learner and points the member's start at the
// cluster as it is now.
func (j *joiner) startAs(ctx context.Context, learnerID string) error {
	var err error
	if j.id, err = cluster.ParseID(learnerID); err != nil {
		return err
	}
	j.rec.LearnerID = learnerID
	if err := j.record(ctx, cluster.StepLearner); err != nil {
		return err
	}
	lctx, cancel := context.WithTimeout(ctx, cluster.ProbeTimeout)
	defer cancel()
	resp, err := j.cli.MemberList(lctx)
	if err != nil {
		return fmt.Errorf("list members for the initial cluster: %w", err)
	}
	e := &j.s.cfg.Etcd
	e.InitialCluster = cluster.InitialCluster(resp.Members, j.id, e.Name)
	e.InitialClusterState = "existing"
	j.lg.Info("starting this member as a learner", zap.String("learner-id", learnerID), zap.String("initial-cluster", e.InitialCluster))
	return nil
}

func (j *joiner) acquire(ctx context.Context) error {
	host, _ := os.Hostname()
	holder := fmt.Sprintf("join of %s by etcdvisor pid %d on %s", j.s.cfg.Etcd.Name, os.Getpid(), host)
	j.s.noteJoin("waiting for the membership lock")
	l, err := cluster.AcquireLock(ctx, j.cli, holder, func(h cluster.Holder) {
		j.lg.Info("waiting for the membership lock", zap.String("held-by", h.Holder))
		j.s.noteJoin("waiting for the membership lock, held by %s", h.Holder)
	})
	if err != nil {
		return err
	}
	j.lock = l
	j.s.noteJoin("holding the membership lock; checking the cluster")
	return nil
}

func (j *joiner) record(ctx context.Context, step string) error {
	j.rec.Step = step
	if err := j.journal.Record(ctx, j.lock, &j.rec); err != nil {
		return err
	}
	j.lg.Info("join step", zap.String("step", step), zap.String("learner-id", j.rec.LearnerID), zap.String("removed-id", j.rec.RemovedID))
	j.s.noteJoin("step %s", step)
	return nil
}

// preflight is what a careful operator checks before the first change:
// room for the database, a disk fast enough to keep up, and a snapshot of
// the cluster as it was. (The certificates were checked at start.)
func (j *joiner) preflight(ctx context.Context, v cluster.View) error {
	cfg := j.s.cfg
	var db int64
	for _, m := range v.Members {
		db = max(db, m.DBSize)
	}
	// The database arrives as a snapshot file and is then renamed into
	// place; with the WAL and room to grow, twice its size is the least.
	// The snapshot taken before the change needs about once more (see
	// snapshot), on the same filesystem or on its own.
	need := map[string]int64{cfg.Etcd.DataDir: 2 * db}
	why := fmt.Sprintf("twice the cluster's database (%d MiB) for the member", db>>20)
	if !cfg.Join.SkipSnapshot {
		need[j.s.snaps.dir] += db
		why += ", once more for the snapshot taken before the change"
	}
	if err := checkFree(need, why); err != nil {
		return err
	}
	target := j.s.watch.t.FsyncCritical
	res, err := diskcheck.Run(ctx, cfg.Etcd.DataDir, diskcheck.Options{Size: 200 * 2300, BlockSize: 2300, Target: target})
	if err != nil {
		return fmt.Errorf("pre-flight: fsync check: %w", err)
	}
	if !res.Pass {
		return fmt.Errorf("pre-flight: fdatasync p99 on %s is %s, above the %s this member's heartbeat allows: this disk cannot keep up as a member (etcdvisor check disk %s tells more)",
			cfg.Etcd.DataDir, res.P99, target, cfg.Etcd.DataDir)
	}
	j.lg.Info("pre-flight passed", zap.Int64("db-bytes", db), zap.Duration("fsync-p99", res.P99))
	if cfg.Join.SkipSnapshot {
		return nil
	}
	return j.snapshot(ctx, v)
}

// checkFree checks that each dir has room for the bytes it is to take,
// counting dirs that share a filesystem together; why says what the
// bytes are for.
func checkFree(need map[string]int64, why string) error {
	type fs struct {
		dirs        []string
		free, bytes int64
	}
	var all []*fs
	byDev := map[uint64]*fs{}
	for _, dir := range slices.Sorted(maps.Keys(need)) {
		var st unix.Stat_t
		var sfs unix.Statfs_t
		if err := unix.Stat(dir, &st); err != nil {
			return fmt.Errorf("pre-flight: free space in %s: %w", dir, err)
		}
		if err := unix.Statfs(dir, &sfs); err != nil {
			return fmt.Errorf("pre-flight: free space in %s: %w", dir, err)
		}
		f := byDev[st.Dev]
		if f == nil {
			f = &fs{free: int64(sfs.Bavail) * sfs.Bsize}
			byDev[st.Dev] = f
			all = append(all, f)
		}
		f.dirs = append(f.dirs, dir)
		f.bytes += need[dir]
	}
	for _, f := range all {
		if f.free < f.bytes {
			return fmt.Errorf("pre-flight: %s has %d MiB free, short of the %d MiB joining needs there (%s): free space or use a larger disk",
				strings.Join(f.dirs, " and "), f.free>>20, f.bytes>>20, why)
		}
	}
	return nil
}

// snapshot saves the cluster's data before the first change, into this
// member's snapshot dir, as its first snapshot: from the most caught-up
// healthy follower, so the leader's disk, which every write waits on and
// which is about to send the database to the learner, is spared the read.
//
// It is not compressed unless it is encrypted: a compressed snapshot is
// checked through a plaintext copy of the whole database, written and
// deleted again just before the database moves to this member. On the
// bench at 1 GiB the move then took 4.9 s, against 2.3-3.8 s after an
// uncompressed snapshot. The join waits on this snapshot; compression
// would only save disk, which retention gives back. An encrypted snapshot
// keeps the configured form: with recipients set, no plaintext file may
// stay behind.
func (j *joiner) snapshot(ctx context.Context, v cluster.View) error {
	var from api.MemberHealth
	for _, m := range v.Voters() {
		better := from.ID == "" || from.IsLeader && !m.IsLeader || from.IsLeader == m.IsLeader && m.RaftIndex > from.RaftIndex
		if m.Healthy && better {
			from = m
		}
	}
	sn := j.s.snaps
	name := fmt.Sprintf("etcd-%s-prejoin-%s", j.s.cfg.Etcd.Name, time.Now().UTC().Format("20060102T150405.000Z"))
	sctx, cancel := context.WithTimeout(ctx, sn.cfg.Timeout.D())
	defer cancel()
	cli, err := j.ch.Dial(sctx, from)
	if err != nil {
		return fmt.Errorf("pre-flight: snapshot of the cluster before joining it: %w", err)
	}
	defer cli.Close()
	m, err := snapshot.Save(sctx, cli, from.ClientURLs[0], snapshot.Options{
		Dir: sn.dir, Name: name, Compress: sn.cfg.Compress && len(sn.recipients) > 0, Recipients: sn.recipients,
		RateLimit: int64(sn.cfg.RateLimit), Logger: sn.lg,
	})
	if err != nil {
		return fmt.Errorf("pre-flight: snapshot of the cluster before joining it: %w", err)
	}
	j.lg.Info("snapshot taken before joining", zap.String("file", filepath.Join(sn.dir, m.File)), zap.String("from", from.Name), zap.Int64("revision", m.Revision))
	return nil
}

// finish runs once the member has started: it promotes the learner when
// it has caught up, or removes it again if it stops making progress, and
// then lets the lock go.
func (j *joiner) finish(ctx context.Context) error {
	defer j.close()
	if j.lock == nil {
		if err := j.acquire(ctx); err != nil {
			return err
		}
	}
	progress := func(ctx context.Context) (uint64, error) {
		cli := j.s.member.Client()
		if cli == nil {
			return 0, errors.New("member not running")
		}
		sctx, cancel := context.WithTimeout(ctx, cluster.ProbeTimeout)
		defer cancel()
		st, err := cli.Status(sctx, "")
		if err != nil {
			return 0, err
		}
		return st.RaftAppliedIndex, nil
	}
	err := j.ch.Promote(ctx, j.lock, j.id, progress, j.s.cfg.Join.LearnerTimeout.D())
	switch {
	case err == nil:
		if err := j.record(ctx, cluster.StepPromoted); err != nil {
			return err
		}
		// The lock goes only once this member serves: the next change
		// must find a cluster whose voters all answer.
		select {
		case <-j.s.member.Ready():
			j.lg.Info("joined the cluster: this member is a voter and serves")
		case <-ctx.Done():
		}
		return nil
	case errors.Is(err, cluster.ErrLearnerStuck):
		j.lg.Error("the learner is not catching up; removing it again", zap.Error(err))
		j.rec.Error = err.Error()
		if _, rerr := j.ch.Client.MemberRemove(ctx, j.id); rerr != nil {
			return fmt.Errorf("join failed: %w; and removing the learner failed too: %v (remove it by hand: etcdvisor member abort-join)", err, rerr)
		}
		if rerr := j.record(ctx, cluster.StepAborted); rerr != nil {
			j.lg.Warn("could not journal the aborted join", zap.Error(rerr))
		}
		return fmt.Errorf("join failed and was undone: %w", err)
	case ctx.Err() != nil:
		return nil // stopping: the next start resumes from the journal
	default:
		return fmt.Errorf("join: %w", err)
	}
}

// healthyWait is how long a join waits for an unhealthy cluster to
// recover before it refuses.
const healthyWait = 30 * time.Second

func memberWithPeerURL(v cluster.View, urls []string) (api.MemberHealth, bool) {
	for _, m := range v.Members {
		for _, u := range m.PeerURLs {
			if slices.Contains(urls, u) {
				return m, true
			}
		}
	}
	return api.MemberHealth{}, false
}
