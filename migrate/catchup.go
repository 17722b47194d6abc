package migrate

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
)

// catchUpState is what the catch-up knows across rounds.
type catchUpState struct {
	rounds    int   // rounds run, the cutover's included
	changed   int64 // records the rounds set or deleted
	capturing bool  // Capture was called: the run ends it
}

// reconciled is what one comparison of a store2 snapshot with store3 found
// and, when applied, changed in store3.
type reconciled struct {
	source       Tally // the snapshot's records
	store        Tally // what store3 held under the prefix, before the changes
	set, deleted int64
	foreign      int      // keys under the prefix no record can produce
	foreignKeys  []string // at most maxForeign of them
	fromCopy     bool     // source is the copy's tally: store2 unchanged since (sourceChunks)
}

func (c *reconciled) changes() int64 { return c.set + c.deleted }

// maxDiffKeys bounds the store3 keys that reconcile holds in memory at
// once: the chunks that differ are compared in groups of at most that many
// keys (one chunk may exceed it), each group on its own pass over store2.
var maxDiffKeys int64 = 1 << 17

// reconcile compares snap with store3 chunk by chunk (count and digest, as
// verification does), then key by key in the chunks that differ, and, when
// apply, makes store3 equal snap: sets for records missing or different,
// deletes for keys store2 no longer has. Before .done the prefix belongs to
// the migration alone: store2 wins. Records that cannot be stored are
// record failures (ErrRecordFailures), found before anything is written.
// It is the verification (apply false), and the catch-up round that
// follows a TRUNCATE, which the change capture cannot name records for.
// snap's tallies come from copied when it holds what the copy read
// (sourceChunks); copied may be nil.
func (r *run) reconcile(ctx context.Context, snap Snapshot, apply bool, copied *copiedSnapshot) (res *reconciled, err error) {
	res = &reconciled{}
	prefix := r.o.Prefix
	b := r.newBatcher()

	// store3 is listed while store2 is read: one is the Consul server's
	// work, the other PostgreSQL's and this process's.
	var storeChunks chunkTallies
	var listErr error
	listCtx, cancelList := context.WithCancel(ctx)
	listed := make(chan struct{})
	go func() {
		defer close(listed)
		listErr = r.retry(listCtx, "list store3", func() error {
			res.foreign, res.foreignKeys = 0, nil
			var err error
			// Consul walks every key for the listing that finds the
			// buckets and again for each bucket's index: side by side.
			top := listTop(listCtx, r.m.KV, prefix)
			scope := scanScope{reuse: r.standingChecks(listCtx), top: top}
			storeChunks, res.foreign, err = scanStore(listCtx, r.m.KV, prefix, r.chunkStats, scope, func(f foreignKey) {
				if len(res.foreignKeys) < maxForeign {
					res.foreignKeys = append(res.foreignKeys, f.key)
				}
			})
			return err
		})
	}()
	srcChunks, fromCopy, err := r.sourceChunks(ctx, snap, b, copied)
	res.fromCopy = fromCopy
	if err != nil {
		cancelList()
	}
	<-listed
	cancelList()
	if err != nil {
		return res, readError(err)
	}
	for _, t := range srcChunks {
		res.source.Merge(*t)
	}
	if n, _ := r.fails.get(); n > 0 {
		return res, r.fails.err(res.source.Count + n)
	}
	if listErr != nil {
		return res, listErr
	}
	var differ []string
	for c, t := range storeChunks {
		res.store.Merge(*t)
		if s := srcChunks[c]; s == nil || !s.Equal(*t) {
			differ = append(differ, c)
		}
	}
	for c := range srcChunks {
		if storeChunks[c] == nil {
			differ = append(differ, c)
		}
	}
	if len(differ) == 0 {
		return res, nil
	}
	slices.Sort(differ)

	var w *writers
	send := func(*Batch) error { return nil }
	if apply {
		w = r.startWriters(ctx, b, "catch up", nil)
		ctx, send = w.ctx, w.send
	}
	for len(differ) > 0 && err == nil {
		n, held := 0, int64(0)
		for n < len(differ) && (n == 0 || held+count(storeChunks[differ[n]]) <= maxDiffKeys) {
			held += count(storeChunks[differ[n]])
			n++
		}
		err = r.reconcileChunks(ctx, snap, b, differ[:n], res, send)
		differ = differ[n:]
	}
	if apply {
		var se *sourceError
		if errors.As(err, &se) {
			err = w.wait(se.err)
		} else {
			if err == nil {
				err = send(b.Flush())
			}
			if werr := w.wait(nil); werr != nil {
				err = werr
			}
		}
	}
	return res, err
}

