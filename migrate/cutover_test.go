package migrate_test

import (
	"context"
	"errors"
	"slices"
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

// phasedKV records the prefixes store3 is listed by, before and after the
// freeze of store2.
type phasedKV struct {
	*memkv.Store
	frozen        atomic.Bool
	mu            sync.Mutex
	before, after []string
	indexed       []string // the prefixes Index was called for
	// beforeIndex, when set, runs before Index reads prefix.
	beforeIndex func(prefix string)
}

func (k *phasedKV) Index(ctx context.Context, prefix string) (uint64, error) {
	k.mu.Lock()
	k.indexed = append(k.indexed, prefix)
	k.mu.Unlock()
	if k.beforeIndex != nil {
		k.beforeIndex(prefix)
	}
	return k.Store.Index(ctx, prefix)
}

func (k *phasedKV) wasIndexed(prefix string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Contains(k.indexed, prefix)
}

func (k *phasedKV) Scan(ctx context.Context, prefix string, fn func(*migrate.Pair) error) error {
	k.mu.Lock()
	if k.frozen.Load() {
		k.after = append(k.after, prefix)
	} else {
		k.before = append(k.before, prefix)
	}
	k.mu.Unlock()
	return k.Store.Scan(ctx, prefix, fn)
}

func (k *phasedKV) listed() (before, after []string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.before), slices.Clone(k.after)
}

// earlyEnv is onlineEnv over a phasedKV, whose copy streams routes (the
// smallest bucket, streamed last) once the check of packages has begun:
// jobs and packages are checked during the copy, routes once it has ended,
// all before the freeze.
func earlyEnv(t *testing.T) (*env, *phasedKV) {
	e := onlineEnv(t, len(records()))
	kv := &phasedKV{Store: e.kv}
	e.m.KV = kv
	e.src.FreezeErr = func(int) error {
		kv.frozen.Store(true)
		return nil
	}
	e.src.ScanErr = func(n, i int) error {
		if n == 2 && i == len(records())-1 { // the copy's snapshot, routes begun
			waitUntil(t, func() bool { return kv.wasIndexed(prefix + "packages") })
		}
		return nil
	}
	return e, kv
}

// The buckets the copy completes first (the source streams the largest
// first: jobs, packages, then routes) are listed while the copy goes on,
// the one it completes last once it has ended; the cutover's pass takes
// their tallies from those listings, Consul's index of each bucket being
// unchanged, and lists nothing.
func TestBucketsCheckedDuringTheCopyAreNotListedAgain(t *testing.T) {
	e, kv := earlyEnv(t)
	if _, err := e.m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	checkDoneMatches(t, e)
	before, after := kv.listed()
	for _, c := range []struct {
		chunk                 string
		wantBefore, wantAfter bool
	}{
		{"jobs/j", true, false},
		{"packages/=", true, false},
		{"routes/n", true, false},
	} {
		if b, a := slices.Contains(before, prefix+c.chunk), slices.Contains(after, prefix+c.chunk); b != c.wantBefore || a != c.wantAfter {
			t.Errorf("%q listed before the freeze %t, after it %t; want %t, %t", c.chunk, b, a, c.wantBefore, c.wantAfter)
		}
	}
	if len(after) > 0 {
		t.Errorf("the cutover listed %q", after)
	}
}

// Whatever changes under a bucket checked during the copy, after its
// check, fails the migration: a changed key, a deleted one, a new one, the
// empty record key.
func TestChangesAfterABucketsCheckFail(t *testing.T) {
	web, _ := migrate.StoreKey(prefix, "jobs", "job::/sandbox/admin::web000")
	for name, change := range map[string]func(e *env){
		"changed": func(e *env) { e.kv.Put(web, []byte("tampered"), 1) },
		"deleted": func(e *env) {
			if err := e.kv.Txn(context.Background(), migrate.Fence{}, []migrate.Op{{Verb: migrate.VerbDelete, Key: web}}); err != nil {
				t.Error(err)
			}
		},
		"added":     func(e *env) { e.kv.Put(prefix+"jobs/zzz", []byte("x"), 1) },
		"empty key": func(e *env) { e.kv.Put(prefix+"jobs/", []byte("x"), 1) },
	} {
		t.Run(name, func(t *testing.T) {
			e, kv := earlyEnv(t)
			e.src.FreezeErr = func(int) error {
				kv.frozen.Store(true)
				change(e)
				return nil
			}
			checkMismatchNoDone(t, e)
			if before, _ := kv.listed(); !slices.Contains(before, prefix+"jobs/j") {
				t.Fatal("jobs was not checked during the copy")
			}
		})
	}
}

