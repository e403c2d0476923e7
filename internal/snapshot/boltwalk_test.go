package snapshot

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// buildBolt writes a bbolt DB with what the walk must get through: several
// top-level buckets, branch pages (thousands of keys), overflow pages
// (values larger than a page), a nested bucket with its own pages and an
// inline nested bucket. It returns the path and, per top-level bucket, the
// keys and values bbolt's own ForEach yields.
func buildBolt(t *testing.T, freelistSync bool) (string, map[string][][2]string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{NoFreelistSync: !freelistSync})
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range []string{"key", "meta", "lease"} {
			b, err := tx.CreateBucket([]byte(name))
			if err != nil {
				return err
			}
			for i := range 3000 {
				v := strings.Repeat(fmt.Sprint(i%10), 10+i%50)
				if i%500 == 0 {
					v = strings.Repeat("x", 9000) // two overflow pages
				}
				if err := b.Put([]byte(fmt.Sprintf("%s-%06d", name, i)), []byte(v)); err != nil {
					return err
				}
			}
		}
		nested, err := tx.Bucket([]byte("lease")).CreateBucket([]byte("nested"))
		if err != nil {
			return err
		}
		for i := range 2000 {
			nested.Put([]byte(fmt.Sprintf("n%05d", i)), []byte("nested value"))
		}
		small, err := tx.Bucket([]byte("meta")).CreateBucket([]byte("inline"))
		if err != nil {
			return err
		}
		return small.Put([]byte("a"), []byte("b"))
	})
	if err != nil {
		t.Fatal(err)
	}
	// Free some pages, so a synced freelist has entries.
	db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("key"))
		for i := range 1000 {
			b.Delete([]byte(fmt.Sprintf("key-%06d", i)))
		}
		return nil
	})
	want := map[string][][2]string{}
	db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			return b.ForEach(func(k, v []byte) error {
				want[string(name)] = append(want[string(name)], [2]string{string(k), string(v)})
				return nil
			})
		})
	})
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return path, want
}

type recordVisitor struct {
	cur string
	got map[string][][2]string
}

func (r *recordVisitor) bucket(name []byte) error { r.cur = string(name); return nil }
func (r *recordVisitor) kv(k, v []byte) error {
	r.got[r.cur] = append(r.got[r.cur], [2]string{string(k), string(v)})
	return nil
}

func TestWalkBoltVisitsWhatBboltForEachYields(t *testing.T) {
	for _, sync := range []bool{false, true} {
		t.Run(fmt.Sprintf("freelist-sync=%v", sync), func(t *testing.T) {
			path, want := buildBolt(t, sync)
			r := &recordVisitor{got: map[string][][2]string{}}
			meta, err := walkBolt(path, r)
			if err != nil {
				t.Fatalf("walkBolt on a sound DB: %v", err)
			}
			if (meta.freelist == noFreelist) == sync {
				t.Fatalf("freelist page %d with freelist sync %v", meta.freelist, sync)
			}
			if len(r.got) != len(want) {
				t.Fatalf("buckets %d, want %d", len(r.got), len(want))
			}
			for name, kvs := range want {
				if !slices.Equal(r.got[name], kvs) {
					t.Errorf("bucket %s: walk yielded %d entries, bbolt %d (or they differ)", name, len(r.got[name]), len(kvs))
				}
			}
		})
	}
}