// sourceChunks returns snap's tallies by chunk, its record failures
// counted. When snap provably holds what the copy read (Snapshot.Unchanged:
// nothing written to store2 since the copy's snapshot, recorded by the
// change capture or not), they are the copy's (fromCopy), and store2 is
// not read again: with nothing writing, that was most of the cutover's
// frozen window. Otherwise snap is read.
func (r *run) sourceChunks(ctx context.Context, snap Snapshot, b *Batcher, copied *copiedSnapshot) (_ chunkTallies, fromCopy bool, _ error) {
	if copied != nil && copied.marked {
		same, err := snap.Unchanged(ctx, copied.mark, copied.n)
		if err != nil || same {
			return copied.chunks, same, err
		}
	}
	prefix := r.o.Prefix
	src := chunkTallies{}
	err := snap.Stream(ctx, func(rec *Record) error {
		key, reason := CheckRecord(prefix, rec, b)
		if reason != "" {
			r.fails.add(r.o.Log, rec, reason)
			return nil
		}
		src.add(key[len(prefix):], rec.Version, rec.Data)
		return nil
	})
	return src, false, err
}

func count(t *Tally) int64 {
	if t == nil {
		return 0
	}
	return t.Count
}

// heldKey is what reconcileChunks keeps of a store3 key.
type heldKey struct {
	version int64
	sum     [sha256.Size]byte
}

// reconcileChunks compares the given chunks key by key: store3's keys in a
// map, store2's streamed. Each difference goes to send as an op of b.
func (r *run) reconcileChunks(ctx context.Context, snap Snapshot, b *Batcher, chunks []string, res *reconciled, send func(*Batch) error) error {
	prefix := r.o.Prefix
	in := make(map[string]bool, len(chunks))
	held := map[string]heldKey{}
	for _, c := range chunks {
		in[c] = true
		err := r.retry(ctx, fmt.Sprintf("list %q", prefix+c), func() error {
			return r.m.KV.Scan(ctx, prefix+c, func(p *Pair) error {
				if _, _, err := ParseStoreKey(prefix, p.Key); err == nil {
					held[p.Key[len(prefix):]] = heldKey{int64(p.Flags), sha256.Sum256(p.Value)}
				}
				return nil
			})
		})
		if err != nil {
			return err
		}
	}
	err := snap.Stream(ctx, func(rec *Record) error {
		key, reason := CheckRecord(r.o.Prefix, rec, b)
		if reason != "" {
			return nil // counted on the first pass
		}
		rel := key[len(prefix):]
		if !in[chunkID(rel)] {
			return nil
		}
		h, ok := held[rel]
		delete(held, rel)
		if ok && h.version == rec.Version && h.sum == sha256.Sum256(rec.Data) {
			return nil
		}
		res.set++
		return send(b.Add(key, uint64(rec.Version), rec.Data))
	})
	if err != nil {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		return &sourceError{err}
	}
	gone := make([]string, 0, len(held))
	for rel := range held {
		gone = append(gone, rel)
	}
	slices.Sort(gone)
	for _, rel := range gone {
		res.deleted++
		if err := send(b.AddDelete(prefix + rel)); err != nil {
			return err
		}
	}
	return nil
}

// applyChanges is a catch-up round on cs: the records the capture
// recorded as changed are set in store3 as cs holds them, or deleted when
// it holds none. It costs what changed, not the table. After a TRUNCATE,
// which the capture records without the records, the round compares the
// whole snapshot instead (reconcile).
func (r *run) applyChanges(ctx context.Context, cs ChangeSnapshot) (*reconciled, error) {
	res := &reconciled{}
	b := r.newBatcher()
	w := r.startWriters(ctx, b, "catch up", nil)
	all, err := cs.Changed(w.ctx, func(rec *Record, present bool) error {
		key, reason := CheckRecord(r.o.Prefix, rec, b)
		switch {
		case reason != "" && present:
			r.fails.add(r.o.Log, rec, reason)
			return nil
		case reason != "":
			return nil // never copied: nothing to delete
		case !present:
			res.deleted++
			return w.send(b.AddDelete(key))
		}
		res.set++
		return w.send(b.Add(key, uint64(rec.Version), rec.Data))
	})
	if err == nil {
		err = w.send(b.Flush())
	}
	if err = w.wait(err); err != nil {
		return res, err
	}
	if n, _ := r.fails.get(); n > 0 {
		return res, r.fails.err(res.set + n)
	}
	if all {
		r.o.Log.Warnf("store2 was truncated: catch-up round %d compares all of it", r.cu.rounds)
		return r.reconcile(ctx, cs, true, nil)
	}
	return res, nil
}

