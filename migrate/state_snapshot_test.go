package migrate_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/apcera/deployhook/migrate"
	"github.com/apcera/deployhook/migrate/memkv"
)

// finishingKV is store3 in which a migration finishes (finish) right after
// the reader's n-th read (Get or Scan), between two reads of one that reads
// its state key by key.
type finishingKV struct {
	*memkv.Store
	n      int
	reads  int
	finish func()
}

func (k *finishingKV) read() {
	if k.reads++; k.reads == k.n {
		k.finish()
	}
}

func (k *finishingKV) Get(ctx context.Context, key string) (*migrate.Pair, error) {
	defer k.read()
	return k.Store.Get(ctx, key)
}

func (k *finishingKV) Scan(ctx context.Context, prefix string, fn func(*migrate.Pair) error) error {
	defer k.read()
	return k.Store.Scan(ctx, prefix, fn)
}

// finish is what a worker does at the end of a migration: .done, then
// .status done, then the lock released.
func finish(t *testing.T, kv *memkv.Store, lock migrate.Lock) {
	kv.Put(migrate.DoneKey(prefix), []byte(`{"component":"job_manager"}`), 0)
	putStatus(t, kv, migrate.StateDone)
	if err := lock.Unlock(context.Background()); err != nil {
		t.Error(err)
	}
}

func putStatus(t *testing.T, kv *memkv.Store, state string) {
	b, err := json.Marshal(migrate.Status{State: state, Component: "job_manager", Host: "central-1", PID: 4242})
	if err != nil {
		t.Fatal(err)
	}
	kv.Put(migrate.StatusKey(prefix), b, 0)
}

// A migration that finishes while its state is read is read either still
// running or done, never as one that stopped without finishing (running,
// lock free, no .done): `wait` on another host reported that for a
// migration that went on to write .done (TestConcurrentRuns, under load).
func TestStateIsReadAtOneMoment(t *testing.T) {
	ctx := context.Background()
	for n := 1; n <= 3; n++ {
		kv := memkv.New()
		lock, err := kv.TryLock(ctx, migrate.LockKey(prefix), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		putStatus(t, kv, migrate.StateRunning)
		st, err := migrate.ReadState(ctx, &finishingKV{Store: kv, n: n, finish: func() { finish(t, kv, lock) }}, prefix)
		if err != nil {
			t.Fatal(err)
		}
		if got := st.Current(); got != migrate.StateRunning && got != migrate.StateDone {
			t.Errorf("finished after read %d: read as %q (done %v, status %q, lock %q), want running or done",
				n, got, st.Done != nil, st.Status.State, st.LockSession)
		}
	}
}

// An unfreeze while the migration that froze store2 finishes leaves store2
// frozen: it reads .done and the lock holder at one moment, and either the
// holder still holds the lock or .done is there.
func TestUnfreezeRacingTheFinishKeepsTheFreeze(t *testing.T) {
	ctx := context.Background()
	for n := 1; n <= 2; n++ {
		e := onlineEnv(t, 5)
		lock := frozenByHolder(t, e)
		putStatus(t, e.kv, migrate.StateRunning)
		kv := &finishingKV{Store: e.kv, n: n, finish: func() { finish(t, e.kv, lock) }}
		dropped, err := migrate.Unfreeze(ctx, e.src, kv, prefix, false, "run", e.log)
		if dropped || !errors.Is(err, migrate.ErrFreezeInUse) && !errors.Is(err, migrate.ErrMigrated) {
			t.Errorf("finished after read %d: unfrozen %t, %v; want store2 left frozen", n, dropped, err)
		}
		if _, frozen, _ := e.src.Frozen(ctx); !frozen {
			t.Errorf("finished after read %d: the freeze behind .done was dropped", n)
		}
	}
}
