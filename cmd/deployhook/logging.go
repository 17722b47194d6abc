package main

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/apcera/deployhook/runitlog"
)

// newLog returns the platform-format logger that writes to w, tagged with
// nothing: the platform's format has no fields.
func newLog(w io.Writer) *logrus.Entry {
	return logrus.NewEntry(runitlog.NewLogger(w))
}

// progress draws "records done, records/s, ETA" on one terminal line. Log
// lines written through it clear the bar first, so both stay readable.
type progress struct {
	mu      sync.Mutex
	w       io.Writer
	start   time.Time
	last    time.Time
	drawn   bool
	done    int64
	total   int64
	minStep time.Duration
}

func newProgress(w io.Writer) *progress {
	return &progress{w: w, start: time.Now(), minStep: 200 * time.Millisecond}
}

// Update is migrate.Options.Progress.
func (p *progress) Update(done, total int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done, p.total = done, total
	now := time.Now()
	if done == 0 {
		// The copy starts (again, on a new snapshot): rate and ETA count
		// from here, not from the lock wait before it.
		p.start = now
	}
	if now.Sub(p.last) < p.minStep && done < total {
		return
	}
	p.last = now
	p.draw(now)
}

func (p *progress) draw(now time.Time) {
	elapsed := now.Sub(p.start).Seconds()
	rate := 0.0
	if elapsed > 0 {
		rate = float64(p.done) / elapsed
	}
	eta := "?"
	if rate > 0 && p.total >= p.done {
		eta = (time.Duration(float64(p.total-p.done)/rate) * time.Second).Round(time.Second).String()
	}
	pct := 0.0
	if p.total > 0 {
		pct = 100 * float64(p.done) / float64(p.total)
	}
	fmt.Fprintf(p.w, "\r\033[K%d/%d records (%.0f%%), %.0f records/s, ETA %s", p.done, p.total, pct, rate, eta)
	p.drawn = true
}

// Write passes a log line through, redrawing the bar under it.
func (p *progress) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		fmt.Fprint(p.w, "\r\033[K")
	}
	n, err := p.w.Write(b)
	if p.drawn {
		p.draw(time.Now())
	}
	return n, err
}

// Finish leaves the terminal on a fresh line.
func (p *progress) Finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		fmt.Fprint(p.w, "\r\033[K")
		p.drawn = false
	}
}
