// Package snapshot saves, verifies, inspects and restores etcd snapshots:
// streamed, checked, compressed and encrypted as they pass.
//
// A snapshot file is etcd's bbolt DB followed by etcd's 32-byte sha256
// trailer (exactly what the Maintenance.Snapshot stream sends and what
// `etcdctl snapshot save` writes), optionally compressed with zstd and then
// optionally encrypted with age. Readers detect the form by magic bytes.
package snapshot

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"filippo.io/age"
	"github.com/dustin/go-humanize"
	"github.com/klauspost/compress/zstd"
	"go.etcd.io/etcd/client/pkg/v3/types"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Options for Save.
type Options struct {
	// Dir is where snapshots live; it is created with mode 0700 if missing.
	Dir string
	// Name is the file base name, e.g. "etcd-a-20261125T190000Z"; Save
	// appends the extensions.
	Name string
	// Compress compresses with zstd as the stream passes.
	Compress bool
	// Recipients encrypt the snapshot with age; empty means no encryption.
	// The node needs only recipients: it can write backups it cannot read.
	Recipients []age.Recipient
	// RateLimit caps the bytes per second read from etcd, so a snapshot does
	// not starve the member's own fsyncs; 0 is unlimited.
	RateLimit int64
	// Logger receives one summary line per snapshot; nil logs nothing.
	Logger *zap.Logger

	// wrapStream, if set, wraps the stream from etcd (tests inject failures).
	wrapStream func(io.Reader) io.Reader
}

// Manifest is written beside every snapshot as NAME.manifest.json.
type Manifest struct {
	// File is the snapshot's base name, extensions included.
	File string `json:"file"`
	// SHA256 is the hex sha256 of the file as stored (`sha256sum FILE`).
	SHA256 string `json:"sha256"`
	// Size is the file's size on disk.
	Size int64 `json:"size"`
	// DBSize is the size of the plaintext bbolt DB, trailer excluded.
	DBSize int64 `json:"db-size"`
	// Revision, TotalKeys and Hash are what `etcdutl snapshot status` prints.
	Revision  int64  `json:"revision"`
	TotalKeys int    `json:"total-keys"`
	Hash      uint32 `json:"hash"`
	// EtcdVersion is the version of the member that sent the snapshot.
	EtcdVersion string `json:"etcd-version"`
	ClusterID   string `json:"cluster-id"`
	MemberID    string `json:"member-id"`
	// Compression is "zstd" or "none".
	Compression string `json:"compression"`
	// Recipients are the age recipients the file is encrypted to.
	Recipients []string  `json:"recipients,omitempty"`
	CreatedAt  time.Time `json:"created-at"`
	// Duration is how long Save took, as time.Duration prints it.
	Duration string `json:"duration"`
}

// ManifestPath returns where the manifest of snapshot file path lives:
// NAME.manifest.json beside it, NAME being the file name without the
// extensions Save appends.
func ManifestPath(path string) string {
	dir, base := filepath.Split(path)
	for _, ext := range []string{".age", ".zst", ".db"} {
		base = strings.TrimSuffix(base, ext)
	}
	return filepath.Join(dir, base+".manifest.json")
}

