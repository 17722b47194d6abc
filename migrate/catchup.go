package migrate

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
)

// catchUpState is what the catch-up knows of store3 across rounds.
type catchUpState struct {
	rounds  int   // rounds run, the cutover's passes included
	changed int64 // records the rounds set or deleted
	// written is what store3 holds, chunk by chunk, as this migration
	// wrote it; nil when unknown (a round that failed half way).
	written chunkTallies
	// marker is the marker of the snapshot store3 equals, "" when unknown.
	marker string
}

// reconciled is what one comparison of a store2 snapshot with store3 found
// and, when applied, changed in store3.
type reconciled struct {
	source       Tally // the snapshot's records
	store        Tally // what store3 held under the prefix, before the changes
	set, deleted int64
	foreign      int      // keys under the prefix no record can produce
	foreignKeys  []string // at most maxForeign of them
	// skipped: the snapshot's marker says store2 did not change since the
	// snapshot store3 equals; nothing was compared.
	skipped bool
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
// When mayskip and the snapshot's marker equals the one store3 was made
// equal to, store2 did not change: nothing is compared.
func (r *run) reconcile(ctx context.Context, snap Snapshot, apply, mayskip bool) (res *reconciled, err error) {
	res = &reconciled{}
	prefix := r.o.Prefix
	b := r.newBatcher()
	marker := r.marker(ctx, snap)
	if mayskip && marker != "" && marker == r.cu.marker && r.cu.written != nil {
		res.skipped = true
		for _, t := range r.cu.written {
			res.source.Merge(*t)
		}
		res.store = res.source
		return res, nil
	}

	srcChunks := chunkTallies{}
	err = snap.Scan(ctx, func(rec *Record) error {
		key, reason := CheckRecord(r.o.Prefix, rec, b)
		if reason != "" {
			r.fails.add(r.o.Log, rec, reason)
			return nil
		}
		rel := key[len(prefix):]
		srcChunks.add(rel, rec.Version, rec.Data)
		return nil
	})
	if err != nil {
		return res, readError(err)
	}
	for _, t := range srcChunks {
		res.source.Merge(*t)
	}
	if n, _ := r.fails.get(); n > 0 {
		return res, r.fails.err(res.source.Count + n)
	}

	var storeChunks chunkTallies
	err = r.retry(ctx, "list store3", func() error {
		res.foreign, res.foreignKeys = 0, nil
		var err error
		storeChunks, res.foreign, err = scanStore(ctx, r.m.KV, prefix, func(f foreignKey) {
			if len(res.foreignKeys) < maxForeign {
				res.foreignKeys = append(res.foreignKeys, f.key)
			}
		})
		return err
	})
	if err != nil {
		return res, err
	}
	// store3 holds what this migration wrote, or someone else writes
	// there: a migration that repaired that silently would hide a writer
	// that ignores the lock.
	if r.cu.written != nil {
		if c := r.cu.written.firstDiffer(storeChunks); c != "" {
			return res, fmt.Errorf("%w: store3 changed behind the migration's back: chunk %q under %q does not hold what the migration wrote there",
				ErrMismatch, c, prefix)
		}
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
		r.cu.written, r.cu.marker = srcChunks, marker // store3 equals this snapshot
		return res, nil
	}
	slices.Sort(differ)
	if apply {
		// Unknown until every change is written: a round that fails half
		// way leaves store3 between two states.
		r.cu.written, r.cu.marker = nil, ""
	}

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
		defer func() {
			if err == nil {
				r.cu.written, r.cu.marker = srcChunks, marker
			}
		}()
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
	err := snap.Scan(ctx, func(rec *Record) error {
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

// catchUpRound is one round of catch-up: a new snapshot, reconciled with
// store3. A transient store2 failure takes another snapshot: a round can be
// repeated, it only ever makes store3 equal a snapshot.
func (r *run) catchUpRound(ctx context.Context, mayskip bool) (*reconciled, error) {
	r.cu.rounds++
	for attempt := 1; ; attempt++ {
		snap, err := openSnapshot(ctx, r.m.Source, r.o.Retry, r.o.Log)
		if err != nil {
			return nil, err
		}
		res, err := r.reconcile(ctx, snap, true, mayskip)
		closeSnapshot(ctx, snap, r.o.Log)
		var se *sourceError
		if err != nil && errors.As(err, &se) && IsTransient(err) && attempt < r.o.Attempts && ctx.Err() == nil {
			r.o.Log.Warnf("store2 failed mid-stream in catch-up round %d, taking a new snapshot (attempt %d of %d): %v", r.cu.rounds, attempt+1, r.o.Attempts, err)
			if err := sleep(ctx, r.o.Retry.Max); err != nil {
				return nil, err
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		r.cu.changed += res.changes()
		if res.skipped {
			r.o.Log.Infof("store2 did not change since the last snapshot: catch-up round %d compares nothing", r.cu.rounds)
		}
		logCatchUpRound(r.o.Log, r.cu.rounds, res)
		return res, nil
	}
}

// catchUp is the online migration's catch-up, before the freeze: rounds
// until one changes at most CatchUpThreshold records, or CatchUpRounds
// rounds.
func (r *run) catchUp(ctx context.Context) error {
	r.status.setPhase(ctx, PhaseCatchingUp, 0, 0, r.now())
	for range r.o.CatchUpRounds {
		res, err := r.catchUpRound(ctx, true)
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

// checkUnchanged is the offline migration's last check: a new snapshot of
// store2 equals the copied one. store3, just verified to hold the copy, is
// what it is compared with, so that the error can say how many records
// changed.
func (r *run) checkUnchanged(ctx context.Context, copied Tally) error {
	snap, err := openSnapshot(ctx, r.m.Source, r.o.Retry, r.o.Log)
	if err != nil {
		return err
	}
	defer closeSnapshot(ctx, snap, r.o.Log)
	res, err := r.reconcile(ctx, snap, false, true)
	if err != nil {
		return err
	}
	if n := res.changes(); n > 0 || !res.source.Equal(copied) {
		return fmt.Errorf("%w (%d records): stop the components (runbook step 2) or migrate online", ErrStore2Changed, max(n, 1))
	}
	return nil
}
