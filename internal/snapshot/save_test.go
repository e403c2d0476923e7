package snapshot

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
)

func TestSaveWritesAVerifiedSnapshotInEachForm(t *testing.T) {
	m := sourceMember(t)
	id := newIdentity(t)
	for _, f := range forms {
		t.Run(f.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "snapshots")
			man, path := save(t, m, dir, "etcd-a", f, id)

			fi, err := os.Stat(path)
			if err != nil {
				t.Fatalf("snapshot file: %v", err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("got mode %v, want 0600", fi.Mode().Perm())
			}
			if di, _ := os.Stat(dir); di.Mode().Perm() != 0o700 {
				t.Errorf("got dir mode %v, want 0700", di.Mode().Perm())
			}
			if got, want := dirNames(t, dir), []string{"etcd-a" + f.ext, "etcd-a.manifest.json"}; !slices.Equal(got, want) {
				t.Errorf("got files %v, want %v (no .part, no plaintext copy)", got, want)
			}

			var onDisk Manifest
			b, err := os.ReadFile(filepath.Join(dir, "etcd-a.manifest.json"))
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(b, &onDisk); err != nil {
				t.Fatal(err)
			}
			if !onDisk.CreatedAt.Equal(man.CreatedAt) {
				t.Errorf("got created-at %v on disk, want %v", onDisk.CreatedAt, man.CreatedAt)
			}
			onDisk.CreatedAt = man.CreatedAt
			if !equalJSON(onDisk, man) {
				t.Errorf("got manifest on disk %+v, want %+v", onDisk, man)
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(data)
			if man.File != filepath.Base(path) || man.SHA256 != hex.EncodeToString(sum[:]) || man.Size != int64(len(data)) {
				t.Errorf("got manifest file %s sha256 %s size %d, want %s %x %d", man.File, man.SHA256, man.Size, filepath.Base(path), sum, len(data))
			}
			wantCompression := map[bool]string{false: "none", true: "zstd"}[f.compress]
			if man.Compression != wantCompression || (len(man.Recipients) > 0) != f.encrypt {
				t.Errorf("got compression %q recipients %v, want %q and encrypted %v", man.Compression, man.Recipients, wantCompression, f.encrypt)
			}
			if f.encrypt && man.Recipients[0] != id.Recipient().String() {
				t.Errorf("got recipient %s, want %s", man.Recipients[0], id.Recipient())
			}
			if man.EtcdVersion == "" || man.MemberID == "" || man.ClusterID == "" || man.Duration == "" {
				t.Errorf("got manifest %+v, want etcd version, member and cluster IDs and duration set", man)
			}

			st, err := Verify(path, []age.Identity{id}, t.TempDir())
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if st.Revision != man.Revision || st.TotalKeys != man.TotalKeys || st.Hash != man.Hash || st.TotalSize != man.DBSize {
				t.Errorf("got status %+v, want the manifest's figures %+v", st, man)
			}
			// 3000 keys, 200 deleted, plus what etcd keeps under other prefixes: none.
			if st.TotalKeys != sourceKeys-sourceDeleted {
				t.Errorf("got %d keys, want %d", st.TotalKeys, sourceKeys-sourceDeleted)
			}

			if !f.encrypt {
				return
			}
			if !bytes.HasPrefix(data, []byte("age-encryption.org/v1\n")) {
				t.Errorf("got file starting %q, want age's header", data[:22])
			}
			if _, err := Open(path, nil); !errors.Is(err, ErrNoIdentity) {
				t.Errorf("Open without identity: got %v, want ErrNoIdentity", err)
			}
			if _, err := Open(path, []age.Identity{newIdentity(t)}); !errors.Is(err, ErrWrongIdentity) {
				t.Errorf("Open with the wrong identity: got %v, want ErrWrongIdentity", err)
			}
		})
	}
}

func equalJSON(a, b any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}

