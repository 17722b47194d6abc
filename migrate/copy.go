package migrate

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
)

// wipe is step 5: delete every key under the prefix but migration/, in
// fenced transactions.
func (r *run) wipe(ctx context.Context) error {
	prefix := r.o.Prefix
	if err := CheckPrefix(prefix); err != nil {
		return err
	}
	var keys []string
	var left WipeReport
	if err := r.retry(ctx, "list store3 keys", func() error {
		var err error
		if keys, err = r.m.KV.Keys(ctx, prefix, "/"); err == nil {
			left, err = leftovers(ctx, r.m.KV, prefix, keys, 0)
		}
		return err
	}); err != nil {
		return err
	}
	var ops []Op
	flush := func() error {
		if len(ops) == 0 {
			return nil
		}
		err := r.txn(ctx, fmt.Sprintf("wipe %q", ops[0].Key), ops)
		ops = ops[:0]
		return err
	}
	size := BodySize(1, fenceSize(r.fence))
	for _, k := range keys {
		op := Op{Verb: VerbDeleteTree, Key: k}
		switch {
		case k == migrationDir(prefix):
			continue
		case k == prefix || !strings.HasSuffix(k, "/"):
			op.Verb = VerbDelete
		}
		n := opSize(op.Verb, op.Key, 0, 0, 0, "") + 1
		if len(ops)+2 > r.limits.MaxOps || size+n > r.limits.MaxBody {
			if err := flush(); err != nil {
				return err
			}
			size = BodySize(1, fenceSize(r.fence))
		}
		ops = append(ops, op)
		size += n
	}
	if err := flush(); err != nil {
		return err
	}
	if left.Keys > 0 {
		r.o.Log.Infof("Wiped %d keys under %q left by an earlier attempt", left.Keys, prefix)
	}
	return nil
}

// copy is steps 6 and 7: stream the snapshot into batches written by
// InFlight workers, and wait for every worker. It returns the tally of the
// records it read and sent, and keeps it by chunk (r.copied): offline,
// verification and the check that store2 did not change compare with it;
// online, the cutover's pass compares store3 with the frozen store2, whose
// tallies are these when store2 did not change since the copy's snapshot.
// The copy also keeps what it saw of each chunk's keys (r.chunkStats): how
// the comparisons list store3. Each bucket the snapshot streams whole is
// listed while the copy goes on, once all its records are committed
// (early.go).
func (r *run) copy(ctx context.Context, snap Snapshot) (Tally, error) {
	b := r.newBatcher()
	early := r.startEarlyChecks(ctx)
	r.checks = early
	w := r.startWriters(ctx, b, "copy", func(x *Batch) {
		r.counts.stored(x.Records)
		early.committed(x.seq)
	})
	var seq int64 // the number of the batch being built
	send := func(x *Batch) error {
		if x == nil {
			return nil
		}
		x.seq = seq
		seq++
		return w.send(x)
	}
	r.chunkStats = chunkStats{}
	r.copied = copiedSnapshot{chunks: chunkTallies{}}
	if m, err := snap.Mark(ctx); err == nil {
		r.copied.mark, r.copied.marked = m, true
	}
	each := func(rec *Record) error {
		r.copied.n++
		key, reason := CheckRecord(r.o.Prefix, rec, b)
		if reason != "" {
			r.fails.add(r.o.Log, rec, reason)
			return nil
		}
		rel := key[len(r.o.Prefix):]
		r.copied.chunks.add(rel, rec.Version, rec.Data)
		r.chunkStats.add(rel)
		return send(b.Add(key, uint64(rec.Version), rec.Data))
	}
	// A bucket's last batch is sent at once, not filled with the next
	// bucket's records: the bucket is complete as soon as it and all
	// before it are committed.
	end := func(bucket string) error {
		if err := send(b.Flush()); err != nil {
			return err
		}
		if eb, err := EscapeSegment(bucket); err == nil {
			early.ready(r.o.Prefix+eb+"/", seq-1, r.chunkStats.of(eb+"/"))
		}
		return nil
	}
	scanErr := snap.StreamByBucket(w.ctx, each, end)
	if scanErr == nil {
		scanErr = send(b.Flush())
	}
	err := w.wait(scanErr)
	early.finish(err != nil)
	var read Tally
	for _, t := range r.copied.chunks {
		read.Merge(*t)
	}
	return read, err
}

