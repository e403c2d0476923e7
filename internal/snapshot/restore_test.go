package snapshot

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestRestoreOfEachFormStartsAMemberWithTheKeys(t *testing.T) {
	m := sourceMember(t)
	id := newIdentity(t)
	snapDir := t.TempDir()
	for _, f := range forms {
		t.Run(f.name, func(t *testing.T) {
			_, path := save(t, m, snapDir, "etcd-"+strings.ReplaceAll(f.name, " ", "-"), f, id)
			spec := newSpec(t, filepath.Join(t.TempDir(), "data"))
			if err := Restore(t.Context(), spec.restoreOptions(path, []age.Identity{id})); err != nil {
				t.Fatalf("Restore: %v", err)
			}
			r := startMember(t, spec)
			defer r.stop()
			checkKeys(t, r.cli)
		})
	}
}

func TestRestoreOfASnapshotSavedByEtcdctlStartsAMemberWithTheKeys(t *testing.T) {
	m := sourceMember(t)
	path := filepath.Join(t.TempDir(), "backup.db")
	if out, err := exec.Command(etcdctlBin, "--endpoints", m.clientURL, "snapshot", "save", path).CombinedOutput(); err != nil {
		t.Fatalf("etcdctl snapshot save: %v\n%s", err, out)
	}
	st, err := Verify(path, nil, t.TempDir())
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if st.TotalKeys != sourceKeys-sourceDeleted {
		t.Errorf("got %d keys, want %d", st.TotalKeys, sourceKeys-sourceDeleted)
	}
	spec := newSpec(t, filepath.Join(t.TempDir(), "data"))
	if err := Restore(t.Context(), spec.restoreOptions(path, nil)); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	r := startMember(t, spec)
	defer r.stop()
	checkKeys(t, r.cli)
}

func TestRestoreWithBumpRevisionAndMarkCompactedRaisesTheRevision(t *testing.T) {
	m := sourceMember(t)
	man, path := save(t, m, t.TempDir(), "etcd-a", forms[1], nil)
	spec := newSpec(t, filepath.Join(t.TempDir(), "data"))
	o := spec.restoreOptions(path, nil)
	o.BumpRevision, o.MarkCompacted = 1_000_000, true
	if err := Restore(t.Context(), o); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	r := startMember(t, spec)
	defer r.stop()
	ctx := context.Background()
	resp, err := r.cli.Get(ctx, key(sourceKeys-1))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := resp.Header.Revision, man.Revision+1_000_000; got < want {
		t.Errorf("got revision %d after restore, want at least %d", got, want)
	}
	// The bumped revision is compacted: reading an old revision says so.
	_, err = r.cli.Get(ctx, key(sourceKeys-1), clientv3.WithRev(man.Revision))
	if !errors.Is(err, rpctypes.ErrCompacted) {
		t.Errorf("get at the snapshot's revision: got %v, want ErrCompacted", err)
	}
}

func TestRestoreRequiresBumpRevisionAndMarkCompactedTogether(t *testing.T) {
	tests := []struct {
		name    string
		bump    uint64
		compact bool
	}{
		{"bump without mark", 10, false},
		{"mark without bump", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := newSpec(t, filepath.Join(t.TempDir(), "data"))
			o := spec.restoreOptions("/nonexistent", nil)
			o.BumpRevision, o.MarkCompacted = tt.bump, tt.compact
			wantErrContaining(t, "Restore", Restore(t.Context(), o), "each requires the other")
		})
	}
}

