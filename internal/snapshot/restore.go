package snapshot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"filippo.io/age"
	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/client/pkg/v3/types"
	"go.etcd.io/etcd/server/v3/config"
	"go.etcd.io/etcd/server/v3/etcdserver"
	"go.etcd.io/etcd/server/v3/etcdserver/api/membership"
	"go.etcd.io/etcd/server/v3/etcdserver/api/snap"
	"go.etcd.io/etcd/server/v3/etcdserver/cindex"
	"go.etcd.io/etcd/server/v3/storage/backend"
	"go.etcd.io/etcd/server/v3/storage/mvcc"
	"go.etcd.io/etcd/server/v3/storage/schema"
	"go.etcd.io/etcd/server/v3/storage/wal"
	"go.etcd.io/etcd/server/v3/storage/wal/walpb"
	"go.etcd.io/etcd/server/v3/verify"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

// RestoreOptions mirror etcdutl snapshot restore; empty fields take
// etcdutl's defaults.
type RestoreOptions struct {
	// SnapshotPath is the snapshot file, in any form Open reads.
	SnapshotPath string
	// Identities decrypt an age-encrypted snapshot.
	Identities []age.Identity

	// Name is the new member's name ("default").
	Name string
	// DataDir must be missing or empty (NAME.etcd), but for the names in
	// Keep.
	DataDir string
	// Keep names entries of DataDir that are not etcd's and may stay: the
	// supervisor's lock file, control socket and snapshot dir live there
	// by default, and the snapshot to restore may be among them. Restore
	// never writes or removes them. "member" is etcd's, and never kept.
	Keep []string
	// WalDir must be missing (DataDir/member/wal), and so must WalDir.tmp,
	// which etcd's WAL creation would remove.
	WalDir string

	// InitialCluster is "name=peer-url,…" (NAME=first peer URL).
	InitialCluster string
	// InitialClusterToken ("etcd-cluster"), with InitialCluster, determines
	// the member and cluster IDs: the same two on every host give one cluster.
	InitialClusterToken string
	// PeerURLs are the new member's advertised peer URLs
	// (http://localhost:2380).
	PeerURLs []string

	// BumpRevision raises the latest revision by this much, so clients never
	// see the revision go backwards; it requires MarkCompacted.
	BumpRevision uint64
	// MarkCompacted marks the bumped revision compacted, so watchers of
	// revisions that never existed here get "compacted" rather than silence;
	// it requires BumpRevision.
	MarkCompacted bool

	// SkipHashCheck accepts a DB without etcd's sha256 trailer, such as a
	// copy of member/snap/db (etcdutl's --skip-hash-check). A trailer that
	// is present is always checked.
	SkipHashCheck bool

	// Progress, if set, is called from Restore's goroutine as the DB is
	// written, with the bytes written so far and the DB's expected size:
	// from the manifest beside the snapshot, or a plain file's size; 0 when
	// unknown (compressed or encrypted, without a manifest). Once the whole
	// DB is written it is called once more with done == total.
	Progress func(done, total int64)

	Logger *zap.Logger
}

// ErrNotRemoved is returned, wrapped beside the error that stopped the
// restore, when a restore that failed could not remove all it had created;
// the message names what is left.
var ErrNotRemoved = errors.New("could not remove what the restore created")

// walSegmentSize is what wal.Create preallocates for the first segment
// (wal.SegmentSizeBytes).
const walSegmentSize = 64 << 20

// compressionHeadroom is how much larger than a compressed file its DB is
// assumed to be when no manifest says. etcd DBs hold free pages and
// repetitive protobuf, so 4x is typical, not a bound; a write that still
// runs out of space fails and is cleaned up.
const compressionHeadroom = 4

