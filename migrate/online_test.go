package migrate_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apcera/deployhook/migrate"
	"github.com/apcera/deployhook/migrate/memkv"
)

// onlineEnv is an environment for the online migration: catch-up until a
// round changes nothing, at most five rounds.
func onlineEnv(t *testing.T, n int) *env {
	e := newEnv(t, records()[:n])
	e.m.Opts.CatchUpRounds, e.m.Opts.CatchUpThreshold = 5, 0
	return e
}

// mutate inserts, updates and deletes records of store2 as the components
// would: ins new records, upd existing ones rewritten, del deleted.
func mutate(t *testing.T, src *memkv.Source, tag string, ins, upd, del int) {
	t.Helper()
	ctx := context.Background()
	recs := src.Records()
	for i := range ins {
		if err := src.Insert(ctx, migrate.Record{Bucket: "jobs", Key: fmt.Sprintf("new-%s-%d", tag, i), Version: 1, Data: []byte(tag)}); err != nil {
			t.Error(err)
		}
	}
	for i := range upd {
		r := recs[i]
		r.Version++
		r.Data = append(r.Data, tag...)
		if err := src.Insert(ctx, r); err != nil {
			t.Error(err)
		}
	}
	for i := range del {
		r := recs[len(recs)-1-i]
		if _, err := src.Delete(ctx, r.Bucket, r.Key); err != nil {
			t.Error(err)
		}
	}
}

// checkDoneMatches asserts that store3 holds store2's records, and .done
// names their count and digest.
func checkDoneMatches(t *testing.T, e *env) *migrate.State {
	t.Helper()
	final := e.src.Records()
	checkCopy(t, e.kv, final)
	st, err := migrate.ReadState(context.Background(), e.kv, prefix)
	if err != nil {
		t.Fatal(err)
	}
	var want migrate.Tally
	for _, r := range final {
		k, _ := migrate.RelKey(r.Bucket, r.Key)
		want.Add(k, r.Version, r.Data)
	}
	if st.Done == nil || st.Done.RecordsMigrated != want.Count || st.Done.Digest != want.Digest.String() {
		t.Fatalf(".done = %+v, want %d records, digest %s", st.Done, want.Count, want.Digest)
	}
	return st
}

func TestOnlineCatchUpAppliesChangesMadeDuringCopy(t *testing.T) {
	e := onlineEnv(t, 300)
	var once sync.Once
	e.kv.BeforeTxn = func(seq int64, f migrate.Fence, ops []migrate.Op) error {
		if len(ops) > 10 { // a copy batch: the snapshot is open
			once.Do(func() { mutate(t, e.src, "during-copy", 5, 3, 4) })
		}
		return nil
	}
	res, err := e.m.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	st := checkDoneMatches(t, e)
	e.log.find(t, "Catch-up round 1: 12 records changed in store2 (8 set, 4 deleted)")
	e.log.find(t, "Catch-up round 2: 0 records changed in store2 (0 set, 0 deleted)")
	e.log.find(t, "store2 frozen for writes (trigger deployhook_store2_frozen on store2_records)")
	// Round 3 is the cutover's pass over the frozen store2: the verification.
	e.log.find(t, "Catch-up round 3: 0 records changed in store2 (0 set, 0 deleted)")
	line := e.log.find(t, "Migrated store2 -> store3 (took: ")
	if !strings.HasSuffix(line, fmt.Sprintf("records migrated: %d, records failed: 0)", 300+5-4)) {
		t.Fatalf("line %q", line)
	}
	e.log.find(t, "Phase timings: capture=")
	if res.Rounds != 3 || res.CaughtUp != 12 || res.Migrated != 301 || st.Done.FrozenFor == "" {
		t.Fatalf("result %+v, .done %+v", res, st.Done)
	}
	if _, err := time.ParseDuration(st.Done.FrozenFor); err != nil {
		t.Fatalf("frozen_for %q: %v", st.Done.FrozenFor, err)
	}
	if st.Status.State != migrate.StateDone || st.Status.Phase != migrate.PhaseDone {
		t.Fatalf(".status %+v", st.Status)
	}
	// After .done the freeze stays: store2 is retired.
	owner, frozen, _ := e.src.Frozen(context.Background())
	if !frozen || owner == "" {
		t.Fatal("store2 was unfrozen after .done")
	}
	err = e.src.Insert(context.Background(), migrate.Record{Bucket: "jobs", Key: "late", Version: 1})
	want := `store2 is frozen: job_manager migrated to store3 (key "apcera/store3/jmdb/migration/.done"); restart this component with kind = store3`
	if !errors.Is(err, memkv.ErrFrozen) || !strings.HasSuffix(err.Error(), want) {
		t.Fatalf("write after .done: %v, want ErrFrozen with %q", err, want)
	}
}

