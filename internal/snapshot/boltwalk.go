package snapshot

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
)

// boltWalk checks a bbolt file's structure and reads its keys and values
// with pread(2), a page at a time, instead of through bbolt's mmap.
//
// Why not bbolt's own tx.Check: it walks the mmap, and on current kernels a
// fault on a file written moments ago maps the whole large folio around it,
// so checking a snapshot that was just streamed to disk makes the process's
// resident set as large as the DB (measured: 289 MiB of a 266 MiB DB mapped
// within 4 ms, whatever MADV_DONTNEED or MADV_RANDOM say). A saving
// supervisor must not look like it holds the DB in memory, and must not
// grow with it. Reading pages into one reused buffer per tree level keeps
// the check's memory at a few pages.
//
// It checks what bbolt's Check checks: valid meta pages (magic, version,
// checksum; the newer valid one is used, as bbolt does), every page
// referenced once and only below the high-water mark, page types, no
// reachable page in the freelist, no freelist page listed twice, every page
// below the high-water mark either reachable or free (when the file has a
// freelist; etcd's files have none: `NoFreelistSync`), and key order inside
// pages and between a branch and its children. `snapshot verify` still runs
// bbolt's own Check as well.

// bbolt's on-disk layout (go.etcd.io/bbolt/internal/common).
const (
	pageHeaderSize  = 16 // id u64, flags u16, count u16, overflow u32
	branchElemSize  = 16 // pos u32, ksize u32, pgid u64
	leafElemSize    = 16 // flags u32, pos u32, ksize u32, vsize u32
	bucketHeaderLen = 16 // root pgid u64, sequence u64
	metaChecksumOff = 56 // the checksum covers the meta's first 56 bytes

	branchPageFlag   = 0x01
	leafPageFlag     = 0x02
	metaPageFlag     = 0x04
	freelistPageFlag = 0x10
	bucketLeafFlag   = 0x01

	boltVersion   = 2
	noFreelist    = ^uint64(0)
	maxPageSize   = 64 << 10
	maxCheckDepth = 64 // far beyond any real tree; bounds a hostile one
)

// boltMeta is the part of a meta page the walk needs.
type boltMeta struct {
	pageSize uint32
	root     uint64 // the root bucket's root page
	freelist uint64
	hwm      uint64 // high-water mark: pages at or above it are not in use
	txid     uint64
}

// kvVisitor receives, in key order, each top-level bucket's name and then
// the keys and values in it. A value is nil for a nested bucket. The slices
// are only valid during the call.
type kvVisitor interface {
	bucket(name []byte) error
	kv(k, v []byte) error
}

// pageSource is what the walk reads: a file, or one still being written.
type pageSource interface {
	io.ReaderAt
	// size is the source's size once it is final; it waits for that.
	size() (int64, error)
}

// fileSource is a finished file.
type fileSource struct{ *os.File }

