package migrate

import (
	"context"
	"errors"
	"fmt"
)

// FreezeName names the freeze: the trigger on the store2 table and its
// function, in the table's schema.
const FreezeName = "deployhook_store2_frozen"

// CaptureName names the change capture: the trigger on the store2 table
// that records which records writes change, until the cutover.
const CaptureName = "deployhook_store2_capture"

// Freezer is the store2 of an online migration. It records which records
// change from the copy's snapshot on (the change capture), so that a
// catch-up round costs what changed rather than the table, and freezes
// store2 for writes at cutover: every write (insert, update, delete,
// truncate) is refused, with SQLSTATE 25006 and the message it was given,
// until Unfreeze. Capture and freeze need the same privileges; an offline
// migration needs neither.
type Freezer interface {
	// Freeze freezes store2 and records owner (the migration's lock
	// session) as the freeze's owner, replacing an earlier owner when it
	// was frozen already. It returns once every write transaction that
	// began before it has ended (committed ones visible to any snapshot
	// opened after it) and no later one can change a record. A wait for
	// in-flight writers that lasts too long fails with a Transient error:
	// retry it, so that one long transaction cannot stall every writer
	// behind the freeze.
	Freeze(ctx context.Context, owner, message string) error
	// Unfreeze drops the freeze when decide, called with its owner while
	// no other freeze or unfreeze can run, returns true. It reports whether
	// a freeze was dropped; decide is not called when there is none.
	Unfreeze(ctx context.Context, decide func(owner string) (bool, error)) (bool, error)
	// Frozen reports whether store2 is frozen, and by which owner.
	Frozen(ctx context.Context) (owner string, frozen bool, err error)
	// CanFreeze returns "" when the role may capture, freeze and unfreeze
	// store2, else the grant it lacks, as an operator would give it.
	CanFreeze(ctx context.Context) (missing string, err error)
	// FrozenTable names the table the freeze applies to, for messages.
	FrozenTable() string

	// Capture starts recording the keys of the records that writes change,
	// owned by owner (the lock session), replacing an earlier capture and
	// forgetting what it recorded. Like Freeze, it returns once every
	// write transaction in flight has ended, so that a snapshot opened
	// after it sees every write the capture did not record; a wait that
	// lasts too long fails with a Transient error.
	Capture(ctx context.Context, owner string) error
	// Changes opens a snapshot that also reads what the capture recorded
	// before it.
	Changes(ctx context.Context) (ChangeSnapshot, error)
	// EndCapture drops the capture and what it recorded when decide,
	// called with its owner while no capture or freeze can start, returns
	// true. It reports whether one was dropped; decide is not called when
	// there is none.
	EndCapture(ctx context.Context, decide func(owner string) (bool, error)) (bool, error)
	// Capturing reports whether a capture records changes, and its owner.
	Capturing(ctx context.Context) (owner string, capturing bool, err error)
}

// ChangeSnapshot is a snapshot of store2 with the changes the capture
// recorded before it.
type ChangeSnapshot interface {
	Snapshot
	// Changed calls fn once for every record the capture recorded as
	// changed, in (bucket, key) byte order, as the snapshot holds it;
	// present is false when the snapshot holds no such record (deleted),
	// and then only Bucket and Key are set. When what was recorded cannot
	// name the records (a TRUNCATE), it calls nothing and returns all: the
	// whole snapshot must be compared.
	Changed(ctx context.Context, fn func(rec *Record, present bool) error) (all bool, err error)
	// Consume ends the snapshot and forgets what Changed returned: a later
	// ChangeSnapshot returns only what changed since. Close without
	// Consume forgets nothing.
	Consume(ctx context.Context) error
}

// Sentinels of the online migration.
var (
	// ErrCannotFreeze is a store2 (or role) that cannot be frozen: grant
	// what the error names, or migrate offline.
	ErrCannotFreeze = errors.New("store2 cannot be frozen for the cutover")
	// ErrStore2Changed is an offline migration during which store2
	// changed: its copy is not complete.
	ErrStore2Changed = errors.New("store2 changed during the migration")
	// ErrMigrated refuses to unfreeze a store2 whose migration is done
	// without --accept-store2-revert.
	ErrMigrated = errors.New("store2 is retired: the migration is done")
	// ErrFreezeInUse refuses to unfreeze the freeze of a migration that
	// holds the lock and is cutting over: it unfreezes itself if it fails.
	ErrFreezeInUse = errors.New("store2 is frozen by a migration in progress")
)