func TestOnlineCatchUpStops(t *testing.T) {
	for _, tc := range []struct {
		name              string
		threshold, rounds int
		wantPreFreeze     int
	}{
		{"at the threshold", 25, 10, 1},
		{"after the rounds", 5, 3, 3},
		{"no rounds: freeze after the copy", 0, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := onlineEnv(t, 200)
			e.m.Opts.CatchUpThreshold, e.m.Opts.CatchUpRounds = tc.threshold, tc.rounds
			var refused atomic.Int64
			opens := 0
			e.src.OpenErr = func(n int) error {
				// Each snapshot opened after the copy's sees 20 more
				// changes than the last: a busy store2, until the
				// freeze refuses them.
				if n < 3 {
					return nil
				}
				opens++
				err := e.src.Insert(context.Background(), migrate.Record{Bucket: "jobs", Key: fmt.Sprintf("busy-%d", n), Version: 1})
				if errors.Is(err, memkv.ErrFrozen) {
					refused.Add(1)
					return nil
				}
				mutate(t, e.src, fmt.Sprint(n), 9, 10, 0)
				return nil
			}
			res, err := e.m.Run(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			checkDoneMatches(t, e)
			frozen := lineIndex(e.log, "store2 frozen for writes")
			last := lineIndex(e.log, fmt.Sprintf("Catch-up round %d:", tc.wantPreFreeze))
			next := lineIndex(e.log, fmt.Sprintf("Catch-up round %d:", tc.wantPreFreeze+1))
			if frozen < 0 || (tc.wantPreFreeze > 0 && last > frozen) || next < frozen {
				t.Fatalf("freeze at line %d, round %d at %d, round %d at %d; want the freeze after round %d: %v",
					frozen, tc.wantPreFreeze, last, tc.wantPreFreeze+1, next, tc.wantPreFreeze, e.log.lines)
			}
			if refused.Load() == 0 {
				t.Fatal("no write was refused after the freeze")
			}
			if res.Rounds < tc.wantPreFreeze+1 {
				t.Fatalf("%d rounds", res.Rounds)
			}
		})
	}
}

func lineIndex(l *logger, prefix string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, x := range l.lines {
		if strings.HasPrefix(x.text, prefix) {
			return i
		}
	}
	return -1
}

// A writer runs through the whole migration: every write store2
// acknowledged is in store3, and every write after the freeze is refused.
func TestOnlineConcurrentWriterLosesNothing(t *testing.T) {
	e := onlineEnv(t, 500)
	e.m.Opts.CatchUpThreshold = 10
	ctx, stop := context.WithCancel(context.Background())
	var acked, refused atomic.Int64
	// Every store3 write waits for a store2 write attempt: the writer
	// overlaps the copy, the catch-up and the cutover, whatever the speed
	// of either.
	tick := make(chan struct{}, 1)
	e.kv.BeforeTxn = func(int64, migrate.Fence, []migrate.Op) error {
		select {
		case <-tick:
		case <-time.After(10 * time.Second):
			t.Error("no store2 write attempt within 10s")
		}
		return nil
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ctx.Err() == nil; i++ {
			var err error
			switch i % 3 {
			case 0:
				err = e.src.Insert(ctx, migrate.Record{Bucket: "routes", Key: fmt.Sprintf("w%d", i), Version: int64(i), Data: []byte("w")})
			case 1:
				err = e.src.Insert(ctx, migrate.Record{Bucket: "jobs", Key: fmt.Sprintf("job::/sandbox/admin::web%03d", i%500), Version: int64(i), Data: []byte("u")})
			case 2:
				_, err = e.src.Delete(ctx, "routes", fmt.Sprintf("w%d", i-2))
			}
			switch {
			case err == nil:
				acked.Add(1)
			case errors.Is(err, memkv.ErrFrozen):
				refused.Add(1)
			default:
				t.Error(err)
			}
			select {
			case tick <- struct{}{}:
			case <-ctx.Done():
			}
		}
	})
	_, err := e.m.Run(context.Background())
	stop()
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	checkDoneMatches(t, e)
	if acked.Load() == 0 || refused.Load() == 0 {
		t.Fatalf("%d writes acknowledged, %d refused: the writer did not overlap the migration", acked.Load(), refused.Load())
	}
}