// Restore makes the data dir of a new member from a snapshot, as etcdutl
// snapshot restore does, with these differences:
//   - it decrypts and decompresses on the fly and checks the sha256 trailer
//     in the same pass that copies the DB into place (etcdutl reads twice);
//   - a DB without trailer is refused (ErrNoChecksum) unless SkipHashCheck;
//   - it checks free space first: the DB size from the manifest beside the
//     snapshot if there is one, else the file size (times
//     compressionHeadroom if compressed), plus the first WAL segment;
//   - it stops when ctx is done: between chunks of the copy and between
//     steps, returning an error that wraps ctx.Err();
//   - on any failure or cancellation it removes exactly what it created
//     (DataDir/member, WalDir, any directory it had to make for them, and
//     DataDir itself only if it made it), so DataDir is left as it was: the
//     entries in Keep and whatever else was there are never touched. If
//     that removal fails too, the error wraps ErrNotRemoved.
//
// Then, following etcdutl, it removes the old membership from the DB,
// optionally bumps the revision and marks it compacted, and writes a WAL
// and a raft snapshot whose members come from InitialCluster and
// InitialClusterToken; the member IDs are derived from them, so every host
// restoring with the same two forms one cluster. A restore that has
// finished returns nil even if ctx ends at that moment.
func Restore(ctx context.Context, o RestoreOptions) (err error) {
	lg := o.Logger
	if lg == nil {
		lg = zap.NewNop()
	}
	o = restoreDefaults(o)
	if (o.BumpRevision > 0) != o.MarkCompacted {
		return fmt.Errorf("restore: mark-compacted %v and bump-revision %d: each requires the other", o.MarkCompacted, o.BumpRevision)
	}
	pURLs, err := types.NewURLs(o.PeerURLs)
	if err != nil {
		return fmt.Errorf("restore: peer-urls %v: %w", o.PeerURLs, err)
	}
	ics, err := types.NewURLsMap(o.InitialCluster)
	if err != nil {
		return fmt.Errorf("restore: initial-cluster %q: %w", o.InitialCluster, err)
	}
	sc := config.ServerConfig{
		Logger:              lg,
		Name:                o.Name,
		PeerURLs:            pURLs,
		InitialPeerURLsMap:  ics,
		InitialClusterToken: o.InitialClusterToken,
	}
	if err := sc.VerifyBootstrap(); err != nil {
		return fmt.Errorf("restore: initial-cluster %q for member %q: %w", o.InitialCluster, o.Name, err)
	}
	cl, err := membership.NewClusterFromURLsMap(lg, o.InitialClusterToken, ics)
	if err != nil {
		return fmt.Errorf("restore: initial-cluster %q: %w", o.InitialCluster, err)
	}

	ents, err := os.ReadDir(o.DataDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("restore: read data-dir: %w", err)
	}
	for _, e := range ents {
		// member is etcd's: undo removes it, so it must be Restore's own.
		if e.Name() == "member" || !slices.Contains(o.Keep, e.Name()) {
			return fmt.Errorf("restore: data-dir %q is not empty (it holds %s): stop whatever uses it and move it aside first (mv %s %s.old); restore never writes over a member's data",
				o.DataDir, e.Name(), o.DataDir, o.DataDir)
		}
	}
	if _, err := os.Stat(o.WalDir); err == nil {
		return fmt.Errorf("restore: wal-dir %q exists", o.WalDir)
	}
	// wal.Create builds the WAL in WalDir.tmp and removes whatever is there
	// first: that could be someone's.
	if tmp := filepath.Clean(o.WalDir) + ".tmp"; exists(tmp) {
		return fmt.Errorf("restore: %q exists, and creating wal-dir %q would remove it", tmp, o.WalDir)
	}

	// Everything that can be refused without writing is refused first.
	if err := stopped(ctx, "opening the snapshot"); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	r, err := open(o.SnapshotPath, o.Identities)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer r.Close()
	if err := checkFreeSpace(o, r.Form); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if err := stopped(ctx, "writing"); err != nil {
		return fmt.Errorf("restore: %w", err)
	}

	undo, err := makeDirs(o)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer func() {
		if err != nil {
			if uerr := undo(); uerr != nil {
				err = fmt.Errorf("%w; %w: %w", err, ErrNotRemoved, uerr)
			}
		}
	}()

	lg.Info("restoring snapshot",
		zap.String("path", o.SnapshotPath),
		zap.String("data-dir", o.DataDir),
		zap.String("wal-dir", o.WalDir),
		zap.Bool("encrypted", r.Form.Encrypted),
		zap.Bool("compressed", r.Form.Compressed))

	progress := func(int64) {}
	if o.Progress != nil {
		total := expectedDBSize(o.SnapshotPath, r.Form)
		progress = func(done int64) { o.Progress(done, total) }
	}
	dbPath := filepath.Join(o.DataDir, "member", "snap", "db")
	if err := copyDB(ctx, r, dbPath, o.SkipHashCheck, progress); err != nil {
		return fmt.Errorf("restore %s: copy DB into place: %w", o.SnapshotPath, err)
	}
	if o.Progress != nil {
		o.Progress(r.Size(), r.Size())
	}
	if !r.HasTrailer() {
		// Without the trailer nothing vouches for the DB; bbolt's check
		// catches at least structural damage before etcd's backend, which
		// panics on it, opens the file.
		if err := stopped(ctx, "checking the DB"); err != nil {
			return fmt.Errorf("restore: %w", err)
		}
		if _, err := dbStatus(dbPath); err != nil {
			return fmt.Errorf("restore: check DB without sha256 trailer: %w", err)
		}
	}
	if err := rewriteMembership(ctx, lg, o, cl, dbPath); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if err := stopped(ctx, "verifying the data dir"); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if err := verify.VerifyIfEnabled(verify.Config{ExactIndex: true, Logger: lg, DataDir: o.DataDir}); err != nil {
		return fmt.Errorf("restore: verify data dir: %w", err)
	}
	lg.Info("restored snapshot",
		zap.String("path", o.SnapshotPath),
		zap.String("data-dir", o.DataDir),
		zap.Int64("db-size", r.Size()),
		zap.String("member-id", cl.MemberByName(o.Name).ID.String()),
		zap.String("cluster-id", cl.ID().String()))
	return nil
}

