// Package migratetest is the conformance suite every implementation of
// migrate.KV, migrate.Locker and migrate.Source passes: the in-memory fakes
// of memkv, and the real Consul and PostgreSQL implementations. It checks
// each behaviour the migration relies on.
package migratetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/apcera/deployhook/migrate"
)

// lostWithin is how long a real Consul may take to report a lost lock.
const lostWithin = 30 * time.Second

func testPrefix(t *testing.T) string {
	return fmt.Sprintf("migratetest/%d/", rand.Uint64())
}

// Store is what a TestKV factory returns.
type Store struct {
	KV     migrate.KV
	Locker migrate.Locker
}

// TestKV runs the KV and Locker conformance suite. newStore returns a
// fresh store; the suite works under a random prefix of its own.
func TestKV(t *testing.T, newStore func(t *testing.T) Store) {
	ctx := context.Background()
	setup := func(t *testing.T) (migrate.KV, migrate.Locker, string, migrate.Lock) {
		st := newStore(t)
		kv, lk := st.KV, st.Locker
		p := testPrefix(t)
		l, err := lk.TryLock(ctx, p+"migration/.lock", 5*time.Second)
		if err != nil {
			t.Fatalf("TryLock: %v", err)
		}
		t.Cleanup(func() { _ = l.Unlock(context.Background()) })
		return kv, lk, p, l
	}
	fenceOf := func(p string, l migrate.Lock) migrate.Fence {
		return migrate.Fence{LockKey: p + "migration/.lock", Session: l.Session()}
	}
	set := func(k, v string, flags uint64) migrate.Op {
		return migrate.Op{Verb: migrate.VerbSet, Key: k, Value: []byte(v), Flags: flags}
	}

	t.Run("SetGetScanKeys", func(t *testing.T) {
		kv, _, p, l := setup(t)
		ops := []migrate.Op{set(p+"b/2", "two", 2), set(p+"a/1", "one", 1), set(p+"b/1", "", 1<<63), set(p+"c", "leaf", 0), set(p+"a/x/y", "deep", 5)}
		if err := kv.Txn(ctx, fenceOf(p, l), ops); err != nil {
			t.Fatalf("Txn: %v", err)
		}
		got, err := kv.Get(ctx, p+"b/2")
		if err != nil || got == nil || string(got.Value) != "two" || got.Flags != 2 || got.ModifyIndex == 0 {
			t.Fatalf("Get = %+v, %v", got, err)
		}
		if got, err := kv.Get(ctx, p+"b/1"); err != nil || got == nil || len(got.Value) != 0 || got.Flags != 1<<63 {
			t.Fatalf("Get of an empty value = %+v, %v", got, err)
		}
		if got, err := kv.Get(ctx, p+"absent"); err != nil || got != nil {
			t.Fatalf("Get of an absent key = %+v, %v", got, err)
		}
		pairs, err := scanAll(ctx, kv, p+"b/")
		if err != nil || len(pairs) != 2 || pairs[0].Key != p+"b/1" || pairs[1].Key != p+"b/2" {
			t.Fatalf("Scan = %+v, %v", pairs, err)
		}
		keys, err := kv.Keys(ctx, p, "/")
		if want := []string{p + "a/", p + "b/", p + "c", p + "migration/"}; err != nil || !slices.Equal(keys, want) {
			t.Fatalf("Keys(sep /) = %q, %v; want %q", keys, err, want)
		}
		keys, err = kv.Keys(ctx, p+"a/", "")
		if want := []string{p + "a/1", p + "a/x/y"}; err != nil || !slices.Equal(keys, want) {
			t.Fatalf("Keys = %q, %v; want %q", keys, err, want)
		}
	})

	t.Run("ScanSortedByteOrder", func(t *testing.T) {
		kv, _, p, l := setup(t)
		var ops []migrate.Op
		for _, k := range []string{"z", "A", "=3D", "-", "_", "a.b", "0", "=C3=A9", "a"} {
			ops = append(ops, set(p+"s/"+k, k, 0))
		}
		if err := kv.Txn(ctx, fenceOf(p, l), ops); err != nil {
			t.Fatal(err)
		}
		pairs, err := scanAll(ctx, kv, p+"s/")
		if err != nil {
			t.Fatal(err)
		}
		if !slices.IsSortedFunc(pairs, func(a, b migrate.Pair) int { return bytes.Compare([]byte(a.Key), []byte(b.Key)) }) || len(pairs) != len(ops) {
			t.Fatalf("Scan not sorted: %v", pairs)
		}
	})

	// Scan hands over every pair as Get reads it: value byte for byte
	// (binary, empty, large), flags, modify index, and the session of a
	// lock key; across several transactions, so that indexes differ.
	t.Run("ScanMatchesGet", func(t *testing.T) {
		kv, _, p, l := setup(t)
		var keys []string
		for tx := range 3 {
			var ops []migrate.Op
			for i := range 100 {
				k := fmt.Sprintf("%sv/%d-%03d", p, tx, i)
				v := bytes.Repeat([]byte{byte(i), 0, 0xFF, '"', '\\'}, i*i%97)
				if i == 99 {
					v = bytes.Repeat([]byte{byte(tx)}, 100_000)
				}
				ops = append(ops, migrate.Op{Verb: migrate.VerbSet, Key: k, Value: v, Flags: uint64(i) << (tx * 20)})
				keys = append(keys, k)
			}
			if err := kv.Txn(ctx, fenceOf(p, l), ops); err != nil {
				t.Fatal(err)
			}
		}
		got, err := scanAll(ctx, kv, p+"v/")
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(keys) {
			t.Fatalf("Scan returned %d pairs, want %d", len(got), len(keys))
		}
		for i, k := range keys {
			want, err := kv.Get(ctx, k)
			if err != nil || want == nil {
				t.Fatalf("Get(%q) = %+v, %v", k, want, err)
			}
			g := got[i]
			if g.Key != want.Key || !bytes.Equal(g.Value, want.Value) || g.Flags != want.Flags || g.ModifyIndex != want.ModifyIndex || g.ModifyIndex == 0 || g.Session != "" {
				t.Fatalf("Scan pair %d = %q flags %d index %d (%d bytes); Get: %q flags %d index %d (%d bytes)",
					i, g.Key, g.Flags, g.ModifyIndex, len(g.Value), want.Key, want.Flags, want.ModifyIndex, len(want.Value))
			}
		}
		lock, err := scanAll(ctx, kv, p+"migration/")
		if err != nil || len(lock) != 1 || lock[0].Session != l.Session() {
			t.Fatalf("Scan of the lock key = %+v, %v; want held by %s", lock, err, l.Session())
		}
	})

	t.Run("ScanEmptyAndStopped", func(t *testing.T) {
		kv, _, p, l := setup(t)
		n := 0
		if err := kv.Scan(ctx, p+"none/", func(*migrate.Pair) error { n++; return nil }); err != nil || n != 0 {
			t.Fatalf("Scan of an empty prefix: %d pairs, %v", n, err)
		}
		if err := kv.Txn(ctx, fenceOf(p, l), []migrate.Op{set(p+"x/1", "1", 0), set(p+"x/2", "2", 0), set(p+"x/3", "3", 0)}); err != nil {
			t.Fatal(err)
		}
		stop := errors.New("stop")
		err := kv.Scan(ctx, p+"x/", func(*migrate.Pair) error { n++; return stop })
		if err != stop || n != 1 {
			t.Fatalf("Scan = %v after %d pairs, want the callback's error as is after 1", err, n)
		}
	})

	t.Run("DeleteAndDeleteTree", func(t *testing.T) {
		kv, _, p, l := setup(t)
		f := fenceOf(p, l)
		if err := kv.Txn(ctx, f, []migrate.Op{set(p+"t/1", "x", 0), set(p+"t/2/3", "x", 0), set(p+"t2", "x", 0), set(p+"u", "x", 0)}); err != nil {
			t.Fatal(err)
		}
		if err := kv.Txn(ctx, f, []migrate.Op{{Verb: migrate.VerbDeleteTree, Key: p + "t/"}, {Verb: migrate.VerbDelete, Key: p + "u"}, {Verb: migrate.VerbDelete, Key: p + "absent"}}); err != nil {
			t.Fatal(err)
		}
		keys, err := kv.Keys(ctx, p, "")
		if want := []string{p + "migration/.lock", p + "t2"}; err != nil || !slices.Equal(keys, want) {
			t.Fatalf("after deletes: %q, %v; want %q", keys, err, want)
		}
	})

	t.Run("RolledBackTxnIsAnErrorAndAtomic", func(t *testing.T) {
		kv, _, p, l := setup(t)
		f := fenceOf(p, l)
		if err := kv.Txn(ctx, f, []migrate.Op{set(p+"done", "x", 0)}); err != nil {
			t.Fatal(err)
		}
		err := kv.Txn(ctx, f, []migrate.Op{set(p+"new", "x", 0), {Verb: migrate.VerbCheckNotExists, Key: p + "done"}, set(p+"done", "y", 0)})
		var te *migrate.TxnError
		if !errors.As(err, &te) || errors.Is(err, migrate.ErrLockLost) {
			t.Fatalf("check-not-exists on a present key: %v, want a *TxnError", err)
		}
		if got, _ := kv.Get(ctx, p+"new"); got != nil {
			t.Fatal("a rolled-back transaction wrote a key")
		}
		if got, _ := kv.Get(ctx, p+"done"); got == nil || string(got.Value) != "x" {
			t.Fatalf("a rolled-back transaction changed a key: %+v", got)
		}
		if err := kv.Txn(ctx, f, []migrate.Op{{Verb: migrate.VerbCheckNotExists, Key: p + "other"}, set(p+"other", "z", 0)}); err != nil {
			t.Fatalf("check-not-exists on an absent key: %v", err)
		}
	})

	t.Run("CheckIndexOfAbsentKeyFails", func(t *testing.T) {
		kv, _, p, _ := setup(t)
		before, err := kv.Index(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		err = kv.Txn(ctx, migrate.Fence{}, []migrate.Op{{Verb: migrate.VerbCheckIndex, Key: p + "probe", Index: 1<<64 - 1}, set(p+"probe", "x", 0)})
		var te *migrate.TxnError
		if !errors.As(err, &te) {
			t.Fatalf("probe: %v, want a *TxnError", err)
		}
		if got, _ := kv.Get(ctx, p+"probe"); got != nil {
			t.Fatal("probe wrote its key")
		}
		if after, err := kv.Index(ctx, p); err != nil || after != before {
			t.Fatalf("index %d -> %d (%v) after a rolled-back probe", before, after, err)
		}
	})

	// What verification relies on to reuse a bucket listed earlier: the
	// index of a prefix moves with every set or delete under it, and only
	// then.
	t.Run("IndexOfAPrefix", func(t *testing.T) {
		kv, _, p, l := setup(t)
		f := fenceOf(p, l)
		write := func(ops ...migrate.Op) {
			t.Helper()
			if err := kv.Txn(ctx, f, ops); err != nil {
				t.Fatal(err)
			}
		}
		write(set(p+"b/1", "x", 0), set(p+"b/2", "x", 0), set(p+"b/3/4", "x", 0))
		last := uint64(0)
		check := func(what string, moved bool) {
			t.Helper()
			i, err := kv.Index(ctx, p+"b")
			if err != nil {
				t.Fatal(err)
			}
			if (i != last) != moved {
				t.Fatalf("%s: index of %q %d -> %d", what, p+"b", last, i)
			}
			last = i
		}
		check("after the first sets", true)
		write(set(p+"c/1", "x", 0), set(p+"a", "x", 0))
		check("after sets outside the prefix", false)
		write(set(p+"b/2", "x", 0))
		check("after a set to the same value", false) // Consul writes nothing
		write(set(p+"b/2", "y", 0))
		check("after a set to another value", true)
		write(set(p+"b/2", "y", 7))
		check("after a set to other flags", true)
		write(migrate.Op{Verb: migrate.VerbDelete, Key: p + "b/1"})
		check("after a delete", true)
		write(migrate.Op{Verb: migrate.VerbDelete, Key: p + "b/absent"})
		check("after a delete of an absent key", false)
		write(migrate.Op{Verb: migrate.VerbDeleteTree, Key: p + "b/3/"})
		check("after a tree delete", true)
		write(set(p+"bb/1", "x", 0))
		check("after a set of a longer prefix", true) // Consul counts it
	})

	t.Run("MaxOps", func(t *testing.T) {
		kv, _, p, l := setup(t)
		lim := kv.Limits(ctx)
		if lim.MaxOps < 2 || lim.MaxBody <= 0 || lim.MaxValue <= 0 {
			t.Fatalf("Limits = %+v", lim)
		}
		ops := make([]migrate.Op, lim.MaxOps-1)
		for i := range ops {
			ops[i] = set(fmt.Sprintf("%sm/%03d", p, i), "x", 0)
		}
		if err := kv.Txn(ctx, fenceOf(p, l), ops); err != nil {
			t.Fatalf("MaxOps ops with the fence: %v", err)
		}
		if err := kv.Txn(ctx, fenceOf(p, l), append(ops, set(p+"m/over", "x", 0))); !errors.Is(err, migrate.ErrTooLarge) {
			t.Fatalf("MaxOps+1 ops: %v, want ErrTooLarge", err)
		}

	})

	t.Run("FenceRejectsAfterSessionDestroyed", func(t *testing.T) {
		kv, lk, p, l := setup(t)
		f := fenceOf(p, l)
		if err := lk.DestroySession(ctx, l.Session()); err != nil {
			t.Fatal(err)
		}
		select {
		case <-l.Lost():
		case <-time.After(lostWithin):
			t.Fatal("Lost() did not fire after the session was destroyed")
		}
		err := kv.Txn(ctx, f, []migrate.Op{set(p+"late", "x", 0)})
		if !errors.Is(err, migrate.ErrLockLost) {
			t.Fatalf("fenced write after the loss: %v, want ErrLockLost", err)
		}
		var te *migrate.TxnError
		if !errors.As(err, &te) {
			t.Fatalf("fenced write after the loss: %v, want a *TxnError too", err)
		}
		if got, _ := kv.Get(ctx, p+"late"); got != nil {
			t.Fatal("a write behind a lost fence landed")
		}
	})

	t.Run("LocksExclusive", func(t *testing.T) {
		kv, lk, p, l := setup(t)
		key := p + "migration/.lock"
		if got, err := kv.Get(ctx, key); err != nil || got == nil || got.Session != l.Session() {
			t.Fatalf("lock key %+v, %v: want session %q", got, err, l.Session())
		}
		start := time.Now()
		if _, err := lk.TryLock(ctx, key, 300*time.Millisecond); !errors.Is(err, migrate.ErrLockBusy) {
			t.Fatalf("second TryLock: %v, want ErrLockBusy", err)
		}
		if time.Since(start) < 250*time.Millisecond {
			t.Fatalf("TryLock gave up after %s, before its wait", time.Since(start))
		}
		if err := l.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		l2, err := lk.TryLock(ctx, key, 10*time.Second)
		if err != nil {
			t.Fatalf("TryLock after Unlock: %v", err)
		}
		defer l2.Unlock(ctx)
		if l2.Session() == l.Session() {
			t.Fatal("new lock reuses the old session")
		}
		// The old session's fence no longer passes.
		if err := kv.Txn(ctx, migrate.Fence{LockKey: key, Session: l.Session()}, []migrate.Op{set(p+"x", "x", 0)}); !errors.Is(err, migrate.ErrLockLost) {
			t.Fatalf("old fence: %v, want ErrLockLost", err)
		}
	})

	t.Run("TryLockWaitsForRelease", func(t *testing.T) {
		_, lk, p, l := setup(t)
		got := make(chan error, 1)
		go func() {
			l2, err := lk.TryLock(ctx, p+"migration/.lock", lostWithin)
			if err == nil {
				err = l2.Unlock(ctx)
			}
			got <- err
		}()
		if err := l.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		if err := <-got; err != nil {
			t.Fatalf("waiting TryLock: %v", err)
		}
	})
}

// scanAll collects what Scan hands over, values copied.
func scanAll(ctx context.Context, kv migrate.KV, prefix string) ([]migrate.Pair, error) {
	var out []migrate.Pair
	err := kv.Scan(ctx, prefix, func(p *migrate.Pair) error {
		c := *p
		c.Value = bytes.Clone(p.Value)
		out = append(out, c)
		return nil
	})
	return out, err
}

// SourceWriter is what a Source factory may also return to let the suite
// check snapshot isolation and Unchanged: Insert adds or replaces a
// record, Delete removes one.
type SourceWriter interface {
	Insert(ctx context.Context, r migrate.Record) error
	Delete(ctx context.Context, bucket, key string) (bool, error)
}

// TestSource runs the Source conformance suite. newSource returns a store2
// holding records.
func TestSource(t *testing.T, newSource func(t *testing.T, records []migrate.Record) migrate.Source) {
	ctx := context.Background()
	recs := []migrate.Record{
		{Bucket: "jobs", Key: "b", Version: 2, Data: []byte("jb")},
		{Bucket: "jobs", Key: "a", Version: 1, Data: []byte("ja")},
		{Bucket: "jobs", Key: "é", Version: 3, Data: []byte{0, 1, 2}},
		{Bucket: "jobs", Key: "Z", Version: 4, Data: []byte{}},
		{Bucket: "Jobs", Key: "x", Version: -1, Data: bytes.Repeat([]byte("big"), 100000)},
		{Bucket: "packages", Key: "job::/sandbox/admin::web", Version: 1 << 40, Data: []byte("p")},
		{Bucket: "jobs", Key: "a b", Version: 5, Data: []byte("space")},
	}
	byteOrder := func(a, b migrate.Record) int {
		if c := bytes.Compare([]byte(a.Bucket), []byte(b.Bucket)); c != 0 {
			return c
		}
		return bytes.Compare([]byte(a.Key), []byte(b.Key))
	}
	want := slices.Clone(recs)
	slices.SortFunc(want, byteOrder)
	// read collects what one of a snapshot's reads (Scan, Stream) returns.
	read := func(t *testing.T, each func(context.Context, func(*migrate.Record) error) error) []migrate.Record {
		var got []migrate.Record
		if err := each(ctx, func(r *migrate.Record) error {
			c := *r
			c.Data = bytes.Clone(r.Data)
			got = append(got, c)
			return nil
		}); err != nil {
			t.Fatalf("read: %v", err)
		}
		return got
	}
	scan := func(t *testing.T, snap migrate.Snapshot) []migrate.Record { return read(t, snap.Scan) }
	same := func(t *testing.T, got, want []migrate.Record) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("scanned %d records, want %d", len(got), len(want))
		}
		for i := range got {
			g, w := got[i], want[i]
			if g.Bucket != w.Bucket || g.Key != w.Key || g.Version != w.Version || !bytes.Equal(g.Data, w.Data) {
				t.Fatalf("record %d = %q/%q v%d (%d bytes), want %q/%q v%d (%d bytes)", i, g.Bucket, g.Key, g.Version, len(g.Data), w.Bucket, w.Key, w.Version, len(w.Data))
			}
		}
	}

	t.Run("CountAndByteOrder", func(t *testing.T) {
		src := newSource(t, recs)
		snap, err := src.Snapshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer snap.Close(ctx)
		if n, err := snap.Count(ctx); err != nil || n != int64(len(recs)) {
			t.Fatalf("Count = %d, %v; want %d", n, err, len(recs))
		}
		same(t, scan(t, snap), want)
	})

	// A source that streams bucket by bucket does it the largest bucket
	// first, ends each once, and returns every record; with many buckets
	// it may stream as Stream does, ending none.
	t.Run("StreamByBucket", func(t *testing.T) {
		many := slices.Clone(recs)
		for i := range 40 {
			many = append(many, migrate.Record{Bucket: fmt.Sprintf("b%02d", i%20), Key: fmt.Sprint(i), Version: 1, Data: []byte("x")})
		}
		for _, rs := range [][]migrate.Record{recs, many} {
			snap, err := newSource(t, rs).Snapshot(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer snap.Close(ctx)
			count := map[string]int{}
			for _, r := range rs {
				count[r.Bucket]++
			}
			// Counted first, as the migration does: a source may count
			// by bucket, and every bucket counts.
			if n, err := snap.Count(ctx); err != nil || n != int64(len(rs)) {
				t.Fatalf("Count before StreamByBucket = %d, %v; want %d", n, err, len(rs))
			}
			var got []migrate.Record
			var ended []string
			err = snap.StreamByBucket(ctx, func(r *migrate.Record) error {
				if slices.Contains(ended, r.Bucket) {
					t.Fatalf("a record of %q after its end", r.Bucket)
				}
				c := *r
				c.Data = bytes.Clone(r.Data)
				got = append(got, c)
				return nil
			}, func(b string) error {
				if slices.Contains(ended, b) || len(got) == 0 || got[len(got)-1].Bucket != b {
					t.Fatalf("end of %q after %d records, buckets ended %q", b, len(got), ended)
				}
				if n := len(ended); n > 0 && count[ended[n-1]] < count[b] {
					t.Fatalf("bucket %q (%d records) after %q (%d)", b, count[b], ended[n-1], count[ended[n-1]])
				}
				ended = append(ended, b)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(ended) != 0 && len(ended) != len(count) {
				t.Fatalf("%d of %d buckets ended", len(ended), len(count))
			}
			if n, err := snap.Count(ctx); err != nil || n != int64(len(rs)) {
				t.Fatalf("Count after StreamByBucket = %d, %v; want %d", n, err, len(rs))
			}
			all := slices.Clone(rs)
			slices.SortFunc(all, byteOrder)
			slices.SortFunc(got, byteOrder)
			same(t, got, all)
		}
		stop := errors.New("stop")
		snap, err := newSource(t, recs).Snapshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer snap.Close(ctx)
		if err := snap.StreamByBucket(ctx, func(*migrate.Record) error { return nil }, func(string) error { return stop }); !errors.Is(err, stop) {
			t.Fatalf("StreamByBucket = %v, want end's error", err)
		}
	})

	t.Run("StreamReturnsEveryRecord", func(t *testing.T) {
		snap, err := newSource(t, recs).Snapshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer snap.Close(ctx)
		got := read(t, snap.Stream)
		slices.SortFunc(got, byteOrder)
		same(t, got, want)
		stop := errors.New("stop")
		n := 0
		if err := snap.Stream(ctx, func(*migrate.Record) error { n++; return stop }); !errors.Is(err, stop) || n != 1 {
			t.Fatalf("Stream = %v after %d records, want the callback's error after 1", err, n)
		}
	})

	t.Run("ScanStopsOnCallbackError", func(t *testing.T) {
		snap, err := newSource(t, recs).Snapshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer snap.Close(ctx)
		stop := errors.New("stop")
		n := 0
		err = snap.Scan(ctx, func(*migrate.Record) error { n++; return stop })
		if !errors.Is(err, stop) || n != 1 {
			t.Fatalf("Scan = %v after %d records, want the callback's error after 1", err, n)
		}
	})

	t.Run("Empty", func(t *testing.T) {
		snap, err := newSource(t, nil).Snapshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer snap.Close(ctx)
		if n, err := snap.Count(ctx); err != nil || n != 0 {
			t.Fatalf("Count = %d, %v", n, err)
		}
		same(t, scan(t, snap), nil)
	})

	t.Run("SnapshotIsolation", func(t *testing.T) {
		src := newSource(t, recs)
		w, ok := src.(SourceWriter)
		if !ok {
			t.Skip("source does not implement SourceWriter")
		}
		snap, err := src.Snapshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer snap.Close(ctx)
		if n, err := snap.Count(ctx); err != nil || n != int64(len(recs)) {
			t.Fatalf("Count = %d, %v", n, err)
		}
		if err := w.Insert(ctx, migrate.Record{Bucket: "jobs", Key: "new", Version: 1, Data: []byte("n")}); err != nil {
			t.Fatal(err)
		}
		if n, err := snap.Count(ctx); err != nil || n != int64(len(recs)) {
			t.Fatalf("Count after an insert = %d, %v", n, err)
		}
		same(t, scan(t, snap), want)
	})

	// Unchanged is true only when nothing was written between the two
	// snapshots: any insert, update (even to the same values) or delete
	// makes it false, and so does a wrong count.
	t.Run("Unchanged", func(t *testing.T) {
		n := int64(len(recs))
		for _, c := range []struct {
			name  string
			write func(SourceWriter) error
		}{
			{"nothing", nil},
			{"insert", func(w SourceWriter) error {
				return w.Insert(ctx, migrate.Record{Bucket: "jobs", Key: "new", Version: 1, Data: []byte("n")})
			}},
			{"update", func(w SourceWriter) error { r := recs[1]; r.Version++; return w.Insert(ctx, r) }},
			{"rewrite", func(w SourceWriter) error { return w.Insert(ctx, recs[1]) }},
			{"delete", func(w SourceWriter) error { _, err := w.Delete(ctx, recs[2].Bucket, recs[2].Key); return err }},
			{"delete and insert", func(w SourceWriter) error {
				if _, err := w.Delete(ctx, recs[2].Bucket, recs[2].Key); err != nil {
					return err
				}
				return w.Insert(ctx, migrate.Record{Bucket: "jobs", Key: "new", Version: 1, Data: []byte("n")})
			}},
		} {
			t.Run(c.name, func(t *testing.T) {
				src := newSource(t, recs)
				w, ok := src.(SourceWriter)
				if !ok {
					t.Skip("source does not implement SourceWriter")
				}
				first, err := src.Snapshot(ctx)
				if err != nil {
					t.Fatal(err)
				}
				m, err := first.Mark(ctx)
				first.Close(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if c.write != nil {
					if err := c.write(w); err != nil {
						t.Fatal(err)
					}
				}
				later, err := src.Snapshot(ctx)
				if err != nil {
					t.Fatal(err)
				}
				defer later.Close(ctx)
				got, err := later.Unchanged(ctx, m, n)
				if err != nil || got != (c.write == nil) {
					t.Fatalf("Unchanged = %t, %v; want %t", got, err, c.write == nil)
				}
				if got, err := later.Unchanged(ctx, m, n+1); err != nil || got {
					t.Fatalf("Unchanged with a wrong count = %t, %v; want false", got, err)
				}
			})
		}
	})
}