// unfrozen asserts that store2 accepts writes again, the log says why,
// and no .done was written.
func unfrozen(t *testing.T, e *env) {
	t.Helper()
	if _, frozen, _ := e.src.Frozen(context.Background()); frozen {
		t.Fatal("store2 is still frozen")
	}
	e.log.find(t, "store2 unfrozen: the migration ended without .done: ")
	if st, _ := migrate.ReadState(context.Background(), e.kv, prefix); st.Done != nil {
		t.Fatal(".done written")
	}
}

func TestOnlineUnfreezesOnFailureAfterFreeze(t *testing.T) {
	ctx := context.Background()
	t.Run("record failure", func(t *testing.T) {
		e := onlineEnv(t, 50)
		e.src.FreezeErr = func(int) error {
			return e.src.Insert(ctx, migrate.Record{Bucket: "migration", Key: "x", Version: 1})
		}
		_, err := e.m.Run(ctx)
		if !errors.Is(err, migrate.ErrRecordFailures) {
			t.Fatalf("error %v, want ErrRecordFailures", err)
		}
		unfrozen(t, e)
	})
	t.Run("lock lost", func(t *testing.T) {
		e := onlineEnv(t, 50)
		e.src.FreezeErr = func(int) error { mutate(t, e.src, "x", 1, 0, 0); return nil }
		e.kv.BeforeTxn = func(seq int64, f migrate.Fence, ops []migrate.Op) error {
			if _, frozen, _ := e.src.Frozen(ctx); frozen && f.Session != "" {
				if err := e.kv.DestroySession(ctx, f.Session); err != nil {
					t.Error(err)
				}
			}
			return nil
		}
		_, err := e.m.Run(ctx)
		if !errors.Is(err, migrate.ErrLockLost) {
			t.Fatalf("error %v, want ErrLockLost", err)
		}
		unfrozen(t, e)
	})
	t.Run("interrupted", func(t *testing.T) {
		e := onlineEnv(t, 50)
		rctx, cancel := context.WithCancel(ctx)
		e.src.FreezeErr = func(int) error { mutate(t, e.src, "x", 1, 0, 0); return nil }
		e.kv.BeforeTxn = func(seq int64, f migrate.Fence, ops []migrate.Op) error {
			if _, frozen, _ := e.src.Frozen(ctx); frozen {
				cancel()
				return context.Canceled
			}
			return nil
		}
		_, err := e.m.Run(rctx)
		if !errors.Is(err, migrate.ErrInterrupted) {
			t.Fatalf("error %v, want ErrInterrupted", err)
		}
		unfrozen(t, e)
	})
	t.Run("done refused", func(t *testing.T) {
		e := onlineEnv(t, 50)
		e.kv.BeforeTxn = func(seq int64, f migrate.Fence, ops []migrate.Op) error {
			for _, op := range ops {
				if op.Key == migrate.DoneKey(prefix) && op.Verb == migrate.VerbSet {
					return &migrate.TxnError{Errors: []string{"Permission denied"}}
				}
			}
			return nil
		}
		_, err := e.m.Run(ctx)
		var te *migrate.TxnError
		if !errors.As(err, &te) {
			t.Fatalf("error %v, want the .done write's", err)
		}
		unfrozen(t, e)
	})
	t.Run("mismatch", func(t *testing.T) {
		e := onlineEnv(t, 50)
		// A writer that ignores the lock keeps changing store3.
		e.kv.BeforeTxn = func(seq int64, f migrate.Fence, ops []migrate.Op) error {
			if _, frozen, _ := e.src.Frozen(ctx); frozen {
				go e.kv.Put(prefix+"jobs/rogue", []byte("x"), 1)
			}
			return nil
		}
		e.src.FreezeErr = func(int) error { e.kv.Put(prefix+"jobs/rogue", []byte("x"), 1); return nil }
		_, err := e.m.Run(ctx)
		if !errors.Is(err, migrate.ErrMismatch) {
			t.Fatalf("error %v, want ErrMismatch", err)
		}
		unfrozen(t, e)
	})
}