// changeRound opens a change snapshot and runs fn on it, taking a new one
// when store2 fails transiently mid-stream: a round can be repeated, what
// it reads is only forgotten once it was applied (consume).
func (r *run) changeRound(ctx context.Context, consume bool, fn func(ChangeSnapshot) error) error {
	what := fmt.Sprintf(" in catch-up round %d, taking a new snapshot", r.cu.rounds)
	return r.withFreshSnapshots(ctx, what, func() error {
		var cs ChangeSnapshot
		err := r.retry(ctx, "open a store2 snapshot with its changes", func() error {
			var err error
			cs, err = r.freeze.fr.Changes(ctx)
			return err
		})
		if err != nil {
			return err
		}
		defer closeSnapshot(ctx, cs, r.o.Log)
		if err := fn(cs); err != nil || !consume {
			return err
		}
		if err := cs.Consume(ctx); err != nil {
			return readError(err)
		}
		return nil
	})
}

// catchUpRound is one round of catch-up before the freeze.
func (r *run) catchUpRound(ctx context.Context) (*reconciled, error) {
	r.cu.rounds++
	var res *reconciled
	err := r.changeRound(ctx, true, func(cs ChangeSnapshot) error {
		var err error
		res, err = r.applyChanges(ctx, cs)
		return err
	})
	if err != nil {
		return nil, err
	}
	r.cu.changed += res.changes()
	logCatchUpRound(r.o.Log, r.cu.rounds, res)
	return res, nil
}

// capture starts the change capture, before the copy's snapshot.
func (r *run) capture(ctx context.Context) error {
	r.cu.capturing = true
	return r.retry(ctx, "capture the changes to store2", func() error {
		return r.freeze.fr.Capture(ctx, r.fence.Session)
	})
}

// endCapture drops this run's change capture when the run ends, whatever
// the outcome: it served this migration's catch-up only. Detached from the
// work's cancellation; a failure only costs a warning (the next migration,
// run or unfreeze drops it).
func (r *run) endCapture(ctx context.Context, why string) {
	if !r.cu.capturing {
		return
	}
	tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), thawTimeout)
	defer cancel()
	var dropped bool
	err := retry(tctx, Backoff{Min: r.o.Retry.Min, Max: r.o.Retry.Max, GiveUp: thawTimeout}, r.o.Log, "drop the change capture on store2", func() error {
		var err error
		dropped, err = r.freeze.fr.EndCapture(tctx, func(owner string) (bool, error) { return owner == r.fence.Session, nil })
		return err
	})
	switch {
	case err != nil:
		r.o.Log.Warnf("the change capture on %s stays (trigger %s): %v; the next migrate, run or unfreeze drops it", r.freeze.fr.FrozenTable(), CaptureName, err)
	case dropped:
		logCaptureEnded(r.o.Log, r.freeze.fr.FrozenTable(), why)
	}
}

// catchUp is the online migration's catch-up, before the freeze: rounds
// until one changes at most CatchUpThreshold records, or CatchUpRounds
// rounds.
func (r *run) catchUp(ctx context.Context) error {
	r.status.setPhase(ctx, PhaseCatchingUp, 0, 0, r.now())
	for range r.o.CatchUpRounds {
		res, err := r.catchUpRound(ctx)
		if err != nil {
			return err
		}
		r.status.setPhase(ctx, PhaseCatchingUp, r.cu.rounds, res.changes(), r.now())
		if res.changes() <= int64(r.o.CatchUpThreshold) {
			return nil
		}
	}
	return nil
}

// verifyUnchanged is the offline migration's step 8 check, in one pass: on
// a new snapshot of store2, listed while store3 is (reconcile), store3
// holds what was copied and nothing else (ErrMismatch), and store2 still
// holds it (ErrStore2Changed: the new snapshot is what store3 is compared
// with, so that the error can say how many records changed).
func (r *run) verifyUnchanged(ctx context.Context, copied Tally) error {
	snap, err := openSnapshot(ctx, r.m.Source, r.o.Retry, r.o.Log)
	if err != nil {
		return err
	}
	defer closeSnapshot(ctx, snap, r.o.Log)
	res, err := r.reconcile(ctx, snap, false, &r.copied)
	if err != nil {
		return err
	}
	r.times.asCopied = res.fromCopy
	if res.foreign > 0 || !res.store.Equal(copied) {
		return fmt.Errorf("%w: store2 snapshot has %d records (%s), store3 holds %d (%s) and %d foreign keys %q",
			ErrMismatch, copied.Count, copied.Digest, res.store.Count, res.store.Digest, res.foreign, res.foreignKeys)
	}
	if n := res.changes(); n > 0 || !res.source.Equal(copied) {
		return fmt.Errorf("%w (%d records): stop the components (runbook step 2) or migrate online", ErrStore2Changed, max(n, 1))
	}
	return nil
}
