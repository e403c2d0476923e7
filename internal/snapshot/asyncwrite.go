package snapshot

import (
	"io"
	"sync"
)

// asyncWriter writes to w on its own goroutine, so writing the plaintext
// copy of a compressed or encrypted snapshot runs beside compression and
// encryption instead of after them. Write copies p (a few buffers of
// asyncBufSize in flight at most) and fails once a write to w has failed;
// Close waits for everything to be written and returns the first error.
type asyncWriter struct {
	w     io.Writer
	free  chan []byte
	queue chan []byte
	done  chan struct{}
	cur   []byte

	mu  sync.Mutex
	err error
}

const (
	asyncBuffers = 4
	asyncBufSize = 1 << 20
)

func newAsyncWriter(w io.Writer) *asyncWriter {
	a := &asyncWriter{
		w:     w,
		free:  make(chan []byte, asyncBuffers),
		queue: make(chan []byte, asyncBuffers),
		done:  make(chan struct{}),
	}
	for range asyncBuffers - 1 {
		a.free <- make([]byte, 0, asyncBufSize)
	}
	a.cur = make([]byte, 0, asyncBufSize)
	go a.run()
	return a
}

func (a *asyncWriter) run() {
	defer close(a.done)
	for b := range a.queue {
		if a.failed() == nil {
			if _, err := a.w.Write(b); err != nil {
				a.mu.Lock()
				a.err = err
				a.mu.Unlock()
			}
		}
		a.free <- b[:0]
	}
}

func (a *asyncWriter) failed() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.err
}

func (a *asyncWriter) Write(p []byte) (int, error) {
	if err := a.failed(); err != nil {
		return 0, err
	}
	n := len(p)
	for len(p) > 0 {
		c := copy(a.cur[len(a.cur):cap(a.cur)], p)
		a.cur = a.cur[:len(a.cur)+c]
		p = p[c:]
		if len(a.cur) == cap(a.cur) {
			a.queue <- a.cur
			a.cur = <-a.free
		}
	}
	return n, nil
}

// Close writes what is buffered, stops the goroutine and returns the first
// write error. It must be called exactly once, also on failure paths.
func (a *asyncWriter) Close() error {
	if len(a.cur) > 0 {
		a.queue <- a.cur
		a.cur = nil
	}
	close(a.queue)
	<-a.done
	return a.failed()
}