// A bucket emptied after its check is not taken from the check. Here a
// writer outside the migration sets and deletes a key of jobs just before
// jobs is checked, so that the index of jobs is that delete's tombstone;
// after the check, it deletes every key of jobs through a tree delete of a
// shorter prefix, whose tombstone lies outside jobs: the index of jobs
// stays the first tombstone's. The cutover must find jobs empty and fail,
// not take the check's tallies and write .done over an empty bucket.
func TestACheckStandsOnlyOnKeysThatAreThere(t *testing.T) {
	e, kv := earlyEnv(t)
	foreign := func(ops ...migrate.Op) {
		if err := e.kv.Txn(context.Background(), migrate.Fence{}, ops); err != nil {
			t.Error(err)
		}
	}
	var once sync.Once
	kv.beforeIndex = func(p string) {
		if p == prefix+"jobs" && !kv.frozen.Load() {
			once.Do(func() {
				foreign(migrate.Op{Verb: migrate.VerbSet, Key: prefix + "jobs/zzz", Value: []byte("x")})
				foreign(migrate.Op{Verb: migrate.VerbDelete, Key: prefix + "jobs/zzz"})
			})
		}
	}
	e.src.FreezeErr = func(int) error {
		kv.frozen.Store(true)
		foreign(migrate.Op{Verb: migrate.VerbDeleteTree, Key: prefix + "jo"})
		return nil
	}
	checkMismatchNoDone(t, e)
}

// The same, with the index on a key: a writer outside the migration
// mirrors a store2 update into store3 in a transaction that also deletes
// a key of jobs, just before jobs is checked, so that the check lists the
// mirrored key at the index it read; after the check, a tree delete of a
// shorter prefix empties jobs and leaves its index where the check read
// it (on the deleted key's tombstone, of the same transaction).
func TestAnEmptiedBucketIsNotReused(t *testing.T) {
	e, kv := earlyEnv(t)
	ctx := context.Background()
	foreign := func(ops ...migrate.Op) {
		if err := e.kv.Txn(ctx, migrate.Fence{}, ops); err != nil {
			t.Error(err)
		}
	}
	web := migrate.Record{Bucket: "jobs", Key: "job::/sandbox/admin::web000", Version: 99, Data: []byte("written to both stores")}
	webKey, _ := migrate.StoreKey(prefix, web.Bucket, web.Key)
	var once sync.Once
	kv.beforeIndex = func(p string) {
		if p == prefix+"jobs" && !kv.frozen.Load() {
			once.Do(func() {
				foreign(migrate.Op{Verb: migrate.VerbSet, Key: prefix + "jobs/zzz", Value: []byte("x")})
				if err := e.src.Insert(ctx, web); err != nil {
					t.Error(err)
				}
				foreign(migrate.Op{Verb: migrate.VerbSet, Key: webKey, Value: web.Data, Flags: uint64(web.Version)},
					migrate.Op{Verb: migrate.VerbDelete, Key: prefix + "jobs/zzz"})
			})
		}
	}
	e.src.FreezeErr = func(int) error {
		kv.frozen.Store(true)
		foreign(migrate.Op{Verb: migrate.VerbDeleteTree, Key: prefix + "jo"})
		return nil
	}
	checkMismatchNoDone(t, e)
	if before, _ := kv.listed(); !slices.Contains(before, prefix+"jobs/j") {
		t.Fatal("jobs was not checked during the copy")
	}
}