// ReadManifest reads the manifest beside snapshot file path and checks that
// it describes that file.
func ReadManifest(path string) (Manifest, error) {
	var m Manifest
	b, err := os.ReadFile(ManifestPath(path))
	if err != nil {
		return m, fmt.Errorf("read manifest: %w", err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("read manifest %s: %w", ManifestPath(path), err)
	}
	if m.File != filepath.Base(path) {
		return m, fmt.Errorf("manifest %s describes %q, not %q", ManifestPath(path), m.File, filepath.Base(path))
	}
	return m, nil
}

// Save streams a snapshot of one member from cli into o.Dir, never holding
// the DB in memory. If cli has several endpoints the snapshot is requested
// from endpoint; otherwise from cli's one member (endpoint then only names
// it in the log).
//
// As the stream passes, Save hashes the plaintext and checks etcd's sha256
// trailer, tees the plaintext into a temporary file in o.Dir, and
// compresses, encrypts and writes it to NAME.part (mode 0600). The tee is
// there because the node may hold only age recipients, not identities: it
// cannot read its own encrypted file back; the copy is no new exposure, as
// the member's data dir on the same node holds the same plaintext, and it is
// punched out block by block as the check reads it (see growingFile) and
// removed before Save returns. When the stream ends Save fsyncs
// the .part, opens the plaintext with bbolt, runs the consistency check and
// reads revision, keys and hash; only then does it rename NAME.part to
// NAME.db[.zst][.age], fsync the directory and write NAME.manifest.json
// atomically. On any failure it removes what it wrote and returns an error
// that names the step; older snapshots are never touched and an existing
// snapshot of the same name is never replaced.
func Save(ctx context.Context, cli *clientv3.Client, endpoint string, o Options) (Manifest, error) {
	start := time.Now()
	lg := o.Logger
	if lg == nil {
		lg = zap.NewNop()
	}
	if o.Name == "" || strings.ContainsRune(o.Name, filepath.Separator) {
		return Manifest{}, fmt.Errorf("snapshot: name %q must be a non-empty file base name", o.Name)
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return Manifest{}, fmt.Errorf("snapshot: create dir: %w", err)
	}
	s := &saver{o: o, final: filepath.Join(o.Dir, o.Name+extension(o))}
	m, err := s.run(ctx, cli, endpoint)
	if err != nil {
		s.cleanup()
		return Manifest{}, fmt.Errorf("snapshot %s: %w", o.Name, err)
	}
	m.CreatedAt = start.UTC()
	m.Duration = time.Since(start).Round(time.Millisecond).String()
	if err := writeManifest(ManifestPath(s.final), m); err != nil {
		// A snapshot without its manifest would look unverified to
		// retention; the pair goes or stays together.
		os.Remove(s.final)
		syncDir(o.Dir)
		return Manifest{}, fmt.Errorf("snapshot %s: write manifest: %w", o.Name, err)
	}
	lg.Info("saved snapshot",
		zap.String("path", s.final),
		zap.String("endpoint", endpoint),
		zap.Int64("size", m.Size),
		zap.Int64("db-size", m.DBSize),
		zap.String("db-size-human", humanize.IBytes(uint64(m.DBSize))),
		zap.Int64("revision", m.Revision),
		zap.Int("total-keys", m.TotalKeys),
		zap.String("compression", m.Compression),
		zap.Bool("encrypted", len(m.Recipients) > 0),
		zap.Duration("took", time.Since(start)),
	)
	return m, nil
}

func extension(o Options) string {
	ext := ".db"
	if o.Compress {
		ext += ".zst"
	}
	if len(o.Recipients) > 0 {
		ext += ".age"
	}
	return ext
}

// saver holds the files one Save writes, so a failure can remove them.
type saver struct {
	o         Options
	final     string
	part      string // set once created: ours to remove
	plain     string // the plaintext tee, always removed
	partFile  *os.File
	plainFile *os.File
	plainCopy *asyncWriter // writes plainFile; closed before it
}

func (s *saver) cleanup() {
	if s.plainCopy != nil {
		s.plainCopy.Close()
	}
	for _, f := range []*os.File{s.partFile, s.plainFile} {
		if f != nil {
			f.Close()
		}
	}
	for _, p := range []string{s.part, s.plain} {
		if p != "" {
			os.Remove(p)
		}
	}
}

func (s *saver) run(ctx context.Context, cli *clientv3.Client, endpoint string) (Manifest, error) {
	o := s.o
	if _, err := os.Lstat(s.final); err == nil {
		return Manifest{}, fmt.Errorf("%s already exists", s.final)
	}
	part := filepath.Join(o.Dir, o.Name+".part")
	// O_EXCL: two saves of one name must not write into each other's file.
	f, err := os.OpenFile(part, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return Manifest{}, fmt.Errorf("create .part (remove a stale one if no save is running): %w", err)
	}
	s.part, s.partFile = part, f
	// A plain snapshot is its own plaintext: bbolt checks the .part itself,
	// and the DB is written once, as etcdctl writes it. Otherwise bbolt
	// needs a plaintext copy; it lives in Dir, not in /tmp, which is often
	// a tmpfs: a DB there would take RAM.
	plainForm := !o.Compress && len(o.Recipients) == 0
	var tmp *os.File
	if !plainForm {
		tmp, err = os.CreateTemp(o.Dir, "."+o.Name+".plain-*")
		if err != nil {
			return Manifest{}, fmt.Errorf("create plaintext copy for verification: %w", err)
		}
		s.plain, s.plainFile = tmp.Name(), tmp
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The snapshot stream's header does not always carry the IDs, and its
	// version is the storage version; Status names the member and its
	// binary's version.
	status, err := cli.Status(ctx, endpoint)
	if err != nil {
		return Manifest{}, fmt.Errorf("status of %s: %w", endpoint, err)
	}
	resp, err := snapshotStream(ctx, cli, endpoint)
	if err != nil {
		return Manifest{}, fmt.Errorf("request snapshot from %s: %w", endpoint, err)
	}
	defer resp.Snapshot.Close()

	// The file writers: part <- buffer <- size and sha256 <- age <- zstd.
	// A plain file is the stream itself: its sha256 continues the trailer
	// check's hash rather than hashing the same bytes twice.
	// The plaintext is checked as it is written (see growingFile): the
	// .part itself for a plain save, else the plaintext copy.
	checkedPath := part
	if tmp != nil {
		checkedPath = tmp.Name()
	}
	grow, err := openGrowing(checkedPath, tmp != nil)
	if err != nil {
		return Manifest{}, fmt.Errorf("open %s to check it: %w", filepath.Base(checkedPath), err)
	}
	var walk struct {
		st  Status
		err error
	}
	var walking sync.WaitGroup
	walking.Go(func() { walk.st, walk.err = growingStatus(grow) })
	defer func() {
		grow.finish() // on failure: the walk ends with what there is
		walking.Wait()
		grow.Close()
	}()
	wb := &writebackFile{f: f}
	defer wb.stop() // before cleanup closes f
	var partW io.Writer = wb
	if plainForm {
		partW = grow.writer(partW)
	}
	// A plain save writes the stream's large pieces as they come; the
	// encoders' small writes are gathered first.
	var fileW io.Writer = &stepWriter{w: partW, step: "write .part"}
	flushFile := func() error { return nil }
	var fileSum hash.Hash
	if !plainForm {
		bw := bufio.NewWriterSize(fileW, 1<<20)
		fileSum = sha256.New()
		fileW, flushFile = io.MultiWriter(bw, fileSum), bw.Flush
	}
	counted := &countWriter{w: fileW}
	var w io.Writer = counted
	var closers []io.Closer // innermost first
	defer func() {
		// On failure: stop the encoder's goroutines; the output is removed.
		for _, c := range closers {
			c.Close()
		}
	}()
	m := Manifest{File: filepath.Base(s.final), Compression: "none", EtcdVersion: resp.Version}
	if resp.Header != nil && resp.Header.MemberId != 0 {
		m.ClusterID = types.ID(resp.Header.ClusterId).String()
		m.MemberID = types.ID(resp.Header.MemberId).String()
	}
	if len(o.Recipients) > 0 {
		aw, err := age.Encrypt(w, o.Recipients...)
		if err != nil {
			return Manifest{}, fmt.Errorf("start age encryption: %w", err)
		}
		w = aw
		closers = append(closers, aw)
		for _, r := range o.Recipients {
			m.Recipients = append(m.Recipients, recipientString(r))
		}
	}
	if o.Compress {
		// A 1 MiB window and one goroutine keep the encoder to a few MiB
		// whatever the DB size. The window costs nothing in ratio here
		// (0.487 vs 0.486 with 8 MiB on the bench's data), and a large
		// window with WithLowerEncoderMem moves the whole window on every
		// block: 4.5x slower.
		zw, err := zstd.NewWriter(w,
			zstd.WithWindowSize(1<<20),
			zstd.WithEncoderConcurrency(1),
			zstd.WithEncoderLevel(zstd.SpeedDefault))
		if err != nil {
			return Manifest{}, fmt.Errorf("start zstd encoder: %w", err)
		}
		w = zw
		closers = append(closers, zw)
		m.Compression = "zstd"
	}
	var plainCopy *asyncWriter
	if tmp != nil {
		plainCopy = newAsyncWriter(&stepWriter{w: grow.writer(tmp), step: "write plaintext copy"})
		s.plainCopy = plainCopy
	}

	if m.MemberID == "" && status.Header != nil {
		m.ClusterID = types.ID(status.Header.ClusterId).String()
		m.MemberID = types.ID(status.Header.MemberId).String()
	}
	if status.Version != "" {
		m.EtcdVersion = status.Version
	}

	var src io.Reader = resp.Snapshot
	if o.wrapStream != nil {
		src = o.wrapStream(src)
	}
	if o.RateLimit > 0 {
		src = &rateLimitedReader{ctx: ctx, r: src, rate: o.RateLimit, start: time.Now()}
	}
	// Two goroutines share the work. A plain save only hashes and writes:
	// the stream is received on the prefetch goroutine, hashed and written
	// here. A compressed or encrypted save has more to do here, so the
	// trailer's sha256 moves to the receiving goroutine.
	var tr *trailerReader
	var in io.Reader
	if plainForm {
		pf := newPrefetchReader(ctx, src)
		defer pf.Close()
		tr = newTrailerReader(pf)
		in = tr
	} else {
		tr = newTrailerReader(src)
		pf := newPrefetchReader(ctx, tr)
		defer pf.Close()
		in = pf
	}
	dst := w
	if plainCopy != nil {
		dst = io.MultiWriter(plainCopy, w)
	}
	if _, err := io.CopyBuffer(dst, in, make([]byte, readBufSize)); err != nil {
		if errors.Is(err, ErrChecksum) || errors.Is(err, ErrNotSnapshot) {
			return Manifest{}, fmt.Errorf("check sha256 trailer: %w", err)
		}
		return Manifest{}, fmt.Errorf("stream snapshot: %w", err) // a read error, or a write error naming its file
	}
	if !tr.hasTrailer {
		return Manifest{}, fmt.Errorf("check sha256 trailer: %w: etcd always sends one", ErrNoChecksum)
	}
	// The file keeps etcd's trailer, so etcdutl and etcdctl can use it once
	// decrypted and decompressed; only the bbolt copy goes without.
	if _, err := w.Write(tr.trailer); err != nil {
		return Manifest{}, fmt.Errorf("write sha256 trailer: %w", err)
	}
	for len(closers) > 0 {
		c := closers[len(closers)-1]
		closers = closers[:len(closers)-1]
		if err := c.Close(); err != nil {
			return Manifest{}, fmt.Errorf("finish compression/encryption: %w", err)
		}
	}
	if err := flushFile(); err != nil {
		return Manifest{}, fmt.Errorf("write .part: %w", err)
	}
	wb.stop()
	// The fsync waits on the disk and the rest of the check on the CPU:
	// run them side by side.
	synced := make(chan error, 1)
	go func() { synced <- f.Sync() }()
	var copyErr error
	if plainCopy != nil {
		copyErr = plainCopy.Close()
		s.plainCopy = nil
		if copyErr == nil {
			// No fsync: the copy is read back through the page cache and removed.
			copyErr = tmp.Close()
			s.plainFile = nil
		}
	}
	grow.finish()
	walking.Wait()
	st, err := walk.st, walk.err
	if err == nil && copyErr == nil {
		// bbolt reads past etcd's trailer as it reads past any tail.
		err = boltOpens(checkedPath)
	}
	if err := <-synced; err != nil {
		return Manifest{}, fmt.Errorf("fsync .part: %w", err)
	}
	if err := f.Close(); err != nil {
		return Manifest{}, fmt.Errorf("close .part: %w", err)
	}
	s.partFile = nil
	if copyErr != nil {
		return Manifest{}, fmt.Errorf("write plaintext copy: %w", copyErr)
	}
	if err != nil {
		return Manifest{}, fmt.Errorf("verify DB: %w", err)
	}
	if s.plain != "" {
		os.Remove(s.plain)
		s.plain = ""
	}

	// Link, not rename: rename would silently replace a snapshot of the
	// same name that appeared while this one streamed.
	if err := os.Link(s.part, s.final); err != nil {
		return Manifest{}, fmt.Errorf("rename .part to %s: %w", filepath.Base(s.final), err)
	}
	os.Remove(s.part)
	s.part = ""
	if err := syncDir(o.Dir); err != nil {
		os.Remove(s.final)
		return Manifest{}, fmt.Errorf("fsync dir: %w", err)
	}

	if fileSum == nil {
		tr.h.Write(tr.trailer)
		fileSum = tr.h
	}
	m.SHA256 = hex.EncodeToString(fileSum.Sum(nil))
	m.Size = counted.n
	m.DBSize = tr.n
	m.Revision = st.Revision
	m.TotalKeys = st.TotalKeys
	m.Hash = st.Hash
	return m, nil
}

// snapshotStream opens the snapshot stream from the one member the caller
// means. Maintenance.Snapshot goes wherever the balancer sends it, so a
// client with several endpoints is pinned to endpoint by dialing it.
func snapshotStream(ctx context.Context, cli *clientv3.Client, endpoint string) (*clientv3.SnapshotResponse, error) {
	if len(cli.Endpoints()) <= 1 || endpoint == "" {
		if len(cli.Endpoints()) > 1 {
			return nil, fmt.Errorf("client has endpoints %v: name the one member to snapshot", cli.Endpoints())
		}
		return cli.SnapshotWithVersion(ctx)
	}
	conn, err := cli.Dial(endpoint)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	m := clientv3.NewMaintenanceFromMaintenanceClient(clientv3.RetryMaintenanceClient(cli, conn), cli)
	resp, err := m.SnapshotWithVersion(ctx)
	if err != nil {
		conn.Close()
		return nil, err
	}
	resp.Snapshot = &closeBoth{ReadCloser: resp.Snapshot, conn: conn}
	return resp, nil
}

type closeBoth struct {
	io.ReadCloser
	conn io.Closer
}

func (c *closeBoth) Close() error {
	err := c.ReadCloser.Close()
	c.conn.Close()
	return err
}

func recipientString(r age.Recipient) string {
	if s, ok := r.(fmt.Stringer); ok {
		return s.String()
	}
	return fmt.Sprintf("%T", r)
}

// stepWriter names the file a write error comes from: a full disk while the
// stream passes is reported as that, not as a stream failure.
type stepWriter struct {
	w    io.Writer
	step string
}

func (s *stepWriter) Write(p []byte) (int, error) {
	n, err := s.w.Write(p)
	if err != nil {
		err = fmt.Errorf("%s: %w", s.step, err)
	}
	return n, err
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// rateLimitedReader paces reads to rate bytes per second on average. Reads
// are cut to a tenth of a second's worth, so bursts stay small.
type rateLimitedReader struct {
	ctx   context.Context
	r     io.Reader
	rate  int64
	start time.Time
	n     int64
}

func (l *rateLimitedReader) Read(p []byte) (int, error) {
	if max := l.rate / 10; max > 0 && int64(len(p)) > max {
		p = p[:max]
	}
	n, err := l.r.Read(p)
	l.n += int64(n)
	due := l.start.Add(time.Duration(float64(l.n) / float64(l.rate) * float64(time.Second)))
	if wait := time.Until(due); wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-t.C:
		case <-l.ctx.Done():
			return n, l.ctx.Err()
		}
	}
	return n, err
}

// writeManifest writes m to path atomically: temp file, fsync, rename,
// fsync the directory.
func writeManifest(path string, m Manifest) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // a no-op once renamed
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	return syncDir(dir)
}

// syncDir fsyncs a directory so the names in it survive a crash.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