// FreezeMessage is what a write to the frozen store2 is refused with.
func FreezeMessage(component, prefix string) string {
	return fmt.Sprintf("store2 is frozen: %s migrated to store3 (key %q); restart this component with kind = store3", component, DoneKey(prefix))
}

func freezerOf(src Source) (Freezer, error) {
	f, ok := src.(Freezer)
	if !ok {
		return nil, fmt.Errorf("%w: the store2 source has no freeze: migrate offline", ErrCannotFreeze)
	}
	return f, nil
}

// Unfreeze drops store2's freeze for `deployhook unfreeze`, `run` and a
// migration that starts: why says so in the log. It leaves alone the freeze
// of a migration that holds the lock (ErrFreezeInUse: only that migration
// can write .done, and it unfreezes itself when it fails), and, unless
// acceptRevert, a freeze behind .done (ErrMigrated: store2 is retired).
//
// It is safe against a migration that freezes at the same time: the owner,
// .done and the lock holder are read while the freeze is locked, so that a
// migration that freezes after that read finds no freeze to lose, and one
// that froze before it holds the lock and is left alone. .done and the
// lock holder are read at one moment (readStateKeys), so that a migration
// that writes .done and releases the lock meanwhile is seen either holding
// the lock or done. A freeze whose owner lost the lock belongs to no one:
// its owner can never write .done.
func Unfreeze(ctx context.Context, src Source, kv KV, prefix string, acceptRevert bool, why string, log Logger) (bool, error) {
	fr, err := freezerOf(src)
	if err != nil {
		return false, err
	}
	if log == nil {
		log = discard{}
	}
	cerr := endOrphanCapture(ctx, fr, kv, prefix, log)
	dropped, err := unfreeze(ctx, fr, kv, prefix, acceptRevert, why, log)
	return dropped, errors.Join(err, cerr)
}

// endOrphanCapture drops a change capture whose owner does not hold the
// lock: a migration that ended, or was killed, before its cutover. It only
// recorded keys for that migration's catch-up, and only the lock holder
// can still use it.
func endOrphanCapture(ctx context.Context, fr Freezer, kv KV, prefix string, log Logger) error {
	// A cheap read first, as for the freeze.
	if _, on, err := fr.Capturing(ctx); err != nil {
		return fmt.Errorf("read the change capture on store2 (%s): %w", fr.FrozenTable(), err)
	} else if !on {
		return nil
	}
	dropped, err := fr.EndCapture(ctx, func(owner string) (bool, error) {
		lock, err := kv.Get(ctx, LockKey(prefix))
		if err != nil {
			return false, fmt.Errorf("read %q: %w", LockKey(prefix), err)
		}
		return lock == nil || lock.Session == "" || lock.Session != owner, nil
	})
	if err != nil {
		return fmt.Errorf("drop the change capture on store2 (%s): %w", fr.FrozenTable(), err)
	}
	if dropped {
		logCaptureEnded(log, fr.FrozenTable(), "the migration that made it no longer holds the lock")
	}
	return nil
}

func unfreeze(ctx context.Context, fr Freezer, kv KV, prefix string, acceptRevert bool, why string, log Logger) (bool, error) {
	// A cheap read first: the unfreeze itself locks the table against
	// writers, which `run` must not do on every deploy.
	if _, frozen, err := fr.Frozen(ctx); err != nil {
		return false, fmt.Errorf("read the freeze of store2 (%s): %w", fr.FrozenTable(), err)
	} else if !frozen {
		return false, nil
	}
	refused := error(nil)
	dropped, err := fr.Unfreeze(ctx, func(owner string) (bool, error) {
		keys, err := readStateKeys(ctx, kv, prefix)
		if err != nil {
			return false, err
		}
		if keys.done != nil {
			if !acceptRevert {
				refused = fmt.Errorf("%w (key %q exists): components on store2 would write where no one reads; pass --accept-store2-revert to unfreeze anyway", ErrMigrated, DoneKey(prefix))
				return false, nil
			}
			why += " (although the migration is done: --accept-store2-revert)"
			return true, nil
		}
		if lock := keys.lock; lock != nil && lock.Session != "" && lock.Session == owner {
			refused = fmt.Errorf("%w: the lock holder (session %s) froze it; it unfreezes store2 if it fails", ErrFreezeInUse, owner)
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		return false, fmt.Errorf("unfreeze store2 (%s): %w", fr.FrozenTable(), err)
	}
	if dropped {
		logUnfrozen(log, why)
	}
	return dropped, refused
}
