package migrate

import (
	"context"
	"errors"
	"fmt"
)

// FreezeName names the freeze: the trigger on the store2 table and its
// function, in the table's schema.
const FreezeName = "deployhook_store2_frozen"

// Freezer is a Source that can freeze store2 for writes at cutover: every
// write (insert, update, delete, truncate) is refused, with SQLSTATE 25006
// and the message it was given, until Unfreeze. The online migration needs
// it; an offline one does not.
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
	// CanFreeze returns "" when the role may freeze and unfreeze store2,
	// else the grant it lacks, as an operator would give it.
	CanFreeze(ctx context.Context) (missing string, err error)
	// FrozenTable names the table the freeze applies to, for messages.
	FrozenTable() string
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
// that froze before it holds the lock and is left alone. A freeze whose
// owner lost the lock belongs to no one: its owner can never write .done.
func Unfreeze(ctx context.Context, src Source, kv KV, prefix string, acceptRevert bool, why string, log Logger) (bool, error) {
	fr, err := freezerOf(src)
	if err != nil {
		return false, err
	}
	if log == nil {
		log = discard{}
	}
	// A cheap read first: the unfreeze itself locks the table against
	// writers, which `run` must not do on every deploy.
	if _, frozen, err := fr.Frozen(ctx); err != nil {
		return false, fmt.Errorf("read the freeze of store2 (%s): %w", fr.FrozenTable(), err)
	} else if !frozen {
		return false, nil
	}
	refused := error(nil)
	dropped, err := fr.Unfreeze(ctx, func(owner string) (bool, error) {
		done, err := kv.Get(ctx, DoneKey(prefix))
		if err != nil {
			return false, fmt.Errorf("read %q: %w", DoneKey(prefix), err)
		}
		if done != nil {
			if !acceptRevert {
				refused = fmt.Errorf("%w (key %q exists): components on store2 would write where no one reads; pass --accept-store2-revert to unfreeze anyway", ErrMigrated, DoneKey(prefix))
				return false, nil
			}
			why += " (although the migration is done: --accept-store2-revert)"
			return true, nil
		}
		lock, err := kv.Get(ctx, LockKey(prefix))
		if err != nil {
			return false, fmt.Errorf("read %q: %w", LockKey(prefix), err)
		}
		if lock != nil && lock.Session != "" && lock.Session == owner {
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

// SnapshotMarker is a Snapshot that can tell cheaply whether store2 changed
// between two snapshots: two snapshots with equal markers see the same
// records. Markers may differ although the records did not (a marker may
// cover more than the table); they never match when the records differ.
type SnapshotMarker interface {
	Marker(ctx context.Context) (string, error)
}

// marker returns snap's marker, "" when it has none.
func (r *run) marker(ctx context.Context, snap Snapshot) string {
	m, ok := snap.(SnapshotMarker)
	if !ok {
		return ""
	}
	s, err := m.Marker(ctx)
	if err != nil {
		r.o.Log.Warnf("read the store2 snapshot's marker: %v (comparing in full)", err)
		return ""
	}
	return s
}
