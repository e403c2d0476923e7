package snapshot

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// Writes cross the writeback threshold several times; the file holds
// exactly what was written, and stop may be called twice (the explicit
// call before the fsync, and the deferred one).
func TestWritebackFileKeepsEveryByteAndStopsOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := &writebackFile{f: f}
	var want bytes.Buffer
	chunk := make([]byte, 1<<20)
	for i := range 3*writebackEvery/len(chunk) + 5 {
		for j := range chunk {
			chunk[j] = byte(i + j)
		}
		if _, err := w.Write(chunk); err != nil {
			t.Fatal(err)
		}
		want.Write(chunk)
	}
	if w.kick == nil {
		t.Fatal("no writeback was asked for after three thresholds")
	}
	w.stop()
	w.stop()
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("file differs from what was written (%d vs %d bytes, %v)", len(got), want.Len(), err)
	}
}
