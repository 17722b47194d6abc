package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/apcera/deployhook/migrate"
)

// A timeline records when an in-process migration's requests to store3
// and its log lines happened, so that the wall clock outside the copy's
// writes is split by what the migration waited for: the lock, the count,
// the last bucket's check, the freeze, the cutover's pass, .done. The
// migration is the one the binary runs; only its KV, Locker and Logger
// are wrapped.
type timeline struct {
	prefix string
	start  time.Time
	mu     sync.Mutex
	events []event
	end    time.Duration // when Run returned
}

// event is one request (at its start, with how long it took) or log line.
type event struct {
	at, took time.Duration
	kind     string // get, keys, scan, index, limits, txn, copy, done, lock, unlock, log, stored
	what     string
}

func (e event) done() time.Duration { return e.at + e.took }

func newTimeline(prefix string) *timeline { return &timeline{prefix: prefix} }

// begin starts the clock; the events are offsets from it.
func (t *timeline) begin() { t.start = time.Now() }

// finish records when the migration returned.
func (t *timeline) finish() { t.end = time.Since(t.start) }

func (t *timeline) add(started time.Time, kind, what string) {
	e := event{at: started.Sub(t.start), took: time.Since(started), kind: kind, what: what}
	t.mu.Lock()
	t.events = append(t.events, e)
	t.mu.Unlock()
}

// wrap puts the timeline between the migrator and its stores and logger.
func (t *timeline) wrap(m *migrate.Migrator) {
	m.KV = timelineKV{m.KV, t}
	m.Locker = timelineLocker{m.Locker, t}
	m.Opts.Log = timelineLog{t}
	progress := m.Opts.Progress
	m.Opts.Progress = func(done, total int64) {
		if done > 0 {
			t.add(time.Now(), "stored", fmt.Sprintf("%d of %d records", done, total))
		}
		if progress != nil {
			progress(done, total)
		}
	}
}

// timelineKV records every request; a transaction that only sets keys
// outside migration/ is one of the copy's (or the catch-up's) writes.
// The copy's commits are timed by its progress (stored), which counts
// the copy's records alone.
type timelineKV struct {
	migrate.KV
	t *timeline
}

func (k timelineKV) Get(ctx context.Context, key string) (*migrate.Pair, error) {
	defer k.t.add(time.Now(), "get", key)
	return k.KV.Get(ctx, key)
}

func (k timelineKV) Keys(ctx context.Context, prefix, sep string) ([]string, error) {
	defer k.t.add(time.Now(), "keys", prefix)
	return k.KV.Keys(ctx, prefix, sep)
}

func (k timelineKV) Scan(ctx context.Context, prefix string, fn func(*migrate.Pair) error) error {
	defer k.t.add(time.Now(), "scan", prefix)
	return k.KV.Scan(ctx, prefix, fn)
}

func (k timelineKV) Index(ctx context.Context, prefix string) (uint64, error) {
	defer k.t.add(time.Now(), "index", prefix)
	return k.KV.Index(ctx, prefix)
}

func (k timelineKV) Limits(ctx context.Context) migrate.Limits {
	defer k.t.add(time.Now(), "limits", "")
	return k.KV.Limits(ctx)
}

func (k timelineKV) Txn(ctx context.Context, f migrate.Fence, ops []migrate.Op) error {
	defer k.t.add(time.Now(), txnKind(k.t.prefix, ops), txnWhat(ops))
	return k.KV.Txn(ctx, f, ops)
}

// txnKind is "done" for the transaction that writes .done, "copy" for
// one of sets outside migration/, else "txn".
func txnKind(prefix string, ops []migrate.Op) string {
	kind := "copy"
	for _, op := range ops {
		switch {
		case op.Verb == migrate.VerbSet && op.Key == migrate.DoneKey(prefix):
			return "done"
		case op.Verb != migrate.VerbSet || strings.HasPrefix(op.Key, prefix+"migration/"):
			kind = "txn"
		}
	}
	return kind
}

func txnWhat(ops []migrate.Op) string {
	if len(ops) == 0 {
		return "no ops"
	}
	return fmt.Sprintf("%d ops, the last %s %s", len(ops), ops[len(ops)-1].Verb, ops[len(ops)-1].Key)
}

type timelineLocker struct {
	migrate.Locker
	t *timeline
}

func (l timelineLocker) TryLock(ctx context.Context, key string, wait time.Duration) (migrate.Lock, error) {
	defer l.t.add(time.Now(), "lock", key)
	lk, err := l.Locker.TryLock(ctx, key, wait)
	if err != nil {
		return nil, err
	}
	return timelineLock{lk, l.t}, nil
}

type timelineLock struct {
	migrate.Lock
	t *timeline
}

func (l timelineLock) Unlock(ctx context.Context) error {
	defer l.t.add(time.Now(), "unlock", "")
	return l.Lock.Unlock(ctx)
}

type timelineLog struct{ t *timeline }

func (l timelineLog) Infof(f string, a ...interface{})  { l.t.line(f, a...) }
func (l timelineLog) Warnf(f string, a ...interface{})  { l.t.line(f, a...) }
func (l timelineLog) Errorf(f string, a ...interface{}) { l.t.line(f, a...) }

func (t *timeline) line(f string, a ...interface{}) { t.add(time.Now(), "log", fmt.Sprintf(f, a...)) }