func TestStatusOfAPlainSnapshotEqualsEtcdutlsAndEtcdutlRestoresIt(t *testing.T) {
	m := sourceMember(t)
	_, path := save(t, m, t.TempDir(), "etcd-a", forms[0], nil)

	got, err := Verify(path, nil, t.TempDir())
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	out, err := exec.Command(etcdutlBin, "snapshot", "status", "-w", "json", path).Output()
	if err != nil {
		t.Fatalf("etcdutl snapshot status: %v %s", err, stderrOf(err))
	}
	var want Status
	if err := json.Unmarshal(out, &want); err != nil {
		t.Fatalf("etcdutl's output %q: %v", out, err)
	}
	if got != want {
		t.Errorf("got status %+v, want etcdutl's %+v", got, want)
	}

	dataDir := filepath.Join(t.TempDir(), "restored")
	if out, err := exec.Command(etcdutlBin, "snapshot", "restore", path, "--data-dir", dataDir).CombinedOutput(); err != nil {
		t.Fatalf("etcdutl snapshot restore: %v\n%s", err, out)
	}
}

func stderrOf(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(ee.Stderr)
	}
	return ""
}

func TestSaveFailingMidStreamLeavesOlderSnapshotsUntouched(t *testing.T) {
	m := sourceMember(t)
	dir := t.TempDir()
	_, older := save(t, m, dir, "etcd-older", forms[1], nil)
	before := readAll(t, dir)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	o := Options{Dir: dir, Name: "etcd-newer", Compress: true,
		// Cancel once the first MiB has passed, as a shutdown would.
		wrapStream: func(r io.Reader) io.Reader { return &cancelAfter{r: r, n: 1 << 20, cancel: cancel} }}
	_, err := Save(ctx, m.cli, m.clientURL, o)
	wantErrContaining(t, "Save cancelled mid-stream", err, "stream snapshot")
	if !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want it to wrap context.Canceled", err)
	}
	if after := readAll(t, dir); !equalFiles(after, before) {
		t.Errorf("got files %v after the failed save, want only %v unchanged", keys(after), keys(before))
	}
	if _, err := Verify(older, nil, t.TempDir()); err != nil {
		t.Errorf("the older snapshot no longer verifies: %v", err)
	}
}

// cancelAfter cancels a context once n bytes have been read through it and
// fails the read as the client's stream does. It fails the read itself
// because gRPC may already hold the rest of a small snapshot: the real
// stream could end cleanly after the cancel.
type cancelAfter struct {
	r      io.Reader
	n      int
	cancel context.CancelFunc
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if c.n -= n; c.n <= 0 {
		c.cancel()
		return n, context.Canceled
	}
	return n, err
}

func TestSaveOnAFullDiskLeavesNothingBehind(t *testing.T) {
	m := sourceMember(t)
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount a 1 MiB tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	older := filepath.Join(dir, "etcd-older.db")
	if err := os.WriteFile(older, []byte("an older snapshot"), 0o600); err != nil {
		t.Fatal(err)
	}

	_, err := Save(context.Background(), m.cli, m.clientURL, Options{Dir: dir, Name: "etcd-newer"})
	wantErrContaining(t, "Save onto a full disk", err, "no space left on device")
	if got := dirNames(t, dir); !slices.Equal(got, []string{"etcd-older.db"}) {
		t.Errorf("got files %v, want only etcd-older.db", got)
	}
	if b, _ := os.ReadFile(older); string(b) != "an older snapshot" {
		t.Errorf("got older snapshot %q, want it untouched", b)
	}
}

