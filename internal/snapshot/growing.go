package snapshot

import (
	"io"
	"os"
	"sync"
)

// growingFile lets the bbolt walk read a snapshot while the stream is
// still writing it, so checking a snapshot costs little more than taking
// it. ReadAt waits until the writer has written past the range it asks
// for, or has finished. The walk needs the meta pages first and then the
// pages in tree order; a stream written front to back supplies them soon
// enough, and a page the writer never reaches fails the walk once the
// writer has finished, as it would on the finished file.
type growingFile struct {
	f *os.File // a read-only handle of its own

	mu      sync.Mutex
	cond    sync.Cond
	written int64
	done    bool
}

func openGrowing(path string) (*growingFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	g := &growingFile{f: f}
	g.cond.L = &g.mu
	return g, nil
}

// wrote records n more bytes in the file.
func (g *growingFile) wrote(n int) {
	g.mu.Lock()
	g.written += int64(n)
	g.mu.Unlock()
	g.cond.Broadcast()
}

// finish says the writer is done, or gave up: readers waiting for more
// read what there is.
func (g *growingFile) finish() {
	g.mu.Lock()
	g.done = true
	g.mu.Unlock()
	g.cond.Broadcast()
}

func (g *growingFile) ReadAt(p []byte, off int64) (int, error) {
	g.mu.Lock()
	for !g.done && g.written < off+int64(len(p)) {
		g.cond.Wait()
	}
	g.mu.Unlock()
	return g.f.ReadAt(p, off)
}

func (g *growingFile) size() (int64, error) {
	g.mu.Lock()
	for !g.done {
		g.cond.Wait()
	}
	g.mu.Unlock()
	return fileSource{g.f}.size()
}

func (g *growingFile) Close() error { return g.f.Close() }

// writer counts what w writes into the file g reads.
func (g *growingFile) writer(w io.Writer) io.Writer { return &growingWriter{w: w, g: g} }

type growingWriter struct {
	w io.Writer
	g *growingFile
}

func (gw *growingWriter) Write(p []byte) (int, error) {
	n, err := gw.w.Write(p)
	gw.g.wrote(n)
	return n, err
}