func TestOnlineUnfreezeFailureLeavesItLogged(t *testing.T) {
	e := onlineEnv(t, 20)
	ctx := context.Background()
	e.src.FreezeErr = func(int) error {
		return e.src.Insert(ctx, migrate.Record{Bucket: "migration", Key: "x", Version: 1})
	}
	e.src.UnfreezeErr = func() error { return errors.New("permission denied for table store2_records") }
	if _, err := e.m.Run(ctx); !errors.Is(err, migrate.ErrRecordFailures) {
		t.Fatalf("error %v", err)
	}
	if _, frozen, _ := e.src.Frozen(ctx); !frozen {
		t.Fatal("unfrozen despite the error")
	}
	e.log.find(t, "store2 stays frozen: unfreeze store2: permission denied")
}

func TestRunReleasesOrphanFreeze(t *testing.T) {
	e := onlineEnv(t, 20)
	ctx := context.Background()
	// A migration killed during its cutover: its session is gone.
	if err := e.src.Freeze(ctx, "dead-session", "frozen"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.Run(ctx); err != nil {
		t.Fatal(err)
	}
	e.log.find(t, "store2 unfrozen: an earlier migration froze it and ended without .done")
	if owner, frozen, _ := e.src.Frozen(ctx); !frozen || owner == "dead-session" {
		t.Fatalf("frozen %t by %q, want this migration's freeze", frozen, owner)
	}
}

// frozenByHolder takes the migration lock and freezes store2 as its
// holder: a migration in its cutover.
func frozenByHolder(t *testing.T, e *env) migrate.Lock {
	t.Helper()
	ctx := context.Background()
	lock, err := e.kv.TryLock(ctx, migrate.LockKey(prefix), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.src.Freeze(ctx, lock.Session(), "frozen"); err != nil {
		t.Fatal(err)
	}
	return lock
}

func TestUnfreeze(t *testing.T) {
	ctx := context.Background()
	e := onlineEnv(t, 5)
	lock := frozenByHolder(t, e)
	if err := e.src.Capture(ctx, lock.Session()); err != nil {
		t.Fatal(err)
	}
	// The lock holder's freeze and capture: a migration in its cutover.
	dropped, err := migrate.Unfreeze(ctx, e.src, e.kv, prefix, false, "operator", e.log)
	if !errors.Is(err, migrate.ErrFreezeInUse) || dropped {
		t.Fatalf("live owner: %t, %v", dropped, err)
	}
	if _, on, _ := e.src.Capturing(ctx); !on {
		t.Fatal("the lock holder's change capture was dropped")
	}
	// Behind .done: retired unless the revert is accepted.
	e.kv.Put(migrate.DoneKey(prefix), []byte(`{}`), 0)
	if err := lock.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	dropped, err = migrate.Unfreeze(ctx, e.src, e.kv, prefix, false, "operator", e.log)
	if !errors.Is(err, migrate.ErrMigrated) || dropped {
		t.Fatalf("after .done: %t, %v", dropped, err)
	}
	// The capture of a migration that no longer holds the lock goes,
	// whatever becomes of the freeze: it only grows.
	if _, on, _ := e.src.Capturing(ctx); on {
		t.Fatal("an orphan change capture was kept")
	}
	e.log.find(t, "change capture on store2_records dropped (trigger deployhook_store2_capture): the migration that made it no longer holds the lock")
	dropped, err = migrate.Unfreeze(ctx, e.src, e.kv, prefix, true, "operator", e.log)
	if err != nil || !dropped {
		t.Fatalf("accepted revert: %t, %v", dropped, err)
	}
	e.log.find(t, "store2 unfrozen: operator (although the migration is done: --accept-store2-revert)")
	// Nothing frozen: nothing to do.
	if dropped, err = migrate.Unfreeze(ctx, e.src, e.kv, prefix, false, "operator", e.log); err != nil || dropped {
		t.Fatalf("not frozen: %t, %v", dropped, err)
	}
}

func TestRunAcceptStore2RevertUnfreezesAfterDone(t *testing.T) {
	e := onlineEnv(t, 20)
	ctx := context.Background()
	if _, err := e.m.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if _, frozen, _ := e.src.Frozen(ctx); !frozen {
		t.Fatal("a second run without --accept-store2-revert unfroze store2")
	}
	e.m.Opts.AcceptStore2Revert = true
	if _, err := e.m.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if _, frozen, _ := e.src.Frozen(ctx); frozen {
		t.Fatal("--accept-store2-revert left store2 frozen")
	}
	e.log.find(t, "store2 unfrozen: deployhook migrate (although the migration is done: --accept-store2-revert)")
}

// A write to store2 the change capture misses (its trigger disabled, or
// session_replication_role = replica) is still found: the frozen store2 is
// read again, not taken as the copy read it, and the migration fails. So
// does, offline, a write that leaves the count as it was.
func TestAWriteTheCaptureMissesIsFound(t *testing.T) {
	for _, offline := range []bool{false, true} {
		t.Run(fmt.Sprintf("offline=%t", offline), func(t *testing.T) {
			e := onlineEnv(t, 300)
			e.m.Opts.Offline = offline
			var once sync.Once
			e.kv.BeforeTxn = func(seq int64, f migrate.Fence, ops []migrate.Op) error {
				if len(ops) > 10 {
					once.Do(func() {
						r := e.src.Records()[7]
						r.Version++
						if err := e.src.InsertUncaptured(context.Background(), r); err != nil {
							t.Error(err)
						}
					})
				}
				return nil
			}
			_, err := e.m.Run(context.Background())
			want := migrate.ErrMismatch
			if offline {
				want = migrate.ErrStore2Changed
			}
			if !errors.Is(err, want) {
				t.Fatalf("error %v, want %v", err, want)
			}
			if st, _ := migrate.ReadState(context.Background(), e.kv, prefix); st.Done != nil {
				t.Fatal(".done written")
			}
			if _, frozen, _ := e.src.Frozen(context.Background()); frozen {
				t.Fatal("store2 left frozen")
			}
		})
	}
}

func TestOfflineRefusesChangedStore2(t *testing.T) {
	e := newEnv(t, records()[:300])
	e.m.Opts.Offline = true
	var once sync.Once
	e.kv.BeforeTxn = func(seq int64, f migrate.Fence, ops []migrate.Op) error {
		if len(ops) > 10 {
			once.Do(func() { mutate(t, e.src, "during-copy", 2, 0, 1) })
		}
		return nil
	}
	_, err := e.m.Run(context.Background())
	want := "store2 changed during the migration (3 records): stop the components (runbook step 2) or migrate online"
	if !errors.Is(err, migrate.ErrStore2Changed) || !strings.Contains(err.Error(), want) {
		t.Fatalf("error %v, want %q", err, want)
	}
	if st, _ := migrate.ReadState(context.Background(), e.kv, prefix); st.Done != nil || st.Status.State != migrate.StateFailed {
		t.Fatalf("state %+v", st)
	}
	if e.src.Freezes() != 0 {
		t.Fatal("offline froze store2")
	}
	// Unchanged, offline completes without catch-up or freeze.
	e = newEnv(t, records()[:300])
	e.m.Opts.Offline = true
	res, err := e.m.Run(context.Background())
	if err != nil || res.Rounds != 0 || e.src.Freezes() != 0 || res.Done.FrozenFor != "" {
		t.Fatalf("offline: %+v, %v", res, err)
	}
}

func TestCannotFreeze(t *testing.T) {
	ctx := context.Background()
	e := onlineEnv(t, 20)
	e.src.FreezeMissing = "GRANT TRIGGER ON TABLE public.store2_records TO jm"
	rep, err := e.m.DryRun(ctx)
	if !errors.Is(err, migrate.ErrDryRunFailed) || !errors.Is(err, migrate.ErrCannotFreeze) || rep.FreezeOK || !strings.Contains(err.Error(), "GRANT TRIGGER") {
		t.Fatalf("dry run: %v, %+v", err, rep)
	}
	before := len(e.kv.Writes())
	if _, err := e.m.Run(ctx); !errors.Is(err, migrate.ErrCannotFreeze) || len(e.kv.Writes()) != before {
		t.Fatalf("run: %v, %d writes", err, len(e.kv.Writes())-before)
	}
	e.m.Opts.Offline = true
	if rep, err := e.m.DryRun(ctx); err != nil || rep.Online {
		t.Fatalf("offline dry run: %v, %+v", err, rep)
	}
	e.src.FreezeMissing = ""
	e.m.Opts.Offline = false
	if rep, err := e.m.DryRun(ctx); err != nil || !rep.FreezeOK {
		t.Fatalf("dry run: %v, %+v", err, rep)
	}
}

func TestStatusShowsPhases(t *testing.T) {
	e := onlineEnv(t, 200)
	var mu sync.Mutex
	var phases []string
	var once sync.Once
	e.kv.BeforeTxn = func(seq int64, f migrate.Fence, ops []migrate.Op) error {
		if len(ops) > 10 {
			once.Do(func() { mutate(t, e.src, "x", 3, 0, 0) })
		}
		for _, op := range ops {
			if op.Key == migrate.StatusKey(prefix) {
				var s migrate.Status
				if err := json.Unmarshal(op.Value, &s); err != nil {
					t.Error(err)
				}
				mu.Lock()
				p := fmt.Sprintf("%s %d %d", s.Phase, s.Round, s.Delta)
				if len(phases) == 0 || phases[len(phases)-1] != p {
					phases = append(phases, p)
				}
				mu.Unlock()
			}
		}
		return nil
	}
	if _, err := e.m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := []string{"copying 0 0", "catching-up 0 0", "catching-up 1 3", "catching-up 2 0", "cutover 2 0", "cutover 3 0", "done 3 0"}
	if fmt.Sprint(phases) != fmt.Sprint(want) {
		t.Fatalf("phases %q, want %q", phases, want)
	}
}

// A key of store3 corrupted behind the copy's back fails the migration,
// online as offline: the catch-up must not repair it silently, as if store2
// had changed.
func TestCorruptionBehindTheCopyFails(t *testing.T) {
	for _, c := range []struct {
		offline bool
		maxList int64 // the chunks listed whole, or in parts
	}{{false, 0}, {true, 0}, {false, 50}, {true, 50}} {
		t.Run(fmt.Sprintf("offline=%t,maxList=%d", c.offline, c.maxList), func(t *testing.T) {
			if c.maxList > 0 {
				defer migrate.SetMaxListRecords(c.maxList)()
			}
			offline := c.offline
			e := onlineEnv(t, 300)
			e.m.Opts.Offline = offline
			// A key the first copy batch wrote, corrupted once it is
			// stored, while the third batch is written.
			var mu sync.Mutex
			var first string
			batches := 0
			e.kv.BeforeTxn = func(seq int64, f migrate.Fence, ops []migrate.Op) error {
				if len(ops) <= 10 {
					return nil
				}
				mu.Lock()
				batches++
				if batches == 1 {
					first = ops[len(ops)-1].Key
				}
				n, key := batches, first
				mu.Unlock()
				if n == 3 {
					waitUntil(t, func() bool { p, _ := e.kv.Get(context.Background(), key); return p != nil })
					e.kv.Put(key, []byte("tampered"), 1)
				}
				return nil
			}
			checkMismatchNoDone(t, e)
			if _, frozen, _ := e.src.Frozen(context.Background()); frozen {
				t.Fatal("store2 left frozen")
			}
		})
	}
}

// A catch-up round reads what the capture recorded, not the table, and
// the cutover's pass takes the frozen store2's tallies from the copy when
// store2 is unchanged since the copy's snapshot: an idle store2 costs no
// scan after the copy, and the capture is gone at the end.
func TestCatchUpReadsOnlyTheChanges(t *testing.T) {
	e := onlineEnv(t, 100)
	scans := map[int]bool{}
	var mu sync.Mutex
	e.src.ScanErr = func(n, i int) error {
		mu.Lock()
		scans[n] = true
		mu.Unlock()
		return nil
	}
	res, err := e.m.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	checkDoneMatches(t, e)
	// Snapshots: 1 the never-used check, 2 the copy, 3 round 1, 4 the
	// cutover's pass.
	if !scans[2] || scans[3] || scans[4] || res.Rounds != 2 {
		t.Fatalf("scanned %v, %d rounds: %v", scans, res.Rounds, e.log.lines)
	}
	e.log.find(t, "Catch-up round 1: 0 records changed in store2 (0 set, 0 deleted)")
	if l := e.log.find(t, "Phase timings:"); !strings.Contains(l, "store2 unchanged since the copy: yes)") {
		t.Errorf("phase line %q, want store2 unchanged since the copy", l)
	}
	if _, on, _ := e.src.Capturing(context.Background()); on {
		t.Fatal("the change capture is left after .done")
	}
}

// A TRUNCATE is recorded without its records: the round compares the
// whole snapshot instead.
func TestCatchUpAfterTruncate(t *testing.T) {
	e := onlineEnv(t, 300)
	var once sync.Once
	e.kv.BeforeTxn = func(seq int64, f migrate.Fence, ops []migrate.Op) error {
		if len(ops) > 10 {
			once.Do(func() {
				if err := e.src.Truncate(context.Background()); err != nil {
					t.Error(err)
				}
				mutate(t, e.src, "after-truncate", 4, 0, 0)
			})
		}
		return nil
	}
	if _, err := e.m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	checkDoneMatches(t, e)
	e.log.find(t, "store2 was truncated: catch-up round 1 compares all of it")
	e.log.find(t, "Catch-up round 1: 304 records changed in store2 (4 set, 300 deleted)")
}

// The chunks that differ are compared a group at a time when they hold more
// store3 keys than the bound: one key here, so a group per chunk.
func TestCatchUpInGroups(t *testing.T) {
	defer migrate.SetMaxDiffKeys(1)()
	e := onlineEnv(t, 300)
	var once sync.Once
	e.kv.BeforeTxn = func(seq int64, f migrate.Fence, ops []migrate.Op) error {
		if len(ops) > 10 {
			once.Do(func() {
				mutate(t, e.src, "during-copy", 5, 3, 4)
				// Another bucket, and a key that escapes into its own chunk.
				if err := e.src.Insert(context.Background(), migrate.Record{Bucket: "routes", Key: ":late", Version: 2, Data: []byte("r")}); err != nil {
					t.Error(err)
				}
			})
		}
		return nil
	}
	if _, err := e.m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	checkDoneMatches(t, e)
	e.log.find(t, "Catch-up round 1: 13 records changed in store2 (9 set, 4 deleted)")
}

// A round that fails half way, reading the changes or forgetting them once
// applied, forgets nothing: a new snapshot gives the same changes again,
// and store3 ends equal to store2.
func TestCatchUpRoundFailureForgetsNothing(t *testing.T) {
	for _, where := range []string{"changed", "consume"} {
		t.Run(where, func(t *testing.T) {
			e := onlineEnv(t, 300)
			e.m.Opts.Retry = migrate.Backoff{Min: time.Millisecond, Max: time.Millisecond, GiveUp: time.Second}
			var once sync.Once
			e.kv.BeforeTxn = func(seq int64, f migrate.Fence, ops []migrate.Op) error {
				if len(ops) > 10 {
					once.Do(func() { mutate(t, e.src, "during-copy", 5, 3, 4) })
				}
				return nil
			}
			// Snapshots: 1 the never-used check, 2 the copy, 3 round 1.
			fail := func(n int) error {
				if n == 3 {
					return migrate.Transient(errors.New("connection reset by peer"))
				}
				return nil
			}
			if where == "changed" {
				e.src.ScanErr = func(n, i int) error {
					if i == 6 {
						return fail(n)
					}
					return nil
				}
			} else {
				e.src.ConsumeErr = fail
			}
			if _, err := e.m.Run(context.Background()); err != nil {
				t.Fatal(err)
			}
			checkDoneMatches(t, e)
			e.log.find(t, "store2 failed mid-stream in catch-up round 1, taking a new snapshot (attempt 2 of 3)")
			e.log.find(t, "Catch-up round 1: 12 records changed in store2 (8 set, 4 deleted)")
		})
	}
}

// waitUntil polls cond until it holds; after 10 s it fails the test (from
// any goroutine) and returns.
func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Error("condition not met within 10 s")
			return
		}
		time.Sleep(time.Millisecond)
	}
}
