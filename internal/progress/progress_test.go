package progress

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestNewWritesNothingWhenNotATerminal(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var buf bytes.Buffer
	for name, w := range map[string]interface{ Write([]byte) (int, error) }{"file": f, "buffer": &buf} {
		b := New(w, "saving")
		b.SetTotal(100 << 20)
		b.Set(10 << 20)
		time.Sleep(3 * interval)
		b.Stop()
		b.Stop()
		if name == "buffer" && buf.Len() > 0 {
			t.Errorf("buffer: got %q, want nothing", buf.String())
		}
	}
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != 0 {
		t.Errorf("file: got %d bytes, want nothing", fi.Size())
	}
}

func TestBarRendersALineInPlaceOnATerminal(t *testing.T) {
	now := time.Unix(0, 0)
	var buf bytes.Buffer
	b := newBar(&buf, "saving x.db", 200, func() time.Time { return now })
	b.SetTotal(100 << 20)
	b.Set(25 << 20)
	now = now.Add(5 * time.Second)
	b.draw()
	want := "\rsaving x.db  [=====>              ]  25 MiB / 100 MiB  25%  5.0 MiB/s  5s  ETA 15s"
	if got := buf.String(); got != want {
		t.Errorf("first draw: got %q, want %q", got, want)
	}

	// A shorter line blanks what is left of the longer one.
	buf.Reset()
	b.SetTotal(0)
	b.draw()
	got := buf.String()
	if !strings.HasPrefix(got, "\rsaving x.db  25 MiB  5.0 MiB/s  5s ") || len(got) != len(want) {
		t.Errorf("second draw: got %q, want the shorter line padded to %d bytes", got, len(want))
	}
}

func TestBarPollsWhenTold(t *testing.T) {
	var buf bytes.Buffer
	b := newBar(&buf, "restoring", 0, time.Now)
	b.Poll(func() int64 { return 3 << 20 })
	b.draw()
	if !strings.Contains(buf.String(), "3.0 MiB") {
		t.Errorf("got %q, want the polled 3.0 MiB", buf.String())
	}
}

func TestBarCutsTheLineToTheTerminalWidth(t *testing.T) {
	var buf bytes.Buffer
	b := newBar(&buf, strings.Repeat("x", 100), 40, time.Now)
	b.draw()
	if got := len(buf.String()); got != 1+39 {
		t.Errorf("got %d bytes, want \\r and 39 columns", got)
	}
}

func TestStopErasesTheLine(t *testing.T) {
	var buf bytes.Buffer
	b := newBar(&buf, "saving", 80, time.Now)
	b.Set(1 << 20)
	b.run(time.Millisecond)
	time.Sleep(20 * time.Millisecond)
	b.Stop()
	out := buf.String()
	i := strings.LastIndex(out, "\r"+strings.Repeat(" ", b.shown)+"\r")
	if b.shown == 0 || i < 0 || i+b.shown+2 != len(out) {
		t.Errorf("got %q, want it to end with the line blanked out", out)
	}
}

func TestRender(t *testing.T) {
	for _, tc := range []struct {
		name     string
		n, total int64
		elapsed  time.Duration
		want     string
	}{
		{"nothing counted", 0, 0, 3 * time.Second, "l  3s"},
		{"no total", 2 << 20, 0, 2 * time.Second, "l  2.0 MiB  1.0 MiB/s  2s"},
		{"done", 8 << 20, 8 << 20, 4 * time.Second, "l  [====================]  8.0 MiB / 8.0 MiB  100%  2.0 MiB/s  4s"},
		{"more than the total", 9 << 20, 8 << 20, time.Second, "l  [====================]  8.0 MiB / 8.0 MiB  100%  9.0 MiB/s  1s"},
		{"total known, nothing yet", 0, 8 << 20, 0, "l  [>                   ]  0 B / 8.0 MiB  0%  0s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := render("l", tc.n, tc.total, tc.elapsed); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}
