package migrate

import (
	"context"
	"fmt"
	"time"
)

// freezeState is what a run knows of its freeze of store2.
type freezeState struct {
	fr          Freezer
	tried       bool      // Freeze was called: store2 may be frozen
	at          time.Time // when the freeze committed
	doneTried   bool      // .done was sent: it may exist
	doneWritten bool      // .done exists: the freeze stays
}

// maxCutoverPasses bounds the catch-up passes against the frozen store2:
// the first applies what changed since the last round, the second finds
// nothing and is the verification. A third that still finds differences
// means something else writes store3 or store2.
const maxCutoverPasses = 3

// cutover freezes store2 and catches up until a pass over the frozen store2
// finds no difference: that pass is the verification (every chunk's count
// and digest equal, hence the totals). It returns the frozen store2's tally.
//
// The pass lists all of store3, even the chunks a verifier could have
// listed while the copy still ran (issue 11 item 1, tried and measured):
//   - A chunk listed during the copy proves what store3 held then. Until
//     .done, the fence keeps other migrators out but not a writer that
//     ignores the lock, which is what verification is there to catch:
//     TestCorruptionAfterTheCopyFails fails when the pass reuses such
//     chunks. Consul could tell cheaply that a chunk did not change since
//     (the X-Consul-Index of a keys-only listing is the highest
//     ModifyIndex under the prefix, tombstones included), but KV does not
//     expose it.
//   - It did not pay either, on this 2-core machine at 100,000 records:
//     with 3 of the 4 buckets' chunks verified during the copy and reused,
//     the pass still listed the last bucket and the empty chunks (0.6 to
//     1 s) and read the frozen store2 (1.1 to 1.4 s), which the snapshot
//     marker cannot skip (the freeze commits a transaction of its own);
//     the listings during the copy compete with it for the Consul
//     server's CPU. Wall time, median of 5 alternated runs: 0.92 of the
//     copy-then-verify migration.
//
// What the pass does instead is list store3 while it reads store2
// (reconcile): the pass takes the longer of the two, not their sum.
func (r *run) cutover(ctx context.Context) (Tally, error) {
	o, f := r.o, &r.freeze
	start := time.Now()
	f.tried = true
	err := r.retry(ctx, "freeze store2", func() error {
		return f.fr.Freeze(ctx, r.fence.Session, FreezeMessage(o.Component, o.Prefix))
	})
	if err != nil {
		return Tally{}, err
	}
	f.at = time.Now()
	logFrozen(o.Log, f.fr.FrozenTable())
	// Only now: status and wait show the cutover phase as "store2 frozen".
	r.status.setPhase(ctx, PhaseCutover, r.cu.rounds, 0, r.now())
	for range maxCutoverPasses {
		passStart := time.Now()
		res, err := r.catchUpRound(ctx, false) // the verification: never skipped
		if err != nil {
			return Tally{}, err
		}
		r.status.setPhase(ctx, PhaseCutover, r.cu.rounds, res.changes(), r.now())
		if res.changes() > 0 {
			continue
		}
		r.times.cutover = passStart.Sub(start)
		r.times.verify = time.Since(passStart)
		if res.foreign > 0 || !res.store.Equal(res.source) {
			return Tally{}, fmt.Errorf("%w: frozen store2 has %d records (%s), store3 holds %d (%s) and %d foreign keys %q",
				ErrMismatch, res.source.Count, res.source.Digest, res.store.Count, res.store.Digest, res.foreign, res.foreignKeys)
		}
		return res.source, nil
	}
	return Tally{}, fmt.Errorf("%w: store3 still differs from the frozen store2 after %d catch-up passes: something else writes under %q or to store2",
		ErrMismatch, maxCutoverPasses, o.Prefix)
}

// thawTimeout bounds the unfreeze after a failure: it may wait for the
// readers of the table (dropping a trigger locks it exclusively).
const thawTimeout = time.Minute

// thaw unfreezes store2 after a migration that froze it ended without
// .done, whatever the reason (record failures, mismatch, lost lock,
// interrupt), detached from the work's cancellation. It runs after the lock
// was released, so that a .done write in flight has either landed or can no
// longer land: when one was sent and .done cannot be read, store2 stays
// frozen (a write refused is loud; a write lost behind .done is not) and
// the log says how to unfreeze it. Only this run's own freeze is dropped:
// another migration that took the lock since may have frozen store2 itself.
func (r *run) thaw(ctx context.Context, why error) {
	f := &r.freeze
	if !f.tried || f.doneWritten {
		return
	}
	tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), thawTimeout)
	defer cancel()
	log := r.o.Log
	if f.doneTried {
		_, present, err := r.readDone(tctx)
		switch {
		case err != nil:
			log.Errorf("store2 stays frozen: cannot tell whether %q was written: %v; once `deployhook status` shows it absent, run `deployhook unfreeze`", DoneKey(r.o.Prefix), err)
			return
		case present:
			log.Warnf("store2 stays frozen: %q exists", DoneKey(r.o.Prefix))
			return
		}
	}
	var dropped bool
	err := retry(tctx, Backoff{Min: r.o.Retry.Min, Max: r.o.Retry.Max, GiveUp: thawTimeout}, log, "unfreeze store2", func() error {
		var err error
		dropped, err = f.fr.Unfreeze(tctx, func(owner string) (bool, error) { return owner == r.fence.Session, nil })
		return err
	})
	switch {
	case err != nil:
		log.Errorf("store2 stays frozen: %v; run `deployhook unfreeze` (the next migrate or run also unfreezes it)", err)
	case dropped:
		logUnfrozen(log, fmt.Sprintf("the migration ended without .done: %v", why))
	}
}

// releaseOrphanFreeze drops, at the start of a migration under the lock, a
// freeze that an earlier migration left behind without .done (one killed
// during its cutover): no one can write .done behind it any more.
func (r *run) releaseOrphanFreeze(ctx context.Context) {
	if _, ok := r.m.Source.(Freezer); !ok {
		return
	}
	_, err := Unfreeze(ctx, r.m.Source, r.m.KV, r.o.Prefix, false, "an earlier migration froze it and ended without .done", r.o.Log)
	if err != nil {
		r.o.Log.Warnf("%v", err)
	}
}

// canFreeze returns "" when store2 can be frozen, else what to grant.
func (r *run) canFreeze(ctx context.Context) (string, error) {
	fr, err := freezerOf(r.m.Source)
	if err != nil {
		return err.Error(), nil
	}
	var missing string
	err = r.retry(ctx, "check the freeze privileges on store2", func() error {
		var err error
		missing, err = fr.CanFreeze(ctx)
		return err
	})
	return missing, err
}

// phaseTimes are the durations of the phases, logged on success for the
// benchmark.
type phaseTimes struct {
	open, wipe, copy, catchUp, cutover, verify, done time.Duration
}
