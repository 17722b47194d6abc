package migrate

import (
	"context"
	"strings"
	"sync"
	"time"
)

// Verification lists store3 while the copy still runs, a bucket at a
// time, as store2 streams its records a bucket at a time
// (Snapshot.StreamByBucket): a bucket is listed once its last record was streamed
// and every batch holding one of its records was committed. The
// comparison after the copy (the cutover's pass, or offline the check that
// store2 did not change) takes a bucket's tallies from its check instead
// of listing it again when the bucket's index (KV.Index) is still the one
// read just before the check listed it: nothing under the bucket was set
// or deleted since. Otherwise it lists as before. The bucket the copy
// completes last is checked once the copy has ended, before the catch-up
// and the freeze: with nothing writing, the cutover's pass lists nothing,
// and store2 stays frozen for less.
//
// What an unchanged index proves, and its limits: every set raises the
// ModifyIndex of its key, every delete leaves a tombstone under the key's
// own prefix, and the index is the highest of both, so any write under the
// bucket since the check moves it, but two: a tombstone reaped (Consul
// keeps them 15 minutes: a check stands for maxCheckAge), and a tree
// delete of a prefix shorter than the bucket's, whose tombstone lies
// outside it. That one empties the bucket, and a bucket that holds no key
// any more is taken as empty, whatever its check found (scanStore;
// TestACheckStandsOnlyOnKeysThatAreThere, TestAnEmptiedBucketIsNotReused).

// maxCheckAge bounds how old a check may be and still stand: Consul keeps
// the tombstone of a deleted key, which holds the index up, for 15
// minutes (not configurable in 1.16), and a delete whose tombstone was
// reaped no longer moves the index.
const maxCheckAge = 10 * time.Minute

// bucketCheck is what one bucket directory of store3 held when the copy
// had committed all its records.
type bucketCheck struct {
	dir      string // prefix + escaped bucket + "/"
	index    uint64 // KV.Index of the bucket, read before the listing
	at       time.Time
	tallies  map[string]*Tally // by chunk id; empty chunks absent
	foreign  []foreignKey      // named
	nForeign int
}

// indexPrefix is what a bucket's index is read under: the directory
// without its slash, so that Consul rolls every key of the bucket up into
// one (see KV.Index). It also covers buckets whose escaped names extend
// this one's: a write there makes the check not stand, which costs a
// listing, never a missed difference.
func (c *bucketCheck) indexPrefix() string { return strings.TrimSuffix(c.dir, "/") }

// checkBucket lists the bucket directory dir, whose chunks stats holds
// (what the copy saw of them), after reading its index (a write between
// the two moves the index past the one read). It returns nil when the
// listing failed.
func checkBucket(ctx context.Context, kv KV, prefix, dir string, stats chunkStats) *bucketCheck {
	c := &bucketCheck{dir: dir, at: time.Now()}
	var err error
	if c.index, err = kv.Index(ctx, c.indexPrefix()); err != nil {
		return nil
	}
	tallies, n, err := scanStore(ctx, kv, prefix, stats, scanScope{only: dir}, func(f foreignKey) {
		c.foreign = append(c.foreign, f)
	})
	if err != nil {
		return nil
	}
	c.tallies, c.nForeign = tallies, n
	return c
}

// standingChecks returns the checks whose bucket's index is unchanged,
// by directory. The indexes are read side by side: Consul walks every key
// of a bucket to compute its index, and store2 stays frozen meanwhile.
func (r *run) standingChecks(ctx context.Context) map[string]*bucketCheck {
	checks := r.checks.get()
	if len(checks) == 0 {
		return nil
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	out := map[string]*bucketCheck{}
	for dir, c := range checks {
		if time.Since(c.at) > maxCheckAge {
			continue
		}
		wg.Go(func() {
			if idx, err := r.m.KV.Index(ctx, c.indexPrefix()); err == nil && idx == c.index {
				mu.Lock()
				out[dir] = c
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return out
}

// earlyChecks runs the checks while the copy goes on: buckets become
// ready as the copy streams their last record (ready), and checkable once
// every batch up to that record's was committed (committed); one worker
// checks them in that order, until finish.
type earlyChecks struct {
	r      *run
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	below   int64          // every batch numbered below it is committed
	above   map[int64]bool // committed batches numbered above below
	waiting []readyBucket  // in batch order
	checks  map[string]*bucketCheck
	stopped bool // the copy has ended: the worker exits once nothing is left to check
	kick    chan struct{}
	done    chan struct{}
}

// readyBucket is a bucket whose records were all streamed, into batches
// numbered batch or less.
type readyBucket struct {
	dir   string
	batch int64
	stats chunkStats
}

func (r *run) startEarlyChecks(ctx context.Context) *earlyChecks {
	e := &earlyChecks{r: r, above: map[int64]bool{}, checks: map[string]*bucketCheck{},
		kick: make(chan struct{}, 1), done: make(chan struct{})}
	e.ctx, e.cancel = context.WithCancel(ctx)
	go e.work()
	return e
}

// ready queues the bucket dir, whose records all went into batches
// numbered batch or less; stats are its chunks.
func (e *earlyChecks) ready(dir string, batch int64, stats chunkStats) {
	e.mu.Lock()
	e.waiting = append(e.waiting, readyBucket{dir, batch, stats})
	e.mu.Unlock()
	e.wake()
}

// committed records that batch number n was committed.
func (e *earlyChecks) committed(n int64) {
	e.mu.Lock()
	e.above[n] = true
	for e.above[e.below] {
		delete(e.above, e.below)
		e.below++
	}
	e.mu.Unlock()
	e.wake()
}

func (e *earlyChecks) wake() {
	select {
	case e.kick <- struct{}{}:
	default:
	}
}

// next returns the first bucket whose batches are all committed.
func (e *earlyChecks) next() (readyBucket, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ctx.Err() != nil || len(e.waiting) == 0 || e.waiting[0].batch >= e.below {
		return readyBucket{}, false
	}
	b := e.waiting[0]
	e.waiting = e.waiting[1:]
	return b, true
}

func (e *earlyChecks) work() {
	defer close(e.done)
	for {
		for b, ok := e.next(); ok; b, ok = e.next() {
			if c := checkBucket(e.ctx, e.r.m.KV, e.r.o.Prefix, b.dir, b.stats); c != nil {
				e.mu.Lock()
				e.checks[b.dir] = c
				e.mu.Unlock()
			}
		}
		e.mu.Lock()
		stopped := e.stopped
		e.mu.Unlock()
		if stopped {
			return
		}
		select {
		case <-e.kick:
		case <-e.ctx.Done():
			return
		}
	}
}

// finish ends the checks, once the copy has ended. After a failed copy it
// cancels the check under way and starts none. After a copy that
// succeeded, every batch is committed: it waits while the worker checks the
// buckets still waiting, the one the copy completed last among them.
func (e *earlyChecks) finish(failed bool) {
	e.mu.Lock()
	e.stopped = true
	e.mu.Unlock()
	if failed {
		e.cancel()
	}
	e.wake()
	<-e.done
	e.cancel()
}

// get returns the checks made, by bucket directory.
func (e *earlyChecks) get() map[string]*bucketCheck {
	if e == nil {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.checks
}