func TestRestoreRefusesANonEmptyDataDirAndLeavesItAlone(t *testing.T) {
	m := sourceMember(t)
	_, path := save(t, m, t.TempDir(), "etcd-a", forms[0], nil)
	spec := newSpec(t, t.TempDir())
	mine := filepath.Join(spec.dir, "precious")
	if err := os.WriteFile(mine, []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	wantErrContaining(t, "Restore into a non-empty dir", Restore(t.Context(), spec.restoreOptions(path, nil)), "is not empty")
	if got := dirNames(t, spec.dir); !slices.Equal(got, []string{"precious"}) {
		t.Errorf("got %v in the data dir, want only precious", got)
	}
}

func TestRestoreRefusesWhenTheDiskIsTooSmall(t *testing.T) {
	m := sourceMember(t)
	_, path := save(t, m, t.TempDir(), "etcd-a", forms[1], nil)
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount a 1 MiB tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	spec := newSpec(t, filepath.Join(dir, "data"))
	wantErrContaining(t, "Restore onto a small disk", Restore(t.Context(), spec.restoreOptions(path, nil)), "not enough free space")
	if got := dirNames(t, dir); len(got) != 0 {
		t.Errorf("got %v written, want nothing", got)
	}
}

// TestBadInputIsRefusedWithAClearErrorAndWritesNothing feeds Open, Verify and
// Restore damaged and foreign files. A DB without etcd's sha256 trailer is
// refused by Verify and Restore: nothing then tells it from a damaged one
// (Open reads it, as it reads a copy of member/snap/db).
func TestBadInputIsRefusedWithAClearErrorAndWritesNothing(t *testing.T) {
	m := sourceMember(t)
	id := newIdentity(t)
	dir := t.TempDir()
	_, plain := save(t, m, dir, "plain", forms[0], nil)
	_, zst := save(t, m, dir, "zstd", forms[1], nil)
	_, enc := save(t, m, dir, "enc", forms[2], id)
	bad := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(bad, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	read := func(p string) []byte {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	flip := func(b []byte) []byte {
		b = slices.Clone(b)
		b[len(b)/2] ^= 0x40
		return b
	}
	random := make([]byte, 64<<10)
	rand.Read(random)
	p, z, e := read(plain), read(zst), read(enc)
	ids := []age.Identity{id}

	tests := []struct {
		name     string
		path     string
		ids      []age.Identity
		wantOpen string // "" when Open reads it without complaint
		want     string // from Verify and Restore
	}{
		{"a truncated plain snapshot", write("trunc.db", p[:len(p)/2+100]), nil, "truncated?", "truncated?"},
		{"a truncated compressed snapshot", write("trunc.db.zst", z[:len(z)/2]), nil, "unexpected EOF", "unexpected EOF"},
		{"a truncated encrypted snapshot", write("trunc.db.zst.age", e[:len(e)/2]), ids, "decrypt age", "decrypt age"},
		{"a flipped byte in a plain snapshot", write("flip.db", flip(p)), nil, "sha256 trailer does not match", "sha256 trailer does not match"},
		{"a flipped byte in a compressed snapshot", write("flip.db.zst", flip(z)), nil, "decompress zstd", "decompress zstd"},
		{"a flipped byte in an encrypted snapshot", write("flip.db.zst.age", flip(e)), ids, "decrypt", "decrypt"},
		{"a snapshot without its sha256 trailer", write("notrailer.db", p[:len(p)-32]), nil, "", "no sha256 trailer"},
		{"an encrypted snapshot and the wrong identity", enc, []age.Identity{newIdentity(t)}, "none of the given identities", "none of the given identities"},
		{"an encrypted snapshot and no identity", enc, nil, "no identity was given", "no identity was given"},
		{"random bytes", write("random", random), nil, "not an etcd snapshot", "not an etcd snapshot"},
		{"a text file", write("notes.txt", []byte("etcd snapshot, honest\n")), nil, "not an etcd snapshot", "not an etcd snapshot"},
		{"an empty file", write("empty.db", nil), nil, "not an etcd snapshot", "not an etcd snapshot"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := readThrough(tt.path, tt.ids)
			if tt.wantOpen == "" {
				if err != nil {
					t.Errorf("Open and read: %v", err)
				}
			} else {
				wantErrContaining(t, "Open and read", err, tt.wantOpen)
			}

			tmp := t.TempDir()
			_, err = Verify(tt.path, tt.ids, tmp)
			wantErrContaining(t, "Verify", err, tt.want)
			if got := dirNames(t, tmp); len(got) != 0 {
				t.Errorf("Verify left %v in its temp dir", got)
			}

			spec := newSpec(t, filepath.Join(t.TempDir(), "data"))
			wantErrContaining(t, "Restore", Restore(t.Context(), spec.restoreOptions(tt.path, tt.ids)), tt.want)
			if _, err := os.Stat(spec.dir); !os.IsNotExist(err) {
				t.Errorf("Restore left %s behind (%v): %v", spec.dir, err, dirNames(t, spec.dir))
			}
		})
	}
}

func readThrough(path string, ids []age.Identity) error {
	r, err := Open(path, ids)
	if err != nil {
		return err
	}
	defer r.Close()
	_, err = io.Copy(io.Discard, r)
	return err
}

func TestRestoreWithSkipHashCheckAcceptsACopyOfTheMembersDB(t *testing.T) {
	m := sourceMember(t)
	_, path := save(t, m, t.TempDir(), "etcd-a", forms[0], nil)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	copyOfDB := filepath.Join(t.TempDir(), "db")
	if err := os.WriteFile(copyOfDB, b[:len(b)-32], 0o600); err != nil {
		t.Fatal(err)
	}
	spec := newSpec(t, filepath.Join(t.TempDir(), "data"))
	o := spec.restoreOptions(copyOfDB, nil)
	o.SkipHashCheck = true
	start := time.Now()
	if err := Restore(t.Context(), o); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	t.Logf("restored in %v", time.Since(start))
	for _, p := range []string{"member/snap/db", "member/wal"} {
		if _, err := os.Stat(filepath.Join(spec.dir, p)); err != nil {
			t.Errorf("restored data dir: %v", err)
		}
	}
}

func TestRestoreKeepsTheSupervisorsOwnFilesInTheDataDir(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "etcdvisor.lock"), []byte("1\n"), 0o600)
	err := Restore(t.Context(), RestoreOptions{SnapshotPath: filepath.Join(dir, "missing.db"), DataDir: dir, Keep: []string{"etcdvisor.lock"}})
	if err == nil || strings.Contains(err.Error(), "is not empty") {
		t.Fatalf("got %v, want the restore to get past the data dir check (and fail on the missing file)", err)
	}
	os.WriteFile(filepath.Join(dir, "stranger"), []byte("x"), 0o600)
	err = Restore(t.Context(), RestoreOptions{SnapshotPath: filepath.Join(dir, "missing.db"), DataDir: dir, Keep: []string{"etcdvisor.lock"}})
	if err == nil || !strings.Contains(err.Error(), "is not empty (it holds stranger)") {
		t.Fatalf("got %v, want a refusal naming the stranger", err)
	}
}