// stopped returns, once ctx is done, ctx's error and the step the restore
// did not start. It wraps ctx.Err(), not context.Cause (which for
// signal.NotifyContext names the signal), so callers can test for
// context.Canceled.
func stopped(ctx context.Context, step string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("stopped before %s: %w", step, err)
	}
	return nil
}

func restoreDefaults(o RestoreOptions) RestoreOptions {
	if o.Name == "" {
		o.Name = "default"
	}
	if len(o.PeerURLs) == 0 {
		o.PeerURLs = []string{"http://localhost:2380"}
	}
	if o.InitialCluster == "" {
		o.InitialCluster = o.Name + "=" + o.PeerURLs[0]
	}
	if o.InitialClusterToken == "" {
		o.InitialClusterToken = "etcd-cluster"
	}
	if o.DataDir == "" {
		o.DataDir = o.Name + ".etcd"
	}
	if o.WalDir == "" {
		o.WalDir = filepath.Join(o.DataDir, "member", "wal")
	}
	return o
}

// makeDirs creates DataDir/member/snap and WalDir's parent, and returns a
// function that removes whatever of them it created, and DataDir/member
// and WalDir, which Restore made sure were missing. It never removes a
// directory that existed: for each path it removes the first ancestor that
// was missing, which is DataDir itself only when DataDir was missing.
func makeDirs(o RestoreOptions) (undo func() error, err error) {
	var created []string
	undo = func() error {
		var errs []error
		for i := len(created) - 1; i >= 0; i-- {
			if err := os.RemoveAll(created[i]); err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	}
	mk := func(dir string) error {
		// Find the first missing ancestor: that is what undo removes.
		first := ""
		for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
			if exists(d) {
				break
			}
			first = d
			if filepath.Dir(d) == d {
				break
			}
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		if first != "" {
			created = append(created, first)
		}
		return nil
	}
	for _, d := range []string{filepath.Join(o.DataDir, "member", "snap"), filepath.Dir(o.WalDir)} {
		if err := mk(d); err != nil {
			if uerr := undo(); uerr != nil {
				err = fmt.Errorf("%w; %w: %w", err, ErrNotRemoved, uerr)
			}
			return nil, fmt.Errorf("create dir: %w", err)
		}
	}
	// A data dir that existed empty: remove what goes into it, not it.
	created = append(created, filepath.Join(o.DataDir, "member"), o.WalDir)
	return undo, nil
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// copyDB writes the plaintext DB to path in one pass; the reader checks the
// sha256 trailer at the end of that same pass. It stops between chunks
// once ctx is done, and reports the DB bytes written after each.
func copyDB(ctx context.Context, r *Reader, path string, skipHashCheck bool, progress func(done int64)) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	// Reading (decrypting, decompressing, hashing) runs on the prefetch
	// goroutine and writing on this one, and the disk starts writing the
	// DB as it arrives, so the fsync at the end waits only for the tail:
	// the three overlap instead of taking turns.
	pf := newPrefetchReader(ctx, r)
	// The caller closes r: the goroutine must be done with it by then.
	defer pf.CloseAndWait()
	// The prefetch buffers are written as they are, a MiB at a time.
	w := &writebackFile{f: f}
	defer w.stop() // before f is closed
	var done int64
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		b, rerr := pf.Next()
		if len(b) > 0 {
			if _, err := w.Write(b); err != nil {
				return err
			}
			done += int64(len(b))
			progress(done)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return fmt.Errorf("read %s: %w", r.Form.describe(), rerr)
		}
	}
	if !r.HasTrailer() && !skipHashCheck {
		return fmt.Errorf("%w (if it is a copy of member/snap/db, restore it with --skip-hash-check)", ErrNoChecksum)
	}
	w.stop()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync: %w", err)
	}
	return f.Close()
}