// copiedSnapshot is what the copy read of its snapshot: where the snapshot
// stands (Snapshot.Mark; marked false when that could not be read), how
// many records it streamed, failed ones included, and the tallies of those
// it sent, by chunk. The comparisons after the copy take store2's tallies
// from it when store2 is unchanged since (sourceChunks).
type copiedSnapshot struct {
	mark   Mark
	marked bool
	n      int64
	chunks chunkTallies
}

// chunkTallies tally records chunk by chunk (chunkID).
type chunkTallies map[string]*Tally

func (c chunkTallies) add(rel string, version int64, data []byte) {
	id := chunkID(rel)
	t := c[id]
	if t == nil {
		t = &Tally{}
		c[id] = t
	}
	t.Add(rel, version, data)
}

func (r *run) newBatcher() *Batcher { return NewBatcher(r.limits, r.fence, r.o.InFlight+1) }

// writers is a pool of InFlight workers writing batches behind the fence.
// The first failure cancels ctx; wait returns it.
type writers struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	b      *Batcher
	ch     chan *Batch
	wg     sync.WaitGroup
	once   sync.Once
	err    error
}

// startWriters starts the pool; done is called (concurrently) after each
// batch committed.
func (r *run) startWriters(ctx context.Context, b *Batcher, what string, done func(*Batch)) *writers {
	w := &writers{b: b, ch: make(chan *Batch)}
	w.ctx, w.cancel = context.WithCancelCause(ctx)
	for range r.o.InFlight {
		w.wg.Go(func() {
			for x := range w.ch {
				if w.ctx.Err() == nil {
					if err := r.txn(w.ctx, what+" "+x.describe(), x.Ops); err != nil {
						w.once.Do(func() { w.err = err; w.cancel(err) })
					} else if done != nil {
						done(x)
					}
				}
				b.Recycle(x)
			}
		})
	}
	return w
}

// send hands a batch to the workers; nil is nothing to send.
func (w *writers) send(x *Batch) error {
	if x == nil {
		return nil
	}
	select {
	case w.ch <- x:
		return nil
	case <-w.ctx.Done():
		return context.Cause(w.ctx)
	}
}

// wait waits for every worker and returns the first failure: a write's,
// the context's, or readErr, the producer's (a store2 failure).
func (w *writers) wait(readErr error) error {
	close(w.ch)
	w.wg.Wait()
	defer w.cancel(nil)
	switch {
	case w.err != nil:
		return w.err
	case w.ctx.Err() != nil:
		return context.Cause(w.ctx)
	case readErr != nil:
		return readError(readErr)
	}
	return nil
}

// counts are the records stored and to store, for .status and Progress.
type counts struct {
	total, done atomic.Int64
	mu          sync.Mutex // serialises progress
	progress    func(done, total int64)
}

func (c *counts) stored(n int64) {
	done := c.done.Add(n)
	if c.progress == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.progress(done, c.total.Load())
}

// failures are the record failures of a run: all counted, the first
// MaxFailedRecords listed.
type failures struct {
	mu   sync.Mutex
	n    int64
	list []FailedRecord
}

func (f *failures) add(log Logger, rec *Record, reason string) {
	logRecordFailure(log, rec, reason)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	if len(f.list) < MaxFailedRecords {
		f.list = append(f.list, FailedRecord{Bucket: rec.Bucket, Key: rec.Key, Reason: reason})
	}
}

func (f *failures) get() (int64, []FailedRecord) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n, append([]FailedRecord(nil), f.list...)
}

func (f *failures) reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n, f.list = 0, nil
}

// err is ErrRecordFailures when there were any, of total records.
func (f *failures) err(total int64) error {
	n, list := f.get()
	if n == 0 {
		return nil
	}
	first := list[0]
	return fmt.Errorf("%w: %d of %d records (first: bucket %q key %q: %s)",
		ErrRecordFailures, n, total, first.Bucket, first.Key, first.Reason)
}