func TestSaveNeverReplacesASnapshotOfTheSameName(t *testing.T) {
	m := sourceMember(t)
	dir := t.TempDir()
	existing := filepath.Join(dir, "etcd-a.db")
	if err := os.WriteFile(existing, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Save(context.Background(), m.cli, m.clientURL, Options{Dir: dir, Name: "etcd-a"})
	wantErrContaining(t, "Save over an existing name", err, "already exists")
	if b, _ := os.ReadFile(existing); string(b) != "keep me" {
		t.Errorf("got %q, want the existing file untouched", b)
	}
	if got := dirNames(t, dir); !slices.Equal(got, []string{"etcd-a.db"}) {
		t.Errorf("got files %v, want only etcd-a.db", got)
	}
}

func readAll(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	for _, n := range dirNames(t, dir) {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		files[n] = string(b)
	}
	return files
}

func equalFiles(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func keys(m map[string]string) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func TestManifestPathStripsTheExtensionsSaveAppends(t *testing.T) {
	tests := []struct {
		name, path, want string
	}{
		{"plain", "/s/etcd-a.db", "/s/etcd-a.manifest.json"},
		{"zstd", "/s/etcd-a.db.zst", "/s/etcd-a.manifest.json"},
		{"zstd and age", "/s/etcd-a.db.zst.age", "/s/etcd-a.manifest.json"},
		{"age", "/s/etcd-a.db.age", "/s/etcd-a.manifest.json"},
		{"etcdctl's name", "/s/backup", "/s/backup.manifest.json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ManifestPath(tt.path); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func TestTrailerReaderChecksTheTrailerAndAcceptsATrailerlessDB(t *testing.T) {
	db := bytes.Repeat([]byte("page"), 1024) // 4096 bytes: whole pages
	big := make([]byte, 150*4096)            // more than one buffer of the reader
	for i := range big {
		big[i] = byte(i * 7 / 4096)
	}
	sum, bigSum := sha256.Sum256(db), sha256.Sum256(big)
	bad := sum
	bad[0] ^= 1
	tests := []struct {
		name        string
		in          []byte
		wantOut     []byte
		wantTrailer bool
		wantErr     error
	}{
		{"DB with its trailer", append(slices.Clone(db), sum[:]...), db, true, nil},
		{"larger DB with its trailer", append(slices.Clone(big), bigSum[:]...), big, true, nil},
		{"DB without trailer", db, db, false, nil},
		{"larger DB without trailer", big, big, false, nil},
		{"DB with a wrong trailer", append(slices.Clone(db), bad[:]...), nil, false, ErrChecksum},
		{"larger DB with another's trailer", append(slices.Clone(big), sum[:]...), nil, false, ErrChecksum},
		{"a truncated DB", db[:4000], nil, false, ErrNotSnapshot},
	}
	// Read serves the compressed save and restore; WriteTo, the plain save.
	ways := map[string]func(*trailerReader) ([]byte, error){
		"read": func(tr *trailerReader) ([]byte, error) { return io.ReadAll(tr) },
		"write to": func(tr *trailerReader) ([]byte, error) {
			var out bytes.Buffer
			_, err := tr.WriteTo(&out)
			return out.Bytes(), err
		},
	}
	for _, tt := range tests {
		for way, pass := range ways {
			t.Run(tt.name+"/"+way, func(t *testing.T) {
				tr := newTrailerReader(&oneByteAtATimeSometimes{r: bytes.NewReader(tt.in)})
				out, err := pass(tr)
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("got error %v, want %v", err, tt.wantErr)
				}
				if err != nil {
					return
				}
				if !bytes.Equal(out, tt.wantOut) || tr.hasTrailer != tt.wantTrailer {
					t.Errorf("got %d bytes, trailer %v; want %d bytes, trailer %v", len(out), tr.hasTrailer, len(tt.wantOut), tt.wantTrailer)
				}
				if tt.wantTrailer && !bytes.Equal(tr.trailer, tt.in[len(tt.in)-trailerSize:]) {
					t.Errorf("trailer %x, want the input's last %d bytes", tr.trailer, trailerSize)
				}
			})
		}
	}
}

// oneByteAtATimeSometimes returns short reads, to exercise the hold-back.
type oneByteAtATimeSometimes struct {
	r io.Reader
	i int
}

func (o *oneByteAtATimeSometimes) Read(p []byte) (int, error) {
	o.i++
	if o.i%3 == 0 && len(p) > 1 {
		p = p[:1]
	}
	if o.i%5 == 0 && len(p) > 40 {
		p = p[:40]
	}
	return o.r.Read(p)
}

func TestRateLimitedReaderPacesReads(t *testing.T) {
	if testing.Short() {
		t.Skip("timing test")
	}
	ctx := context.Background()
	r := &rateLimitedReader{ctx: ctx, r: strings.NewReader(strings.Repeat("x", 512<<10)), rate: 2 << 20}
	r.start = time.Now()
	if _, err := io.Copy(io.Discard, r); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(r.start); took < 200*time.Millisecond {
		t.Errorf("got 512 KiB at 2 MiB/s in %v, want at least 200ms", took)
	}
}
