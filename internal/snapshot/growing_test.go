package snapshot

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// bigBolt writes a bbolt DB of several MiB, so a scratch copy of it spans
// many punchable blocks.
func bigBolt(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{NoFreelistSync: true})
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket([]byte("key"))
		if err != nil {
			return err
		}
		for i := range 4000 {
			if err := b.Put(fmt.Appendf(nil, "k%06d", i), bytes.Repeat([]byte{byte(i)}, 2000+i%3000)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// copyGrowing writes src into a new file in small pieces, as the stream
// writes the plaintext copy, and walks it as it grows.
func copyGrowing(t *testing.T, src []byte, scratch bool) (string, map[string][][2]string, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "copy")
	out, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	g, err := openGrowing(path, scratch)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	w := g.writer(out)
	go func() {
		defer g.finish()
		for b := src; len(b) > 0; {
			n := min(len(b), 48<<10)
			if _, err := w.Write(b[:n]); err != nil {
				return
			}
			b = b[n:]
		}
	}()
	r := &recordVisitor{got: map[string][][2]string{}}
	_, err = walkGrowing(g, r)
	return path, r.got, err
}

func TestAScratchCopyIsPunchedOutAsTheWalkReadsIt(t *testing.T) {
	orig, err := os.ReadFile(bigBolt(t))
	if err != nil {
		t.Fatal(err)
	}
	path, got, err := copyGrowing(t, orig, true)
	if err != nil {
		t.Fatalf("walk of a sound scratch copy: %v", err)
	}
	want := &recordVisitor{got: map[string][][2]string{}}
	src := filepath.Join(t.TempDir(), "src")
	os.WriteFile(src, orig, 0o600)
	if _, err := walkBolt(src, want); err != nil {
		t.Fatal(err)
	}
	if len(got["key"]) != 4000 || !slices.Equal(got["key"], want.got["key"]) {
		t.Fatalf("the walk of the scratch copy yielded %d entries, the finished file %d (or they differ)", len(got["key"]), len(want.got["key"]))
	}
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	// bbolt's file runs past its high-water mark; the walk reads only the
	// pages below it, and those blocks, but the first, must be gone.
	m0, _ := parseMeta(orig)
	m1, _ := parseMeta(orig[4096:])
	inUse := int64(max(m0.hwm, m1.hwm)) * 4096
	unread := int64(len(orig)) - inUse
	if held := st.Blocks * 512; held > unread+inUse/8 {
		t.Errorf("the scratch copy still holds %d of its %d bytes after the walk read the %d in use", held, len(orig), inUse)
	}
	// bbolt's own open, after the walk, needs the meta pages.
	if err := boltOpens(path); err != nil {
		t.Errorf("bbolt cannot open the scratch copy after the walk: %v", err)
	}

	// A file the walk did not read (not a scratch copy) keeps every byte.
	path, _, err = copyGrowing(t, orig, false)
	if err != nil {
		t.Fatal(err)
	}
	kept, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(kept, orig) {
		t.Fatalf("a walked file that is not a scratch copy changed (%v)", err)
	}
}

func TestAScratchCopyGivesEachPageOnce(t *testing.T) {
	orig, err := os.ReadFile(bigBolt(t))
	if err != nil {
		t.Fatal(err)
	}
	// Point a branch's second child at its first: the second visit must be
	// refused as such, not read from a punched block.
	branch := pagesOf(t, orig, branchPageFlag, 2)[0]
	e0 := branch*4096 + pageHeaderSize
	binary.LittleEndian.PutUint64(orig[e0+branchElemSize+8:], binary.LittleEndian.Uint64(orig[e0+8:]))
	_, _, err = copyGrowing(t, orig, true)
	if err == nil || !strings.Contains(err.Error(), "referenced twice") {
		t.Fatalf("walk of a scratch copy with a page referenced twice: %v", err)
	}
}
