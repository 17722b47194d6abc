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

// cutover freezes store2, applies what the capture recorded before the
// freeze (the last catch-up round) and verifies, on the same snapshot of
// the frozen store2: every chunk's count and digest equal store3's, hence
// the totals. It returns the frozen store2's tally. A difference then is
// not caught up: only something other than this migration can have made
// it (a writer under the prefix that ignores the lock, or a store2 write
// the capture did not record), and the migration fails.
//
// The pass lists store3 while it reads store2 (reconcile), so that it
// takes the longer of the two, not their sum; it reads store2 only when
// something wrote to it since the copy's snapshot, else takes the copy's
// tallies (sourceChunks); and it lists only the buckets it must
// (early.go): a bucket listed while the copy ran, whose index Consul
// reports unchanged since, is taken as listed then.
// TestCorruptionAfterTheCopyFails and TestChangesAfterABucketsCheckFail
// hold that whatever changes after the copy, in a bucket listed then or
// not, is still found.
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
	r.cu.rounds++
	var last, v *reconciled
	err = r.changeRound(ctx, false, func(cs ChangeSnapshot) error {
		var err error
		if last, err = r.applyChanges(ctx, cs); err != nil {
			return err
		}
		passStart := time.Now()
		r.times.cutover = passStart.Sub(start)
		v, err = r.reconcile(ctx, cs, false, &r.copied)
		r.times.verify = time.Since(passStart)
		return err
	})
	if err != nil {
		return Tally{}, err
	}
	r.cu.changed += last.changes()
	r.times.asCopied = v.fromCopy
	logCatchUpRound(o.Log, r.cu.rounds, last)
	r.status.setPhase(ctx, PhaseCutover, r.cu.rounds, last.changes(), r.now())
	if v.changes() > 0 || v.foreign > 0 || !v.store.Equal(v.source) {
		return Tally{}, fmt.Errorf("%w: the frozen store2 has %d records (%s), store3 holds %d (%s): %d to set, %d to delete, %d foreign keys %q; something other than this migration writes under %q",
			ErrMismatch, v.source.Count, v.source.Digest, v.store.Count, v.store.Digest, v.set, v.deleted, v.foreign, v.foreignKeys, o.Prefix)
	}
	return v.source, nil
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
	capture, open, wipe, copy, catchUp, cutover, verify, done time.Duration
	// asCopied: verification took store2's tallies from the copy, store2
	// being provably unchanged since (sourceChunks).
	asCopied bool
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