// tree is every path under root with its mode and, for a file, the sha256
// of its content: what "left as it was" compares.
func tree(t *testing.T, root string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		v := info.Mode().String()
		if info.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			v += fmt.Sprintf(" %x", sha256.Sum256(b))
		}
		rel, _ := filepath.Rel(root, p)
		m[rel] = v
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// restoreSetup is a place to restore into, as it is before the restore,
// and a snapshot to restore.
type restoreSetup struct {
	name string
	// make lays out the test's dir root and returns the options to restore
	// with; the snapshot may sit inside the data dir, in a Keep entry.
	make func(t *testing.T, m *member, root string) RestoreOptions
}

var restoreSetups = []restoreSetup{
	{"a missing data dir", func(t *testing.T, m *member, root string) RestoreOptions {
		_, path := save(t, m, filepath.Join(root, "snaps"), "etcd-a", forms[0], nil)
		return newSpec(t, filepath.Join(root, "data")).restoreOptions(path, nil)
	}},
	{"a missing data dir under missing dirs, and a WAL dir elsewhere under missing dirs", func(t *testing.T, m *member, root string) RestoreOptions {
		_, path := save(t, m, filepath.Join(root, "snaps"), "etcd-a", forms[0], nil)
		o := newSpec(t, filepath.Join(root, "a", "b", "data")).restoreOptions(path, nil)
		o.WalDir = filepath.Join(root, "wal", "b", "member-wal")
		return o
	}},
	{"a data dir holding the supervisor's lock file and snapshot dir, with the snapshot in it", func(t *testing.T, m *member, root string) RestoreOptions {
		data := filepath.Join(root, "data")
		_, path := save(t, m, filepath.Join(data, "snapshots"), "etcd-a", forms[0], nil)
		if err := os.WriteFile(filepath.Join(data, "etcdvisor.lock"), []byte("4242\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		o := newSpec(t, data).restoreOptions(path, nil)
		o.Keep = []string{"etcdvisor.lock", "etcdvisor.sock", "snapshots"}
		return o
	}},
	{"an empty data dir and a missing WAL dir in an existing dir", func(t *testing.T, m *member, root string) RestoreOptions {
		_, path := save(t, m, filepath.Join(root, "snaps"), "etcd-a", forms[0], nil)
		for _, d := range []string{"data", "wal"} {
			if err := os.Mkdir(filepath.Join(root, d), 0o700); err != nil {
				t.Fatal(err)
			}
		}
		o := newSpec(t, filepath.Join(root, "data")).restoreOptions(path, nil)
		o.WalDir = filepath.Join(root, "wal", "member-wal")
		return o
	}},
}

func TestRestoreCancelledMidCopyLeavesEverythingAsItWas(t *testing.T) {
	m := sourceMember(t)
	for _, s := range restoreSetups {
		t.Run(s.name, func(t *testing.T) {
			root := t.TempDir()
			o := s.make(t, m, root)
			before := tree(t, root)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			var first [2]int64
			o.Progress = func(done, total int64) {
				if first == [2]int64{} {
					first = [2]int64{done, total}
				}
				cancel() // after the first chunk
			}
			err := Restore(ctx, o)
			if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "copy DB into place") {
				t.Fatalf("got %v, want an error wrapping context.Canceled from the copy", err)
			}
			if done, total := first[0], first[1]; done <= 0 || done >= total {
				t.Fatalf("the first progress was %d of %d bytes: want the cancel mid-copy", done, total)
			}
			if after := tree(t, root); !reflect.DeepEqual(after, before) {
				t.Errorf("the restore changed its dir:\nbefore %v\nafter  %v", before, after)
			}
		})
	}
}

func TestRestoreCancelledBetweenStepsLeavesEverythingAsItWas(t *testing.T) {
	m := sourceMember(t)
	s := restoreSetups[2] // a data dir that holds the snapshot
	root := t.TempDir()
	o := s.make(t, m, root)
	before := tree(t, root)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	// The last chunk copied reports done == total; so does the call made
	// once the DB is in place. At that one, the next step is not started.
	var ends int
	o.Progress = func(done, total int64) {
		if done == total {
			if ends++; ends == 2 {
				cancel()
			}
		}
	}
	err := Restore(ctx, o)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "stopped before") {
		t.Fatalf("got %v, want an error wrapping context.Canceled saying which step did not start", err)
	}
	if after := tree(t, root); !reflect.DeepEqual(after, before) {
		t.Errorf("the restore changed its dir:\nbefore %v\nafter  %v", before, after)
	}
}

