package migrate_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apcera/deployhook/migrate"
	"github.com/apcera/deployhook/migrate/memkv"
)

// A key corrupted after the copy, in a chunk the copy completed long before
// (the first bucket of three), fails the migration: the cutover's pass
// compares what store3 holds then, not what it held when the copy ended.
func TestCorruptionAfterTheCopyFails(t *testing.T) {
	e := onlineEnv(t, len(records()))
	first, _ := migrate.StoreKey(prefix, "jobs", "job::/sandbox/admin::web000")
	e.src.FreezeErr = func(n int) error {
		e.kv.Put(first, []byte("tampered"), 1)
		return nil
	}
	checkMismatchNoDone(t, e)
}

// checkMismatchNoDone runs e's migration: it must fail with ErrMismatch and
// write no .done.
func checkMismatchNoDone(t *testing.T, e *env) {
	t.Helper()
	_, err := e.m.Run(context.Background())
	if !errors.Is(err, migrate.ErrMismatch) {
		t.Fatalf("error %v, want ErrMismatch", err)
	}
	if st, _ := migrate.ReadState(context.Background(), e.kv, prefix); st.Done != nil {
		t.Fatal(".done written")
	}
}

// listSignal is store3 whose Scan closes listing once armed.
type listSignal struct {
	*memkv.Store
	armed   atomic.Bool
	once    sync.Once
	listing chan struct{}
}

func (k *listSignal) Scan(ctx context.Context, prefix string, fn func(*migrate.Pair) error) error {
	if k.armed.Load() {
		k.once.Do(func() { close(k.listing) })
	}
	return k.Store.Scan(ctx, prefix, fn)
}

// The cutover's pass lists store3 while it reads the frozen store2, instead
// of one after the other: the store2 read here waits for a listing of
// store3 to begin, which a pass that lists store3 only after store2 never
// does.
func TestCutoverListsStore3WhileReadingStore2(t *testing.T) {
	e := onlineEnv(t, len(records()))
	kv := &listSignal{Store: e.kv, listing: make(chan struct{})}
	e.m.KV = kv
	e.src.FreezeErr = func(int) error {
		kv.armed.Store(true)
		return nil
	}
	e.src.ScanErr = func(n, i int) error {
		if !kv.armed.Load() || i != 0 {
			return nil
		}
		select {
		case <-kv.listing:
			return nil
		case <-time.After(30 * time.Second):
			return errors.New("store3 was not listed while the frozen store2 was read")
		}
	}
	if _, err := e.m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	checkDoneMatches(t, e)
}
