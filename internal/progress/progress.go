// Package progress draws one line of progress on a terminal, redrawn in
// place with \r: bytes so far, the total and a bar when known, the rate and
// the time taken. Where the output is not a terminal (a pipe, a file, the
// journal) it writes nothing, so logs and scripts see only the result.
package progress

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dustin/go-humanize"
)

// interval is how often the line is redrawn. Work that ends sooner shows
// no line at all.
const interval = 200 * time.Millisecond

// barWidth is the number of cells between the brackets of the bar.
const barWidth = 20

// Bar is one progress line. Its methods may be called from any goroutine;
// on a Bar that does not draw they only record.
type Bar struct {
	label    string
	n, total atomic.Int64
	poll     atomic.Pointer[func() int64]

	w     io.Writer // nil: draws nothing
	width int       // terminal columns; 0 when unknown
	start time.Time
	now   func() time.Time

	stop  chan struct{}
	done  chan struct{}
	once  sync.Once
	shown int // runes on screen; touched only by the drawing goroutine, then by Stop after it ended
}

// New returns a Bar labelled label that draws on w every 200ms, from now
// until Stop, when w is a terminal, and writes nothing otherwise.
func New(w io.Writer, label string) *Bar {
	f, ok := w.(*os.File)
	if !ok || !isTerminal(f) {
		return newBar(nil, label, 0, time.Now)
	}
	b := newBar(w, label, width(f), time.Now)
	b.run(interval)
	return b
}

func newBar(w io.Writer, label string, width int, now func() time.Time) *Bar {
	return &Bar{label: label, w: w, width: width, start: now(), now: now,
		stop: make(chan struct{}), done: make(chan struct{})}
}

// Active reports whether the Bar draws, so callers can skip work that
// only the line would show.
func (b *Bar) Active() bool { return b.w != nil }

// Set records n bytes done so far.
func (b *Bar) Set(n int64) { b.n.Store(n) }

// Add records n more bytes done.
func (b *Bar) Add(n int64) { b.n.Add(n) }

// SetTotal records how many bytes there are in all; 0 means unknown.
func (b *Bar) SetTotal(n int64) { b.total.Store(n) }

// Poll makes every redraw take the bytes done from f, for work that
// reports no progress of its own but whose output can be measured (the
// size of a file being written).
func (b *Bar) Poll(f func() int64) { b.poll.Store(&f) }

// Stop stops redrawing and erases the line, so what the command prints
// next starts on a clean line. It may be called more than once.
func (b *Bar) Stop() {
	b.once.Do(func() {
		close(b.stop)
		if b.w == nil {
			return
		}
		<-b.done
		if b.shown > 0 {
			fmt.Fprint(b.w, "\r"+strings.Repeat(" ", b.shown)+"\r")
		}
	})
}

func (b *Bar) run(every time.Duration) {
	go func() {
		defer close(b.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-b.stop:
				return
			case <-t.C:
				b.draw()
			}
		}
	}()
}

// draw writes the current line over the previous one.
func (b *Bar) draw() {
	if f := b.poll.Load(); f != nil {
		b.n.Store((*f)())
	}
	line := []rune(render(b.label, b.n.Load(), b.total.Load(), b.now().Sub(b.start)))
	// A line as wide as the terminal wraps, and \r then returns to the
	// second row: every redraw would leave a line behind.
	if b.width > 0 && len(line) >= b.width {
		line = line[:b.width-1]
	}
	pad := ""
	if len(line) < b.shown {
		pad = strings.Repeat(" ", b.shown-len(line))
	}
	fmt.Fprint(b.w, "\r"+string(line)+pad)
	b.shown = len(line)
}

// render is the line for n of total bytes (total 0: unknown) after
// elapsed, such as
//
//	saving x.db  [=========>          ]  12 MiB / 25 MiB  48%  6.0 MiB/s  2s  ETA 2s
//
// With nothing counted yet it shows the label and the time only.
func render(label string, n, total int64, elapsed time.Duration) string {
	parts := []string{label}
	if n > 0 || total > 0 {
		if total > 0 {
			done := min(n, total)
			parts = append(parts, bar(done, total),
				humanize.IBytes(uint64(done))+" / "+humanize.IBytes(uint64(total)),
				fmt.Sprintf("%d%%", done*100/total))
		} else {
			parts = append(parts, humanize.IBytes(uint64(n)))
		}
	}
	var rate float64
	if s := elapsed.Seconds(); s > 0 && n > 0 {
		rate = float64(n) / s
		parts = append(parts, humanize.IBytes(uint64(rate))+"/s")
	}
	parts = append(parts, elapsed.Truncate(time.Second).String())
	if total > 0 && n < total && rate > 0 {
		eta := time.Duration(float64(total-n) / rate * float64(time.Second))
		parts = append(parts, "ETA "+eta.Round(time.Second).String())
	}
	return strings.Join(parts, "  ")
}

func bar(n, total int64) string {
	full := int(n * barWidth / total)
	s := strings.Repeat("=", full)
	if full < barWidth {
		s += ">" + strings.Repeat(" ", barWidth-full-1)
	}
	return "[" + s + "]"
}