// expectedDBSize is the size of the DB a restore of path writes, for
// Progress: from the manifest beside it, or a plain file's size less etcd's
// trailer (a DB is whole sectors, so the length says whether there is one);
// 0 when unknown.
func expectedDBSize(path string, form Form) int64 {
	if m, err := ReadManifest(path); err == nil && m.DBSize > 0 {
		return m.DBSize
	}
	if form.Compressed || form.Encrypted {
		return 0
	}
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	if fi.Size()%sectorSize == trailerSize {
		return fi.Size() - trailerSize
	}
	return fi.Size()
}

// checkFreeSpace refuses a restore that cannot fit, before it writes.
func checkFreeSpace(o RestoreOptions, form Form) error {
	fi, err := os.Stat(o.SnapshotPath)
	if err != nil {
		return fmt.Errorf("stat snapshot: %w", err)
	}
	need, from := fi.Size(), "snapshot file size"
	if m, err := ReadManifest(o.SnapshotPath); err == nil && m.DBSize > 0 {
		need, from = m.DBSize, "manifest db-size"
	} else if form.Compressed {
		need, from = fi.Size()*compressionHeadroom, fmt.Sprintf("%dx the compressed file size", compressionHeadroom)
	}
	dataFS, err := existingAncestor(o.DataDir)
	if err != nil {
		return err
	}
	walFS, err := existingAncestor(o.WalDir)
	if err != nil {
		return err
	}
	needs := map[string]int64{dataFS: need}
	if sameFS(dataFS, walFS) {
		needs[dataFS] += walSegmentSize
	} else {
		needs[walFS] = walSegmentSize
	}
	for dir, n := range needs {
		var st unix.Statfs_t
		if err := unix.Statfs(dir, &st); err != nil {
			return fmt.Errorf("statfs %s: %w", dir, err)
		}
		if free := int64(st.Bavail) * int64(st.Bsize); free < n {
			return fmt.Errorf("not enough free space in %s: %d bytes free, %d needed (%s plus a %d-byte WAL segment)", dir, free, n, from, walSegmentSize)
		}
	}
	return nil
}

func existingAncestor(dir string) (string, error) {
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil {
			return d, nil
		} else if !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("stat %s: %w", d, err)
		}
		if filepath.Dir(d) == d {
			return d, nil
		}
	}
}

func sameFS(a, b string) bool {
	var sa, sb unix.Stat_t
	if unix.Stat(a, &sa) != nil || unix.Stat(b, &sb) != nil {
		return false
	}
	return sa.Dev == sb.Dev
}