// pageOf finds the first page of the given type whose elements exceed n.
func pagesOf(t *testing.T, b []byte, flag uint16, minCount int) []int {
	t.Helper()
	var ids []int
	for id := 2; (id+1)*4096 <= len(b); id++ {
		p := b[id*4096:]
		if binary.LittleEndian.Uint64(p) == uint64(id) && flags(p) == flag && int(count(p)) >= minCount {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		t.Fatalf("no page of type %#x with %d elements", flag, minCount)
	}
	return ids
}

func TestWalkBoltFindsDamage(t *testing.T) {
	path, _ := buildBolt(t, true)
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	branch := pagesOf(t, orig, branchPageFlag, 2)[0]
	leaf := pagesOf(t, orig, leafPageFlag, 3)[0]
	elem := func(id, i int) int { return id*4096 + pageHeaderSize + i*16 }
	cases := []struct {
		name    string
		damage  func(b []byte) []byte
		wantErr string
	}{
		{"both meta checksums", func(b []byte) []byte { b[16+56]++; b[4096+16+56]++; return b }, "both meta pages are invalid"},
		{"truncated", func(b []byte) []byte { return b[:len(b)/2] }, "truncated"},
		{"branch child referenced twice", func(b []byte) []byte {
			copy(b[elem(branch, 1)+8:], b[elem(branch, 0)+8:elem(branch, 0)+16])
			return b
		}, ""},
		{"branch child out of bounds", func(b []byte) []byte {
			binary.LittleEndian.PutUint64(b[elem(branch, 0)+8:], 1<<40)
			return b
		}, "out of bounds"},
		{"page header names another page", func(b []byte) []byte {
			binary.LittleEndian.PutUint64(b[leaf*4096:], uint64(leaf+1))
			return b
		}, ""},
		{"leaf keys out of order", func(b []byte) []byte {
			// Point element 0 at element 2's key.
			k2 := elem(leaf, 2) + int(binary.LittleEndian.Uint32(b[elem(leaf, 2)+4:]))
			binary.LittleEndian.PutUint32(b[elem(leaf, 0)+4:], uint32(k2-elem(leaf, 0)))
			return b
		}, "is not after"},
		{"leaf element points past the page", func(b []byte) []byte {
			binary.LittleEndian.PutUint32(b[elem(leaf, 0)+8:], 1<<20)
			return b
		}, "outside the page"},
		{"page type changed", func(b []byte) []byte {
			binary.LittleEndian.PutUint16(b[leaf*4096+8:], freelistPageFlag)
			return b
		}, "invalid type"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "damaged")
			if err := os.WriteFile(p, c.damage(bytes.Clone(orig)), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := walkBolt(p, nil)
			if err == nil {
				t.Fatalf("walkBolt passed a DB with %s", c.name)
			}
			if !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("error %q does not say %q", err, c.wantErr)
			}
		})
	}
}

// TestWalkBoltIsAtLeastAsStrictAsBboltCheck damages page and element
// headers at random. Whatever the walk passes, bbolt's own Check must pass
// too: the walk misses nothing bbolt would find. (The other way round
// cannot be run in-process: on some of these files bbolt's Check reads
// outside its mmap and the process dies of SIGSEGV, which no recover
// catches. The walk bounds-checks every offset, which is why Verify runs
// bbolt's Check only after the walk passed.)
func TestWalkBoltIsAtLeastAsStrictAsBboltCheck(t *testing.T) {
	path, _ := buildBolt(t, true)
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	pages := len(orig) / 4096
	runs := 300
	if testing.Short() {
		runs = 80
	}
	walkFound := 0
	for i := range runs {
		b := bytes.Clone(orig)
		id := 2 + rng.IntN(pages-2)
		off := id*4096 + rng.IntN(64) // the header and the first elements
		b[off] ^= byte(1 << rng.IntN(8))
		p := filepath.Join(t.TempDir(), fmt.Sprintf("damaged-%d", i))
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := walkBolt(p, nil); err != nil {
			walkFound++
			continue
		}
		if err := boltCheck(p); err != nil {
			t.Errorf("page %d byte %d: walkBolt passes it, bbolt's Check finds: %v", id, off%4096, err)
		}
	}
	if walkFound == 0 {
		t.Fatalf("walkBolt found none of %d damaged DBs damaged: the test damages nothing that matters", runs)
	}
	t.Logf("walkBolt refused %d of %d damaged DBs; bbolt's Check passed all the others", walkFound, runs)
}