func TestRestoreOfASnapshotWithABadTrailerLeavesEverythingAsItWas(t *testing.T) {
	m := sourceMember(t)
	for _, s := range restoreSetups {
		t.Run(s.name, func(t *testing.T) {
			root := t.TempDir()
			o := s.make(t, m, root)
			// The last byte of the trailer: wrong only when the whole DB
			// is written.
			b, err := os.ReadFile(o.SnapshotPath)
			if err != nil {
				t.Fatal(err)
			}
			b[len(b)-1] ^= 0x01
			if err := os.WriteFile(o.SnapshotPath, b, 0o600); err != nil {
				t.Fatal(err)
			}
			before := tree(t, root)
			var done, total int64
			o.Progress = func(d, tot int64) { done, total = d, tot }
			err = Restore(t.Context(), o)
			if !errors.Is(err, ErrChecksum) {
				t.Fatalf("got %v, want ErrChecksum", err)
			}
			if done != total {
				t.Errorf("progress stopped at %d of %d bytes: want the failure at the end of the stream", done, total)
			}
			if after := tree(t, root); !reflect.DeepEqual(after, before) {
				t.Errorf("the restore changed its dir:\nbefore %v\nafter  %v", before, after)
			}
		})
	}
}

func TestRestoreReportsProgressEndingWithDoneEqualToTotal(t *testing.T) {
	m := sourceMember(t)
	dir := t.TempDir()
	man, plain := save(t, m, dir, "plain", forms[0], nil)
	_, zst := save(t, m, dir, "zstd", forms[1], nil)
	// Without its manifest a compressed snapshot's DB size is unknown.
	bare := filepath.Join(t.TempDir(), "zstd.db.zst")
	b, err := os.ReadFile(zst)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bare, b, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		path      string
		wantTotal int64 // while copying
	}{
		{"a plain snapshot", plain, man.DBSize},
		{"a compressed snapshot with its manifest", zst, man.DBSize},
		{"a compressed snapshot without manifest", bare, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := newSpec(t, filepath.Join(t.TempDir(), "data")).restoreOptions(tc.path, nil)
			var calls [][2]int64
			o.Progress = func(done, total int64) { calls = append(calls, [2]int64{done, total}) }
			if err := Restore(t.Context(), o); err != nil {
				t.Fatalf("Restore: %v", err)
			}
			if len(calls) < 3 {
				t.Fatalf("got %d progress calls, want one per chunk and a last one", len(calls))
			}
			last := calls[len(calls)-1]
			if last != [2]int64{man.DBSize, man.DBSize} {
				t.Errorf("got a last call of %d of %d, want %d of %d", last[0], last[1], man.DBSize, man.DBSize)
			}
			for i, c := range calls[:len(calls)-1] {
				if c[1] != tc.wantTotal || c[0] <= 0 || (i > 0 && c[0] <= calls[i-1][0]) {
					t.Fatalf("call %d: got %d of %d after %v, want more done than before, of %d", i, c[0], c[1], calls[max(i-1, 0)], tc.wantTotal)
				}
			}
		})
	}
}

