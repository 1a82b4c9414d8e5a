package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// progress draws a one-line progress bar on a terminal, and a line per
// quarter elsewhere.
type progress struct {
	mu    sync.Mutex
	w     io.Writer
	label string
	total int
	tty   bool
	last  time.Time
	step  int
	start time.Time
}

func newProgress(w io.Writer, label string, total int) *progress {
	tty := false
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	return &progress{w: w, label: label, total: total, tty: tty, start: time.Now()}
}

// begin restarts the clock, for a bar created before its work starts.
func (p *progress) begin() {
	p.mu.Lock()
	p.start = time.Now()
	p.mu.Unlock()
}

func (p *progress) set(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.total <= 0 {
		return
	}
	frac := float64(n) / float64(p.total)
	if p.tty {
		if time.Since(p.last) < 100*time.Millisecond && n < p.total {
			return
		}
		p.last = time.Now()
		const width = 30
		done := int(frac * width)
		fmt.Fprintf(p.w, "\r%-12s [%s%s] %3.0f%% %d/%d", p.label, strings.Repeat("#", done), strings.Repeat(".", width-done), frac*100, n, p.total)
		return
	}
	if q := int(frac * 4); q > p.step {
		p.step = q
		fmt.Fprintf(p.w, "%s: %d/%d (%.0f%%)\n", p.label, n, p.total, frac*100)
	}
}

func (p *progress) done() {
	p.set(p.total)
	p.mu.Lock()
	defer p.mu.Unlock()
	el := time.Since(p.start)
	if p.tty {
		fmt.Fprintln(p.w)
	}
	fmt.Fprintf(p.w, "%s: %d in %s (%.0f/s)\n", p.label, p.total, el.Round(time.Millisecond), float64(p.total)/el.Seconds())
}
