package snapshot

import (
	"context"
	"io"
)

// prefetchReader reads its source on its own goroutine, a few buffers
// ahead, so receiving the stream (gRPC framing and protobuf decoding) runs
// on one core while hashing, compressing and writing run on the other. A
// plain save is otherwise one thread doing everything in turn.
type prefetchReader struct {
	full  chan chunk
	empty chan []byte
	stop  context.CancelFunc
	done  chan struct{}

	cur []byte // unread part of the chunk being consumed
	buf []byte // that chunk's whole buffer, returned when consumed
	err error

	fillErr error // why fill stopped; read only after done is closed
}

type chunk struct {
	b   []byte
	err error
}

const (
	prefetchBuffers = 4
	prefetchBufSize = 1 << 20
)

// newPrefetchReader starts reading src. Close stops the goroutine; the
// caller closes src itself (closing it unblocks a read in flight).
func newPrefetchReader(ctx context.Context, src io.Reader) *prefetchReader {
	ctx, stop := context.WithCancel(ctx)
	p := &prefetchReader{
		full:  make(chan chunk, prefetchBuffers),
		empty: make(chan []byte, prefetchBuffers),
		stop:  stop,
		done:  make(chan struct{}),
	}
	for range prefetchBuffers {
		p.empty <- make([]byte, prefetchBufSize)
	}
	go p.fill(ctx, src)
	return p
}

func (p *prefetchReader) fill(ctx context.Context, src io.Reader) {
	defer close(p.done)
	for {
		var b []byte
		select {
		case b = <-p.empty:
		case <-ctx.Done():
			p.fillErr = ctx.Err()
			return
		}
		// Fill the buffer well: the gRPC stream hands out 32 KiB messages,
		// and each channel hop costs more than a copy of that size.
		n, err := io.ReadAtLeast(src, b, len(b)/2)
		if err == io.ErrUnexpectedEOF {
			err = io.EOF
		}
		// Never blocks: full has room for every buffer there is.
		p.full <- chunk{b: b[:n], err: err}
		if err != nil {
			p.fillErr = err
			return
		}
	}
}

func (p *prefetchReader) Read(out []byte) (int, error) {
	if err := p.fillCur(); err != nil {
		return 0, err
	}
	n := copy(out, p.cur)
	p.cur = p.cur[n:]
	return n, nil
}

// Next returns the rest of the current buffer, without a copy; it is the
// caller's until the next call of Next or Read.
func (p *prefetchReader) Next() ([]byte, error) {
	if err := p.fillCur(); err != nil {
		return nil, err
	}
	b := p.cur
	p.cur = nil
	return b, nil
}

// fillCur makes cur hold unread bytes, or returns the error that ended the
// stream.
func (p *prefetchReader) fillCur() error {
	for len(p.cur) == 0 {
		if p.err != nil {
			return p.err
		}
		if p.buf != nil {
			p.empty <- p.buf[:cap(p.buf)]
			p.buf = nil
		}
		var c chunk
		select {
		case c = <-p.full:
		case <-p.done:
			select {
			case c = <-p.full: // what fill sent before it stopped comes first
			default:
				c = chunk{err: p.fillErr}
			}
		}
		p.cur, p.buf, p.err = c.b, c.b, c.err
	}
	return nil
}

// Close stops the reading goroutine, unless it is blocked in a read of src:
// then it ends once the caller closes src.
func (p *prefetchReader) Close() error {
	p.stop()
	return nil
}

// CloseAndWait stops the reading goroutine and waits for it to end, so the
// caller may then close src. Only for sources whose reads return on their
// own, such as files: a read blocked on a network stream would hold it.
func (p *prefetchReader) CloseAndWait() {
	p.stop()
	<-p.done
}