// segments are the consecutive stretches of one migration's wall clock,
// each ending at an event every online migration has.
var segments = []string{
	"start to the copy's first commit (checks, lock, capture, snapshot and count, .status)",
	"the copy's first commit to its last",
	"to the end of the reads of store3 after it (the check of the bucket the copy completed last)",
	"to store2 frozen",
	"to .done written (last catch-up round, the cutover's pass)",
	"to the return (lock released, capture dropped)",
}

// split returns the lengths of segments, or an error naming the event the
// timeline lacks.
func (t *timeline) split() ([]time.Duration, error) {
	var firstCopy, lastCopy, frozen, done time.Duration = -1, -1, -1, -1
	for _, e := range t.events {
		switch {
		case e.kind == "stored":
			if firstCopy < 0 {
				firstCopy = e.at
			}
			lastCopy = max(lastCopy, e.at)
		case e.kind == "log" && strings.HasPrefix(e.what, "store2 frozen for writes"):
			frozen = e.at
		case e.kind == "done":
			done = e.done()
		}
	}
	for _, c := range []struct {
		at   time.Duration
		what string
	}{{firstCopy, "commit of the copy"}, {frozen, "freeze"}, {done, ".done write"}} {
		if c.at < 0 {
			return nil, fmt.Errorf("the timeline has no %s", c.what)
		}
	}
	// The reads of store3 that end after the last commit, before the
	// freeze: the check of the bucket the copy completed last.
	checked := lastCopy
	for _, e := range t.events {
		switch e.kind {
		case "get", "keys", "scan", "index":
			if e.done() > checked && e.done() < frozen {
				checked = e.done()
			}
		}
	}
	ends := []time.Duration{firstCopy, lastCopy, checked, frozen, done, t.end}
	out := make([]time.Duration, len(ends))
	var from time.Duration
	for i, at := range ends {
		out[i], from = at-from, at
	}
	return out, nil
}

// print writes the timeline, each request but the copy's transactions and
// the listings on a line, the copy's transactions and each bucket
// directory's listings summed up on one.
func (t *timeline) print(w io.Writer) {
	type span struct {
		first, last time.Duration
		n           int
		longest     event
	}
	spans := map[string]*span{}
	var lines []event
	for _, e := range t.events {
		key := ""
		switch e.kind {
		case "stored":
			continue
		case "copy":
			key = "transactions of sets outside migration/ (the copy's, the catch-up's)"
		case "scan":
			rel := strings.TrimPrefix(e.what, t.prefix)
			if i := strings.IndexByte(rel, '/'); i >= 0 {
				rel = rel[:i+1]
			}
			key = "listings of " + t.prefix + rel
		default:
			lines = append(lines, e)
			continue
		}
		s := spans[key]
		if s == nil {
			s = &span{first: e.at}
			spans[key] = s
			lines = append(lines, event{at: e.at, kind: "span", what: key})
		}
		s.n++
		s.first, s.last = min(s.first, e.at), max(s.last, e.done())
		if e.took > s.longest.took {
			s.longest = e
		}
	}
	slices.SortStableFunc(lines, func(a, b event) int { return cmp.Compare(a.at, b.at) })
	ms := func(d time.Duration) string { return fmt.Sprintf("%8.1f ms", float64(d.Microseconds())/1000) }
	for _, e := range lines {
		if e.kind == "span" {
			s := spans[e.what]
			fmt.Fprintf(w, "%s  %s: %d, until %s, the longest %s (%s)\n", ms(s.first), e.what, s.n, strings.TrimSpace(ms(s.last)), strings.TrimSpace(ms(s.longest.took)), s.longest.what)
			continue
		}
		took := ""
		if e.kind != "log" {
			took = fmt.Sprintf(" (%s)", strings.TrimSpace(ms(e.took)))
		}
		fmt.Fprintf(w, "%s  %s%s\n", ms(e.at), strings.TrimSpace(e.kind+" "+e.what), took)
	}
	fmt.Fprintf(w, "%s  returned\n", ms(t.end))
}

// timelines migrates runs times more in this process on t, each after the
// bench's reset (store3 wiped, store2 unfrozen) and a quiet machine,
// writes each timeline to the log, and prints the medians of the segments.
func (b *bencher) timelines(ctx context.Context, t *topology, runs int) error {
	split := make([][]float64, len(segments)+1) // the segments, then the whole run
	for i := 1; i <= runs; i++ {
		if err := b.reset(ctx, t); err != nil {
			return err
		}
		waitQuiet("an in-process migration with its timeline")
		tl := newTimeline(prefix)
		if _, err := inProcess(ctx, b.pg, t.addr, t.client, b.n, 0, "", false, tl); err != nil {
			return err
		}
		var buf strings.Builder
		tl.print(&buf)
		logf("timeline %d of the default migration in process on %s:\n%s", i, t.name(), buf.String())
		d, err := tl.split()
		if err != nil {
			return fmt.Errorf("timeline %d: %w", i, err)
		}
		for j, x := range d {
			split[j] = append(split[j], x.Seconds()*1000)
		}
		split[len(segments)] = append(split[len(segments)], tl.end.Seconds()*1000)
	}
	if err := b.reset(ctx, t); err != nil {
		return err
	}
	fmt.Printf("\nWhere the wall clock of the default migration went, in process on %s, %d runs (the log has each timeline):\n\n| stretch | median, ms | range, ms |\n| --- | ---: | --- |\n", t.name(), runs)
	for j, xs := range split {
		name := "the whole run"
		if j < len(segments) {
			name = segments[j]
		}
		fmt.Printf("| %s | %.0f | %.0f to %.0f |\n", name, median(xs), slices.Min(xs), slices.Max(xs))
	}
	return nil
}