func TestRestoreRefusesToWriteWhereItCouldRemoveSomeoneElsesFiles(t *testing.T) {
	for _, tc := range []struct {
		name string
		make func(t *testing.T, root string) RestoreOptions
		want string
	}{
		{"a member dir, even when Keep names it", func(t *testing.T, root string) RestoreOptions {
			os.MkdirAll(filepath.Join(root, "data", "member"), 0o700)
			return RestoreOptions{SnapshotPath: "/nonexistent", DataDir: filepath.Join(root, "data"), Keep: []string{"member"}}
		}, "is not empty (it holds member)"},
		{"the WAL dir's .tmp, which creating the WAL would remove", func(t *testing.T, root string) RestoreOptions {
			os.MkdirAll(filepath.Join(root, "wal.tmp"), 0o700)
			return RestoreOptions{SnapshotPath: "/nonexistent", DataDir: filepath.Join(root, "data"), WalDir: filepath.Join(root, "wal")}
		}, "wal.tmp\" exists"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			o := tc.make(t, root)
			before := tree(t, root)
			wantErrContaining(t, "Restore", Restore(t.Context(), o), tc.want)
			if after := tree(t, root); !reflect.DeepEqual(after, before) {
				t.Errorf("the restore changed its dir:\nbefore %v\nafter  %v", before, after)
			}
		})
	}
}
