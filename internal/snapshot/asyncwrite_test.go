package snapshot

import (
	"bytes"
	"errors"
	"testing"
)

func TestAsyncWriterKeepsOrder(t *testing.T) {
	var out bytes.Buffer
	a := newAsyncWriter(&out)
	var want bytes.Buffer
	for i := range 3000 {
		p := bytes.Repeat([]byte{byte(i)}, 1+i%3000)
		want.Write(p)
		if _, err := a.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), want.Bytes()) {
		t.Fatalf("wrote %d bytes, want the %d written, in order", out.Len(), want.Len())
	}
}

// failAfter fails every write once n bytes were written, as a full disk does.
type failAfter struct{ n int }

var errDiskFull = errors.New("no space left on device")

func (f *failAfter) Write(p []byte) (int, error) {
	if f.n < len(p) {
		return 0, errDiskFull
	}
	f.n -= len(p)
	return len(p), nil
}

func TestAsyncWriterReportsTheWriteError(t *testing.T) {
	a := newAsyncWriter(&failAfter{n: asyncBufSize})
	p := make([]byte, 64<<10)
	var werr error
	for range 200 { // 12.5 MiB: far past the failure and the buffers
		if _, werr = a.Write(p); werr != nil {
			break
		}
	}
	if !errors.Is(werr, errDiskFull) {
		t.Errorf("Write kept succeeding after the writer failed: %v", werr)
	}
	if err := a.Close(); !errors.Is(err, errDiskFull) {
		t.Errorf("Close = %v, want the write error", err)
	}
}