func (f fileSource) size() (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

type boltWalker struct {
	f        pageSource
	pageSize int
	meta     boltMeta

	reachable bitset
	freed     bitset
	problems  []error
	bufs      [][]byte // one page buffer per tree level
	visit     kvVisitor
}

// maxProblems bounds the report of a badly damaged file.
const maxProblems = 10

func (w *boltWalker) problem(format string, args ...any) {
	if len(w.problems) < maxProblems {
		w.problems = append(w.problems, fmt.Errorf(format, args...))
	}
}

// walkBolt checks the bbolt file at path and hands its contents to visit.
// It returns the meta it used; an error means the file is damaged (or not
// bbolt), and names what is wrong.
func walkBolt(path string, visit kvVisitor) (boltMeta, error) {
	f, err := os.Open(path)
	if err != nil {
		return boltMeta{}, err
	}
	defer f.Close()
	w := &boltWalker{f: fileSource{f}, visit: visit}
	if err := w.readMeta(); err != nil {
		return boltMeta{}, err
	}
	// A truncated file is told as such before the walk stumbles on it.
	if err := w.checkSize(); err != nil {
		return boltMeta{}, err
	}
	return w.walk()
}

// walkGrowing is walkBolt on a file still being written: the walk follows
// the writer, and the size is checked once the writer has finished.
func walkGrowing(src *growingFile, visit kvVisitor) (boltMeta, error) {
	w := &boltWalker{f: src, visit: visit}
	if err := w.readMeta(); err != nil {
		return boltMeta{}, err
	}
	meta, err := w.walk()
	if serr := w.checkSize(); serr != nil {
		return boltMeta{}, serr // the likelier cause of a failed walk
	}
	return meta, err
}

// walk checks the tree and the freelist from the meta readMeta chose.
func (w *boltWalker) walk() (boltMeta, error) {
	w.reachable = newBitset(w.meta.hwm)
	w.freed = newBitset(w.meta.hwm)
	w.reachable.set(0)
	w.reachable.set(1)
	if err := w.readFreelist(); err != nil {
		return boltMeta{}, err
	}
	if err := w.walkBucket(w.meta.root, nil, 0, 0); err != nil {
		return boltMeta{}, err
	}
	if w.meta.freelist != noFreelist {
		for id := uint64(2); id < w.meta.hwm; id++ {
			if !w.reachable.has(id) && !w.freed.has(id) {
				w.problem("page %d: unreachable unfreed", id)
			}
		}
	}
	if len(w.problems) > 0 {
		return boltMeta{}, fmt.Errorf("bbolt consistency check found problems: %w", errors.Join(w.problems...))
	}
	return w.meta, nil
}

// readMeta reads both meta pages and keeps the valid one with the higher
// transaction ID, as bbolt does on open.
func (w *boltWalker) readMeta() error {
	first := make([]byte, 4096)
	if _, err := w.f.ReadAt(first, 0); err != nil {
		return fmt.Errorf("read meta page 0: %w", err)
	}
	m0, err0 := parseMeta(first)
	pageSize := m0.pageSize
	if err0 != nil {
		// The first meta is damaged, so its page size can't be trusted;
		// bbolt then assumes the OS page size. Both are 4 KiB here.
		pageSize = 4096
	}
	second := make([]byte, 4096)
	if _, err := w.f.ReadAt(second, int64(pageSize)); err != nil {
		return fmt.Errorf("read meta page 1: %w", err)
	}
	m1, err1 := parseMeta(second)
	switch {
	case err0 != nil && err1 != nil:
		return fmt.Errorf("both meta pages are invalid: %v; %v", err0, err1)
	case err1 != nil || (err0 == nil && m0.txid >= m1.txid):
		w.meta = m0
	default:
		w.meta = m1
	}
	w.pageSize = int(w.meta.pageSize)
	if w.pageSize < 1024 || w.pageSize > maxPageSize || w.pageSize&(w.pageSize-1) != 0 {
		return fmt.Errorf("meta: page size %d is not a power of two in [1KiB, 64KiB]", w.pageSize)
	}
	if w.meta.root >= w.meta.hwm || w.meta.root < 2 {
		return fmt.Errorf("meta: root page %d outside [2, %d)", w.meta.root, w.meta.hwm)
	}
	return nil
}

// checkSize refuses a file shorter than its meta's high-water mark.
func (w *boltWalker) checkSize() error {
	size, err := w.f.size()
	if err != nil {
		return err
	}
	if need := int64(w.meta.hwm) * int64(w.pageSize); size < need {
		return fmt.Errorf("file is %d bytes, but its meta says %d pages of %d bytes (%d): truncated", size, w.meta.hwm, w.pageSize, need)
	}
	return nil
}

func parseMeta(p []byte) (boltMeta, error) {
	if binary.LittleEndian.Uint16(p[8:]) != metaPageFlag {
		return boltMeta{}, fmt.Errorf("page %d is not a meta page", binary.LittleEndian.Uint64(p))
	}
	b := p[pageHeaderSize:]
	if binary.LittleEndian.Uint32(b) != boltMagic {
		return boltMeta{}, errors.New("meta: no bbolt magic")
	}
	if v := binary.LittleEndian.Uint32(b[4:]); v != boltVersion {
		return boltMeta{}, fmt.Errorf("meta: bbolt version %d, want %d", v, boltVersion)
	}
	h := fnv.New64a()
	h.Write(b[:metaChecksumOff])
	if h.Sum64() != binary.LittleEndian.Uint64(b[metaChecksumOff:]) {
		return boltMeta{}, errors.New("meta: checksum mismatch")
	}
	return boltMeta{
		pageSize: binary.LittleEndian.Uint32(b[8:]),
		root:     binary.LittleEndian.Uint64(b[16:]),
		freelist: binary.LittleEndian.Uint64(b[32:]),
		hwm:      binary.LittleEndian.Uint64(b[40:]),
		txid:     binary.LittleEndian.Uint64(b[48:]),
	}, nil
}

func (w *boltWalker) readFreelist() error {
	id := w.meta.freelist
	if id == noFreelist {
		return nil
	}
	p, err := w.readPage(id, 0)
	if err != nil {
		return fmt.Errorf("freelist: %w", err)
	}
	if flags(p) != freelistPageFlag {
		return fmt.Errorf("freelist: page %d has type %#x, not freelist", id, flags(p))
	}
	w.markReachable(id, overflow(p))
	n, data := uint64(count(p)), p[pageHeaderSize:]
	if n == 0xFFFF { // the count overflowed into the first element
		if len(data) < 8 {
			return fmt.Errorf("freelist: page %d too short", id)
		}
		n, data = binary.LittleEndian.Uint64(data), data[8:]
	}
	if n > uint64(len(data)/8) {
		return fmt.Errorf("freelist: page %d claims %d free pages but holds room for %d", id, n, len(data)/8)
	}
	for i := range n {
		free := binary.LittleEndian.Uint64(data[i*8:])
		switch {
		case free >= w.meta.hwm:
			w.problem("freelist: page %d is beyond the high-water mark %d", free, w.meta.hwm)
		case w.freed.has(free):
			w.problem("page %d: already freed", free)
		default:
			w.freed.set(free)
		}
	}
	return nil
}

// walkBucket checks the tree of a bucket whose root page is root and
// visits its entries; depth is the bucket's nesting (0 for the root
// bucket, whose entries are the top-level buckets).
func (w *boltWalker) walkBucket(root uint64, inline []byte, depth, level int) error {
	var err error
	if inline != nil {
		_, err = w.walkLeaf(inline, 0, nil, nil, depth, level)
	} else {
		_, err = w.walkPage(root, nil, nil, depth, level)
	}
	return err
}

// walkPage checks page id and its subtree; every key in it must be in
// [min, maxOpen). It returns the subtree's last key.
func (w *boltWalker) walkPage(id uint64, min, maxOpen []byte, depth, level int) ([]byte, error) {
	if level >= maxCheckDepth {
		return nil, fmt.Errorf("page %d: tree deeper than %d levels", id, maxCheckDepth)
	}
	if id < 2 || id >= w.meta.hwm {
		return nil, fmt.Errorf("page %d: out of bounds (high-water mark %d)", id, w.meta.hwm)
	}
	// Before reading it: a scratch copy gives each page to the walk once.
	if w.reachable.has(id) {
		return nil, fmt.Errorf("page %d: referenced twice", id)
	}
	p, err := w.readPage(id, level)
	if err != nil {
		return nil, err
	}
	if got := binary.LittleEndian.Uint64(p); got != id {
		return nil, fmt.Errorf("page %d: header says it is page %d", id, got)
	}
	if !w.markReachable(id, overflow(p)) {
		return nil, fmt.Errorf("page %d: referenced twice", id)
	}
	if w.freed.has(id) {
		w.problem("page %d: reachable freed", id)
	}
	switch flags(p) {
	case leafPageFlag:
		return w.walkLeaf(p, id, min, maxOpen, depth, level)
	case branchPageFlag:
		return w.walkBranch(p, id, min, maxOpen, depth, level)
	default:
		return nil, fmt.Errorf("page %d: invalid type %#x in a bucket's tree", id, flags(p))
	}
}

func (w *boltWalker) walkBranch(p []byte, id uint64, min, maxOpen []byte, depth, level int) ([]byte, error) {
	n := int(count(p))
	if pageHeaderSize+n*branchElemSize > len(p) {
		return nil, fmt.Errorf("page %d: %d branch elements overflow the page", id, n)
	}
	var last []byte
	running := min
	for i := range n {
		key, child, err := branchElem(p, i)
		if err != nil {
			return nil, fmt.Errorf("page %d: %w", id, err)
		}
		w.checkOrder(id, "branch", i, key, running, maxOpen)
		next := maxOpen
		if i < n-1 {
			if next, _, err = branchElem(p, i+1); err != nil {
				return nil, fmt.Errorf("page %d: %w", id, err)
			}
		}
		// The child reuses deeper buffers; this page's keys stay valid.
		last, err = w.walkPage(child, key, next, depth, level+1)
		if err != nil {
			return nil, err
		}
		running = last
	}
	return last, nil
}

func (w *boltWalker) walkLeaf(p []byte, id uint64, min, maxOpen []byte, depth, level int) ([]byte, error) {
	n := int(count(p))
	if pageHeaderSize+n*leafElemSize > len(p) {
		return nil, fmt.Errorf("page %d: %d leaf elements overflow the page", id, n)
	}
	var last []byte
	for i := range n {
		isBucket, key, val, err := leafElem(p, i)
		if err != nil {
			return nil, fmt.Errorf("page %d: %w", id, err)
		}
		prev := min
		if i > 0 {
			prev = last
		}
		w.checkOrder(id, "leaf", i, key, prev, maxOpen)
		last = key
		if err := w.visitEntry(key, val, isBucket, depth); err != nil {
			return nil, err
		}
		if !isBucket {
			continue
		}
		if len(val) < bucketHeaderLen {
			return nil, fmt.Errorf("page %d: bucket %q: header too short", id, key)
		}
		root := binary.LittleEndian.Uint64(val)
		var inline []byte
		if root == 0 {
			inline = val[bucketHeaderLen:]
			if len(inline) < pageHeaderSize {
				return nil, fmt.Errorf("page %d: inline bucket %q too short", id, key)
			}
		}
		if err := w.walkBucket(root, inline, depth+1, level+1); err != nil {
			return nil, fmt.Errorf("bucket %q: %w", key, err)
		}
	}
	return last, nil
}

func (w *boltWalker) visitEntry(key, val []byte, isBucket bool, depth int) error {
	if w.visit == nil {
		return nil
	}
	switch depth {
	case 0:
		if !isBucket {
			return fmt.Errorf("top-level key %q is not a bucket", key)
		}
		return w.visit.bucket(key)
	case 1:
		if isBucket {
			val = nil
		}
		return w.visit.kv(key, val)
	}
	return nil
}

// checkOrder mirrors bbolt: keys strictly increase within a page, the first
// is at least the key its parent holds for it, all are below the next one.
func (w *boltWalker) checkOrder(id uint64, kind string, i int, key, prev, maxOpen []byte) {
	if c := bytes.Compare(prev, key); prev != nil && (c > 0 || (i > 0 && c == 0)) {
		w.problem("%s page %d: key[%d] %x is not after %x", kind, id, i, key, prev)
	}
	if maxOpen != nil && bytes.Compare(key, maxOpen) >= 0 {
		w.problem("%s page %d: key[%d] %x is not below its parent's next key %x", kind, id, i, key, maxOpen)
	}
}

// readPage reads page id with its overflow pages into level's buffer.
func (w *boltWalker) readPage(id uint64, level int) ([]byte, error) {
	for len(w.bufs) <= level {
		w.bufs = append(w.bufs, make([]byte, w.pageSize))
	}
	buf := w.bufs[level][:w.pageSize]
	off := int64(id) * int64(w.pageSize)
	if _, err := w.f.ReadAt(buf, off); err != nil {
		return nil, fmt.Errorf("read page %d: %w", id, noEOF(err))
	}
	if ov := uint64(overflow(buf)); ov > 0 {
		if id+ov >= w.meta.hwm {
			return nil, fmt.Errorf("page %d: %d overflow pages run past the high-water mark %d", id, ov, w.meta.hwm)
		}
		size := int(ov+1) * w.pageSize
		if cap(w.bufs[level]) < size {
			grown := make([]byte, size)
			copy(grown, buf)
			w.bufs[level] = grown
		}
		buf = w.bufs[level][:size]
		if _, err := w.f.ReadAt(buf[w.pageSize:], off+int64(w.pageSize)); err != nil {
			return nil, fmt.Errorf("read page %d overflow: %w", id, noEOF(err))
		}
	}
	return buf, nil
}

// markReachable marks id and its overflow pages; false if one was already.
func (w *boltWalker) markReachable(id uint64, ov uint32) bool {
	ok := true
	for i := uint64(0); i <= uint64(ov); i++ {
		if w.reachable.has(id + i) {
			ok = false
		}
		w.reachable.set(id + i)
	}
	return ok
}

func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

func flags(p []byte) uint16    { return binary.LittleEndian.Uint16(p[8:]) }
func count(p []byte) uint16    { return binary.LittleEndian.Uint16(p[10:]) }
func overflow(p []byte) uint32 { return binary.LittleEndian.Uint32(p[12:]) }

// branchElem returns element i's key and child page; pos is relative to
// the element itself.
func branchElem(p []byte, i int) ([]byte, uint64, error) {
	e := pageHeaderSize + i*branchElemSize
	pos := e + int(binary.LittleEndian.Uint32(p[e:]))
	ksize := int(binary.LittleEndian.Uint32(p[e+4:]))
	if pos < e || ksize < 0 || pos+ksize > len(p) {
		return nil, 0, fmt.Errorf("branch element %d points outside the page", i)
	}
	return p[pos : pos+ksize], binary.LittleEndian.Uint64(p[e+8:]), nil
}

// leafElem returns element i: whether it is a bucket, its key and value.
func leafElem(p []byte, i int) (bool, []byte, []byte, error) {
	e := pageHeaderSize + i*leafElemSize
	fl := binary.LittleEndian.Uint32(p[e:])
	pos := e + int(binary.LittleEndian.Uint32(p[e+4:]))
	ksize := int(binary.LittleEndian.Uint32(p[e+8:]))
	vsize := int(binary.LittleEndian.Uint32(p[e+12:]))
	if pos < e || ksize < 0 || vsize < 0 || pos+ksize+vsize > len(p) {
		return false, nil, nil, fmt.Errorf("leaf element %d points outside the page", i)
	}
	return fl&bucketLeafFlag != 0, p[pos : pos+ksize], p[pos+ksize : pos+ksize+vsize], nil
}

type bitset []uint64

func newBitset(n uint64) bitset { return make(bitset, (n+63)/64) }

func (b bitset) has(i uint64) bool {
	return i/64 < uint64(len(b)) && b[i/64]&(1<<(i%64)) != 0
}

func (b bitset) set(i uint64) {
	if i/64 < uint64(len(b)) {
		b[i/64] |= 1 << (i % 64)
	}
}