// rewriteMembership follows etcdutl's restore after the DB copy: the old
// cluster's members leave the DB, the revision is optionally bumped, the new
// members are written to the DB, a WAL and a raft snapshot that bootstrap
// them are created, and the consistent index is set to the WAL's commit.
// It stops between those steps once ctx is done.
func rewriteMembership(ctx context.Context, lg *zap.Logger, o RestoreOptions, cl *membership.RaftCluster, dbPath string) error {
	if err := stopped(ctx, "rewriting the membership"); err != nil {
		return err
	}
	be := backend.NewDefaultBackend(lg, dbPath)
	// The batch transaction is committed on Close.
	defer be.Close()

	if err := schema.NewMembershipBackend(lg, be).TrimMembershipFromBackend(); err != nil {
		return fmt.Errorf("remove old membership from DB: %w", err)
	}
	if o.MarkCompacted && o.BumpRevision > 0 {
		if err := stopped(ctx, "bumping the revision"); err != nil {
			return err
		}
		if err := bumpRevision(lg, be, int64(o.BumpRevision)); err != nil {
			return fmt.Errorf("bump revision: %w", err)
		}
	}

	cl.SetBackend(schema.NewMembershipBackend(lg, be))
	for _, m := range cl.Members() {
		cl.AddMember(m, true)
	}
	self := cl.MemberByName(o.Name)
	meta, err := proto.Marshal(&etcdserverpb.Metadata{NodeID: new(uint64(self.ID)), ClusterID: new(uint64(cl.ID()))})
	if err != nil {
		return fmt.Errorf("marshal WAL metadata: %w", err)
	}
	if err := stopped(ctx, "creating the WAL"); err != nil {
		return err
	}
	w, err := wal.Create(lg, o.WalDir, meta)
	if err != nil {
		return fmt.Errorf("create WAL: %w", err)
	}
	defer w.Close()

	// One ConfChangeAddNode entry per member, committed at term 1: what
	// raft.StartNode writes for the peers of a fresh cluster.
	ids := cl.MemberIDs()
	ents := make([]*raftpb.Entry, len(ids))
	voters := make([]uint64, len(ids))
	for i, id := range ids {
		ctx, err := json.Marshal(cl.Member(id))
		if err != nil {
			return fmt.Errorf("marshal member %s: %w", id, err)
		}
		d, err := proto.Marshal(&raftpb.ConfChange{
			Type:    raftpb.ConfChangeAddNode.Enum(),
			NodeId:  new(uint64(id)),
			Context: ctx,
		})
		if err != nil {
			return fmt.Errorf("marshal conf change: %w", err)
		}
		ents[i] = &raftpb.Entry{Type: raftpb.EntryConfChange.Enum(), Term: new(uint64(1)), Index: new(uint64(i + 1)), Data: d}
		voters[i] = uint64(id)
	}
	commit, term := uint64(len(ents)), uint64(1)
	hs := raftpb.HardState{Term: new(term), Vote: new(voters[0]), Commit: new(commit)}
	if err := w.Save(&hs, ents); err != nil {
		return fmt.Errorf("write WAL entries: %w", err)
	}
	cs := &raftpb.ConfState{Voters: voters}
	rs := raftpb.Snapshot{
		Data:     etcdserver.GetMembershipInfoInV2Format(lg, cl),
		Metadata: &raftpb.SnapshotMetadata{Index: new(commit), Term: new(term), ConfState: cs},
	}
	if err := snap.New(lg, filepath.Join(o.DataDir, "member", "snap")).SaveSnap(&rs); err != nil {
		return fmt.Errorf("write raft snapshot: %w", err)
	}
	if err := w.SaveSnapshot(&walpb.Snapshot{Index: new(commit), Term: new(term), ConfState: cs}); err != nil {
		return fmt.Errorf("write WAL snapshot record: %w", err)
	}
	cindex.UpdateConsistentIndexForce(be.BatchTx(), commit, term)
	be.ForceCommit()
	return nil
}

// bumpRevision raises the latest revision by amount with an empty key
// bucket entry and schedules compaction at it, as etcdutl does.
func bumpRevision(lg *zap.Logger, be backend.Backend, amount int64) error {
	tx := be.BatchTx()
	tx.LockOutsideApply()
	defer tx.Unlock()
	var latest mvcc.Revision
	err := tx.UnsafeForEach(schema.Key, func(k, _ []byte) error {
		if rev := mvcc.BytesToRev(k); rev.GreaterThan(latest) {
			latest = rev
		}
		return nil
	})
	if err != nil {
		return err
	}
	lg.Info("bumping revision", zap.Int64("latest-revision", latest.Main), zap.Int64("bump-amount", amount))
	latest.Main += amount
	latest.Sub = 0
	tx.UnsafePut(schema.Key, mvcc.RevToBytes(latest, mvcc.NewRevBytes()), []byte{})
	mvcc.UnsafeSetScheduledCompact(tx, latest.Main)
	return nil
}
