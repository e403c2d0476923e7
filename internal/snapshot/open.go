package snapshot

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"

	"filippo.io/age"
	"filippo.io/age/armor"
	"github.com/klauspost/compress/zstd"
)

var (
	// ErrNoIdentity is returned when a snapshot is age-encrypted and no
	// identity was given to decrypt it.
	ErrNoIdentity = errors.New("snapshot is age-encrypted and no identity was given to decrypt it")
	// ErrWrongIdentity is returned when none of the given identities can
	// decrypt an age-encrypted snapshot.
	ErrWrongIdentity = errors.New("none of the given identities can decrypt the snapshot")
	// ErrChecksum is returned when the sha256 trailer etcd appends to a
	// snapshot does not match the data before it.
	ErrChecksum = errors.New("sha256 trailer does not match the snapshot data")
	// ErrNoChecksum is returned by Verify and Restore for a DB without etcd's
	// sha256 trailer: nothing proves it is the DB etcd sent.
	ErrNoChecksum = errors.New("snapshot has no sha256 trailer")
	// ErrNotSnapshot is returned for data that is not a bbolt DB once
	// decrypted and decompressed.
	ErrNotSnapshot = errors.New("not an etcd snapshot")
)

const (
	ageMagic      = "age-encryption.org/v1"
	zstdMagic     = "\x28\xb5\x2f\xfd"
	trailerSize   = sha256.Size
	sectorSize    = 512
	boltMagic     = 0xED0CDAED
	boltMagicOff  = 16 // page header: id(8) flags(2) count(2) overflow(4)
	readBufSize   = 256 << 10
	zstdMaxWindow = 128 << 20 // zstd --long=27; refuses hostile windows
)

// Form says how a snapshot file is wrapped around the bbolt DB.
type Form struct {
	Encrypted  bool
	Compressed bool
}

// Reader reads the plaintext bbolt DB out of a snapshot file. It holds back
// the last 32 bytes of the stream; at the end it decides, as etcd does from
// the length, whether they are a sha256 trailer (checked, not returned) or
// the end of a trailer-less DB (returned).
type Reader struct {
	Form Form

	f    *os.File
	zdec *zstd.Decoder
	pf   *prefetchReader // decrypts and decompresses ahead; nil for a plain file
	tr   *trailerReader
}

// Read reads plaintext DB bytes. At the end it returns ErrChecksum (wrapped)
// if the trailer does not match, or an error if the length is neither a DB
// nor a DB with a trailer.
func (r *Reader) Read(p []byte) (int, error) { return r.tr.Read(p) }

// HasTrailer reports, after Read returned io.EOF, whether the DB carried
// etcd's sha256 trailer (which then matched).
func (r *Reader) HasTrailer() bool { return r.tr.hasTrailer }

// Size is the number of DB bytes returned so far (the trailer excluded).
func (r *Reader) Size() int64 { return r.tr.n }

// Close releases the decoder and the file.
func (r *Reader) Close() error {
	if r.pf != nil {
		r.pf.CloseAndWait() // it reads the decoder and the file
	}
	if r.zdec != nil {
		r.zdec.Close()
	}
	return r.f.Close()
}

// Open returns a reader of the plaintext DB from a snapshot file, whatever
// its form: a plain etcd snapshot (with or without etcd's 32-byte sha256
// trailer), zstd-compressed, age-encrypted (binary or armored), or both. The
// form is detected by magic bytes, not by file name. The trailer is checked
// at the end of the stream and not returned; a trailer-less DB (a copy of
// member/snap/db) is accepted here, and Verify and Restore refuse it.
// The returned io.ReadCloser is a *Reader.
func Open(path string, identities []age.Identity) (io.ReadCloser, error) {
	return open(path, identities)
}

func open(path string, identities []age.Identity) (_ *Reader, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open snapshot: %w", err)
	}
	r := &Reader{f: f}
	defer func() {
		if err != nil {
			r.Close()
		}
	}()

	br := bufio.NewReaderSize(&layerReader{r: f, layer: "read file"}, readBufSize)
	head, _ := br.Peek(len(armor.Header))
	switch {
	case bytes.HasPrefix(head, []byte(ageMagic)), bytes.HasPrefix(head, []byte(armor.Header)):
		if len(identities) == 0 {
			return nil, fmt.Errorf("open snapshot %s: %w", path, ErrNoIdentity)
		}
		var in io.Reader = br
		if bytes.HasPrefix(head, []byte(armor.Header)) {
			in = armor.NewReader(br)
		}
		dec, err := age.Decrypt(in, identities...)
		if err != nil {
			var nomatch *age.NoIdentityMatchError
			if errors.As(err, &nomatch) {
				return nil, fmt.Errorf("open snapshot %s: %w", path, ErrWrongIdentity)
			}
			return nil, fmt.Errorf("open snapshot %s: decrypt age header: %w", path, err)
		}
		r.Form.Encrypted = true
		br = bufio.NewReaderSize(&layerReader{r: dec, layer: "decrypt age"}, readBufSize)
		head, _ = br.Peek(len(zstdMagic))
	}
	if bytes.HasPrefix(head, []byte(zstdMagic)) {
		// One goroutine and a bounded window: a restore should not take the
		// memory the new member is about to need.
		r.zdec, err = zstd.NewReader(br,
			zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxWindow(zstdMaxWindow))
		if err != nil {
			return nil, fmt.Errorf("open snapshot %s: start zstd decoder: %w", path, err)
		}
		r.Form.Compressed = true
		br = bufio.NewReaderSize(&layerReader{r: r.zdec, layer: "decompress zstd"}, readBufSize)
	}

	meta, err := br.Peek(boltMagicOff + 4)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("open snapshot %s: %w: %d bytes are too few for a bbolt DB", path, ErrNotSnapshot, len(meta))
		}
		return nil, fmt.Errorf("open snapshot %s: read %s: %w", path, r.Form.describe(), err)
	}
	m := meta[boltMagicOff:]
	if binary.LittleEndian.Uint32(m) != boltMagic && binary.BigEndian.Uint32(m) != boltMagic {
		return nil, fmt.Errorf("open snapshot %s: %w: %s holds no bbolt magic (neither age, zstd nor bbolt)", path, ErrNotSnapshot, r.Form.describe())
	}
	var src io.Reader = br
	if r.Form.Encrypted || r.Form.Compressed {
		// Decrypting and decompressing on their own goroutine lets the
		// sha256 of the trailer check run beside them, on the other core.
		r.pf = newPrefetchReader(context.Background(), br)
		src = r.pf
	}
	r.tr = newTrailerReader(src)
	return r, nil
}

