package snapshot

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"os"
	"time"

	"filippo.io/age"
	"github.com/coreos/go-semver/semver"
	bolt "go.etcd.io/bbolt"
	"go.etcd.io/etcd/server/v3/storage/mvcc"
	"go.etcd.io/etcd/server/v3/storage/schema"
	"google.golang.org/protobuf/encoding/protowire"
)

// revBytesLen is the length of a revision key in the key bucket: main
// revision, '_', sub revision; a tombstone adds a 't'.
const revBytesLen = 8 + 1 + 8

// Status is what `snapshot status` prints: the four figures of etcdutl plus
// the storage version. The JSON keys are etcdutl's, so the output of both
// tools compares directly.
type Status struct {
	Hash      uint32 `json:"hash"`
	Revision  int64  `json:"revision"`
	TotalKeys int    `json:"totalKey"`
	TotalSize int64  `json:"totalSize"`
	Version   string `json:"version"`
}

// Verify fully checks a snapshot file: it decrypts and decompresses it,
// checks etcd's sha256 trailer (a DB without one is refused with
// ErrNoChecksum), opens the DB with bbolt, checks it both with walkBolt and
// with bbolt's own consistency check, and reads the Status. bbolt needs a file, so the plaintext is written to a
// temporary file (mode 0600) in tmpDir and removed before Verify returns.
func Verify(path string, identities []age.Identity, tmpDir string) (Status, error) {
	r, err := open(path, identities)
	if err != nil {
		return Status{}, err
	}
	defer r.Close()

	tmp, err := os.CreateTemp(tmpDir, ".etcdvisor-verify-*.db")
	if err != nil {
		return Status{}, fmt.Errorf("verify %s: create plaintext copy: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()

	bw := bufio.NewWriterSize(tmp, readBufSize)
	if _, err := io.CopyBuffer(bw, r, make([]byte, readBufSize)); err != nil {
		return Status{}, fmt.Errorf("verify %s: read %s: %w", path, r.Form.describe(), err)
	}
	if !r.HasTrailer() {
		return Status{}, fmt.Errorf("verify %s: %w: it cannot be told from a damaged or truncated DB", path, ErrNoChecksum)
	}
	if err := bw.Flush(); err != nil {
		return Status{}, fmt.Errorf("verify %s: write plaintext copy: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return Status{}, fmt.Errorf("verify %s: write plaintext copy: %w", path, err)
	}
	st, err := dbStatus(tmp.Name())
	if err != nil {
		return Status{}, fmt.Errorf("verify %s: %w", path, err)
	}
	if err := boltCheck(tmp.Name()); err != nil {
		return Status{}, fmt.Errorf("verify %s: %w", path, err)
	}
	return st, nil
}

// dbStatus opens a plaintext bbolt DB read-only with bbolt (its meta pages
// must pass bbolt's checks), then checks its structure with walkBolt and
// computes the figures exactly as etcdutl snapshot status does:
//   - Hash: crc32 (Castagnoli) over, for each top-level bucket in order, its
//     name and then each key and value in order;
//   - Revision: the main revision of the last key of the "key" bucket, whose
//     keys are revisions in order;
//   - TotalKeys: the keys alive at that revision: a revision adds its key, a
//     tombstone revision removes it;
//   - TotalSize: the size bbolt reports for the DB (high-water mark times
//     page size).
func dbStatus(path string) (Status, error) {
	if err := boltOpens(path); err != nil {
		return Status{}, err
	}
	v := newStatusVisitor()
	meta, err := walkBolt(path, v)
	if err != nil {
		return Status{}, fmt.Errorf("check DB: %w", err)
	}
	return v.status(meta), nil
}

// boltOpens opens the DB read-only with bbolt and closes it: its meta
// pages must pass bbolt's own checks.
func boltOpens(path string) error {
	db, err := bolt.Open(path, 0o400, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return fmt.Errorf("open DB with bbolt: %w", err)
	}
	if err := db.Close(); err != nil {
		return fmt.Errorf("close DB: %w", err)
	}
	return nil
}

// growingStatus is dbStatus's walk on a file still being written; the
// caller runs boltOpens once the file is complete.
func growingStatus(g *growingFile) (Status, error) {
	v := newStatusVisitor()
	meta, err := walkGrowing(g, v)
	if err != nil {
		return Status{}, fmt.Errorf("check DB: %w", err)
	}
	return v.status(meta), nil
}

func newStatusVisitor() *statusVisitor {
	return &statusVisitor{h: crc32.New(crc32.MakeTable(crc32.Castagnoli)), live: make(map[string]struct{})}
}

func (s *statusVisitor) status(meta boltMeta) Status {
	return Status{
		Hash:      s.h.Sum32(),
		Revision:  s.revision,
		TotalKeys: len(s.live),
		TotalSize: int64(meta.hwm) * int64(meta.pageSize),
		Version:   s.version,
	}
}

// statusVisitor computes etcdutl's figures as the walk passes.
type statusVisitor struct {
	h        hash.Hash32
	live     map[string]struct{}
	revision int64
	version  string

	inKey, inMeta bool // which bucket the walk is in
}

func (s *statusVisitor) bucket(name []byte) error {
	s.h.Write(name)
	s.inKey = bytes.Equal(name, schema.Key.Name())
	s.inMeta = bytes.Equal(name, schema.Meta.Name())
	return nil
}

func (s *statusVisitor) kv(k, v []byte) error {
	s.h.Write(k)
	s.h.Write(v)
	if s.inMeta && bytes.Equal(k, schema.MetaStorageVersionName) {
		// As schema.ReadStorageVersionFromSnapshot: no valid version, none.
		if sv, err := semver.NewVersion(string(v)); err == nil {
			s.version = sv.String()
		}
	}
	if !s.inKey {
		return nil
	}
	if len(k) != revBytesLen && len(k) != revBytesLen+1 {
		return fmt.Errorf("key bucket: key %x is not a revision", k)
	}
	s.revision = mvcc.BytesToRev(k).Main
	key, err := keyOf(v)
	if err != nil {
		return fmt.Errorf("key bucket: revision %x: unmarshal value: %w", k, err)
	}
	if mvcc.IsTombstone(k) {
		delete(s.live, string(key))
	} else {
		s.live[string(key)] = struct{}{}
	}
	return nil
}

// keyOf returns the key (field 1) of an mvccpb.KeyValue in wire format,
// checking that the whole message is well-formed protobuf. Unmarshalling
// the message would copy its value, and the values are most of the DB:
// that copy was the largest cost of checking a snapshot.
func keyOf(b []byte) ([]byte, error) {
	var key []byte
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		b = b[n:]
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return nil, protowire.ParseError(m)
		}
		if num == 1 && typ == protowire.BytesType {
			key, _ = protowire.ConsumeBytes(b)
		}
		b = b[m:]
	}
	return key, nil
}

// boltCheck runs bbolt's own consistency check, which walks the DB through
// its mmap: thorough, but its resident set grows to the DB's size (see
// walkBolt), so only `snapshot verify` runs it, beside walkBolt.
func boltCheck(path string) (err error) {
	db, err := bolt.Open(path, 0o400, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return fmt.Errorf("open DB with bbolt: %w", err)
	}
	defer db.Close()
	// bbolt panics on some corruptions it meets while walking; this turns
	// them into the error they are.
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("bbolt check: %v", p)
		}
	}()
	return db.View(func(tx *bolt.Tx) error {
		var problems []error
		for e := range tx.Check() {
			problems = append(problems, e)
		}
		if len(problems) > 0 {
			return fmt.Errorf("bbolt consistency check found %d problems: %w", len(problems), errors.Join(problems...))
		}
		return nil
	})
}