// layerReader names the layer an error comes from: "CRC check failed"
// alone does not say it was the zstd frame.
type layerReader struct {
	r     io.Reader
	layer string
}

func (l *layerReader) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("%s: %w", l.layer, err)
	}
	return n, err
}

func (f Form) describe() string {
	switch {
	case f.Encrypted && f.Compressed:
		return "decrypted, decompressed data"
	case f.Encrypted:
		return "decrypted data"
	case f.Compressed:
		return "decompressed data"
	}
	return "file"
}

// trailerReader passes a stream through but holds back its last 32 bytes,
// hashing what it passes, so the sha256 trailer etcd appends to a snapshot
// is checked in the same pass that copies the DB.
type trailerReader struct {
	src        io.Reader
	h          hash.Hash
	buf        []byte
	start, end int
	n          int64 // bytes passed on
	eof        bool
	err        error // sticky: the end result once reached
	hasTrailer bool
	trailer    []byte // the checked trailer, once hasTrailer
}

func newTrailerReader(src io.Reader) *trailerReader {
	return &trailerReader{src: src, h: sha256.New(), buf: make([]byte, readBufSize+trailerSize)}
}

func (t *trailerReader) Read(p []byte) (int, error) {
	for {
		if t.err != nil {
			return 0, t.err
		}
		if avail := t.end - t.start - trailerSize; avail > 0 {
			n := copy(p, t.buf[t.start:t.start+avail])
			t.h.Write(p[:n])
			t.start += n
			t.n += int64(n)
			return n, nil
		}
		if t.eof {
			return t.finish(p)
		}
		if err := t.fill(); err != nil {
			return 0, err
		}
	}
}

// fill reads more of the source behind the held-back bytes.
func (t *trailerReader) fill() error {
	t.end = copy(t.buf, t.buf[t.start:t.end])
	t.start = 0
	n, err := t.src.Read(t.buf[t.end:])
	t.end += n
	if errors.Is(err, io.EOF) {
		t.eof = true
	} else if err != nil {
		t.err = err
		return err
	}
	return nil
}

// WriteTo is Read without the copy into the caller's buffer: io.Copy
// hands w the bytes straight from t's buffer. A plain save writes the
// whole DB this way, one copy fewer per byte.
func (t *trailerReader) WriteTo(w io.Writer) (int64, error) {
	var total int64
	var tail [trailerSize]byte
	for {
		if t.err != nil {
			if t.err == io.EOF {
				return total, nil
			}
			return total, t.err
		}
		var b []byte
		switch avail := t.end - t.start - trailerSize; {
		case avail > 0:
			b = t.buf[t.start : t.start+avail]
			t.h.Write(b)
			t.start += avail
			t.n += int64(avail)
		case t.eof:
			n, err := t.finish(tail[:])
			if err != nil && err != io.EOF {
				return total, err
			}
			b = tail[:n]
		default:
			if err := t.fill(); err != nil {
				return total, err
			}
			continue
		}
		n, err := w.Write(b)
		total += int64(n)
		if err != nil {
			return total, err
		}
	}
}

// finish decides what the held-back bytes are. etcd does the same from the
// file length: a bbolt DB is whole pages, so a length 32 past a 512-byte
// boundary means a trailer.
func (t *trailerReader) finish(p []byte) (int, error) {
	held := t.buf[t.start:t.end]
	total := t.n + int64(len(held))
	switch total % sectorSize {
	case trailerSize:
		if !bytes.Equal(t.h.Sum(nil), held) {
			t.err = fmt.Errorf("%w (%d bytes of DB)", ErrChecksum, t.n)
			return 0, t.err
		}
		t.hasTrailer = true
		t.trailer = bytes.Clone(held)
		t.start = t.end
		t.err = io.EOF
		return 0, io.EOF
	case 0:
		n := copy(p, held)
		t.start += n
		t.n += int64(n)
		if t.start == t.end {
			t.err = io.EOF
		}
		return n, nil
	}
	t.err = fmt.Errorf("%w: %d bytes is neither whole 512-byte sectors nor that plus a 32-byte sha256 trailer: truncated?", ErrNotSnapshot, total)
	return 0, t.err
}
