package migrate

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"
)

// This file holds the steps of the migration, in the order of DESIGN.md
// "The migration, step by step", and every log line operators grep for:
// the command layer logs with the caller's file:line, which must point
// here, so those lines are logged by the functions at the end of this file.

// Options configure a migration. Zero values take the defaults noted.
type Options struct {
	Component   string
	Prefix      string
	Hostname    string        // what .status and .done record
	PID         int           // default os.Getpid()
	LockTimeout time.Duration // 0: wait for ever
	// LockWait is how long one lock attempt waits before .status is checked
	// for a dead holder on this host (default 1s).
	LockWait    time.Duration
	InFlight    int // transactions in flight, default 6
	ToolVersion string
	Log         Logger // default: discard
	// Progress, when set, is called (serialised) after each transaction.
	Progress    func(done, total int64)
	StatusEvery time.Duration      // default 2s
	PIDAlive    func(pid int) bool // default: kill(pid, 0)
	Now         func() time.Time   // default time.Now; what .status records
	Retry       Backoff            // transient errors; default 100ms..5s, give up after 2m
	// Attempts bounds the fresh snapshots taken when store2 fails
	// transiently mid-stream (default 3).
	Attempts int

	// Offline skips catch-up and freeze: the components must be stopped,
	// and a store2 that changed since the snapshot fails the migration
	// (ErrStore2Changed). Online (the default) needs a Source that is a
	// Freezer, and the privileges to freeze.
	Offline bool
	// CatchUpThreshold ends the catch-up before the freeze once a round
	// changes at most that many records (the command's default: 100).
	CatchUpThreshold int
	// CatchUpRounds bounds the catch-up rounds before the freeze (the
	// command's default: 10); 0 freezes right after the copy.
	CatchUpRounds int
	// AcceptStore2Revert drops the freeze of a migration that is done.
	AcceptStore2Revert bool
}

// Migrator migrates one component.
type Migrator struct {
	Source Source
	KV     KV
	Locker Locker
	Opts   Options
}

// Result is the outcome of Run.
type Result struct {
	AlreadyDone   bool
	Migrated      int64 // online: the frozen store2's count
	Failed        int64
	Took          time.Duration
	Done          *Done          // the done key, written or found
	FailedRecords []FailedRecord // at most MaxFailedRecords
	Elsewhere     *Status        // the other host's failure, with ErrFailedElsewhere
	Rounds        int            // catch-up rounds, the cutover's passes included
	CaughtUp      int64          // records the catch-up rounds set or deleted
	FrozenFor     time.Duration  // freeze to .done; 0 offline
}

type discard struct{}

func (discard) Infof(string, ...interface{})  {}
func (discard) Warnf(string, ...interface{})  {}
func (discard) Errorf(string, ...interface{}) {}

func (o Options) withDefaults() Options {
	if o.PID == 0 {
		o.PID = os.Getpid()
	}
	if o.LockWait <= 0 {
		o.LockWait = time.Second
	}
	if o.InFlight <= 0 {
		o.InFlight = 6
	}
	if o.Log == nil {
		o.Log = discard{}
	}
	if o.StatusEvery <= 0 {
		o.StatusEvery = 2 * time.Second
	}
	if o.PIDAlive == nil {
		o.PIDAlive = pidAlive
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Retry.Min <= 0 {
		o.Retry.Min = 100 * time.Millisecond
	}
	if o.Retry.Max <= 0 {
		o.Retry.Max = 5 * time.Second
	}
	if o.Retry.GiveUp <= 0 {
		o.Retry.GiveUp = 2 * time.Minute
	}
	if o.Attempts <= 0 {
		o.Attempts = 3
	}
	return o
}

// CheckPrefix lives in rules.go with the other rules of the store contract.

// run is one invocation of Run (or DryRun).
type run struct {
	m      *Migrator
	o      Options
	start  time.Time // o.Now() at start: what .status and .done record
	clock  time.Time // time.Now() at start: what took measures
	fence  Fence
	limits Limits
	counts counts
	fails  failures
	status *statusWriter
	wait   lockWait     // step 2, for the "Waited ..." line
	cu     catchUpState // the online migration's catch-up
	freeze freezeState  // and its freeze
	times  phaseTimes
	// chunkStats are what the copy saw of each chunk's keys: how store3 is
	// best listed (scanStore).
	chunkStats chunkStats
	// checks are the buckets listed while the copy ran (early.go).
	checks *earlyChecks
	// copied is what the copy read of its snapshot (copy.go).
	copied copiedSnapshot
}

func newRun(m *Migrator, o Options) *run {
	r := &run{m: m, o: o, start: o.Now().UTC(), clock: time.Now()}
	r.counts.progress = o.Progress
	return r
}

// Run performs the migration: steps 1 to 9 of DESIGN.md, online (catch-up
// and cutover, "Online migration and cutover") unless Opts.Offline.
func (m *Migrator) Run(ctx context.Context) (res *Result, err error) {
	o := m.Opts.withDefaults()
	r := newRun(m, o)
	if err := CheckPrefix(o.Prefix); err != nil {
		return nil, err
	}

	// 1. The done key: already migrated, no lock taken.
	if d, present, err := r.readDone(ctx); err != nil {
		return nil, err
	} else if present {
		logAlreadyDone(o.Log, o.Prefix)
		if o.AcceptStore2Revert {
			if _, err := Unfreeze(ctx, m.Source, m.KV, o.Prefix, true, "deployhook migrate", o.Log); err != nil {
				return nil, err
			}
		}
		return &Result{AlreadyDone: true, Done: d}, nil
	}

	// A store2 that was never used is refused before the lock: taking it
	// is a write, and a cluster that never used store2 gets none.
	if err := r.checkSource(ctx); err != nil {
		return nil, err
	}
	// Online, a role that cannot freeze store2 is refused before anything
	// is written, rather than after the copy.
	if !o.Offline {
		missing, err := r.canFreeze(ctx)
		if err != nil {
			return nil, err
		}
		if missing != "" {
			return nil, fmt.Errorf("%w: %s; or stop the components and migrate offline (--offline)", ErrCannotFreeze, missing)
		}
		r.freeze.fr = m.Source.(Freezer)
	}

	// 2. The lock; losing it cancels the work.
	lock, err := r.acquire(ctx)
	if err != nil {
		return nil, err
	}
	if r.wait.busy {
		o.Log.Infof("Waited %s for the lock held by %s", time.Since(r.wait.start), r.wait.who())
	}
	r.fence = Fence{LockKey: LockKey(o.Prefix), Session: lock.Session()}
	work, cancel := context.WithCancelCause(ctx)
	go func() {
		select {
		case <-lock.Lost():
			cancel(ErrLockLost)
		case <-work.Done():
		}
	}()
	defer func() {
		cancel(nil)
		r.release(ctx, lock) // 9.
		r.thaw(ctx, err)     // a freeze without .done
		r.endCapture(ctx, endedBecause(err))
	}()

	// 3. Under the lock: done meanwhile, or failed elsewhere meanwhile.
	if d, present, err := r.readDone(work); err != nil {
		return nil, r.cause(ctx, work, err)
	} else if present {
		logAlreadyDone(o.Log, o.Prefix)
		return &Result{AlreadyDone: true, Done: d}, nil
	}
	if st, err := readStatus(work, m.KV, o.Prefix); err != nil {
		o.Log.Warnf("%v: ignoring it", err)
	} else if st != nil && st.State == StateFailed && st.Finished.After(r.start) {
		err := fmt.Errorf("%w: host %s (pid %d) failed at %s while this process waited for the lock: %s",
			ErrFailedElsewhere, st.Host, st.PID, st.Finished.Format(time.RFC3339Nano), st.Error)
		o.Log.Errorf("%v", err)
		return &Result{Elsewhere: st, FailedRecords: st.FailedRecords}, err
	}
	// A freeze without .done is an earlier migration's, killed during its
	// cutover: under the lock, no one else can complete behind it.
	r.releaseOrphanFreeze(work)

	// 4 to 8.
	logStarting(o.Log)
	r.clock = time.Now() // took counts from here, not from the lock wait
	res, err = r.migrate(work)
	if err != nil {
		err = r.cause(ctx, work, err)
		res.Took = time.Since(r.clock)
		logFailed(o.Log, res.Took, r.counts.done.Load(), res.Failed, err)
		r.status.finish(ctx, StateFailed, err.Error(), r.now())
		return res, err
	}
	r.status.finish(ctx, StateDone, "", r.now())
	return res, nil
}

// migrate runs steps 4 to 8: the snapshot copy, then, online, catch-up and
// cutover, offline, verification and the check that store2 did not change;
// then the done key.
func (r *run) migrate(ctx context.Context) (*Result, error) {
	o := r.o
	res := &Result{}
	// Online, the change capture starts before the copy's snapshot: every
	// write that snapshot misses is recorded for the catch-up.
	if !o.Offline {
		start := time.Now()
		if err := r.capture(ctx); err != nil {
			return res, err
		}
		r.times.capture = time.Since(start)
	}
	read, err := r.copyPhase(ctx)
	res.Migrated = r.counts.done.Load()
	res.Failed, res.FailedRecords = r.fails.get()
	if err != nil {
		return res, err
	}

	var final Tally
	if o.Offline {
		start := time.Now()
		err = r.verifyUnchanged(ctx, read)
		r.times.verify = time.Since(start)
		final = read
	} else {
		start := time.Now()
		err = r.catchUp(ctx)
		r.times.catchUp = time.Since(start)
		if err == nil {
			final, err = r.cutover(ctx)
		}
	}
	res.Rounds, res.CaughtUp = r.cu.rounds, r.cu.changed
	res.Failed, res.FailedRecords = r.fails.get()
	if err != nil {
		return res, err
	}

	// 8. The done key, then the line operators wait for.
	start := time.Now()
	took := time.Since(r.clock)
	done := &Done{
		Component: o.Component, Host: o.Hostname, PID: o.PID,
		Started: Time{r.start}, Finished: r.now(), Took: took.String(),
		RecordsMigrated: final.Count, Digest: final.Digest.String(), ToolVersion: o.ToolVersion,
	}
	if !r.freeze.at.IsZero() {
		res.FrozenFor = time.Since(r.freeze.at)
		done.FrozenFor = res.FrozenFor.String()
	}
	r.freeze.doneTried = true
	if err := r.writeDone(ctx, done); err != nil {
		return res, err
	}
	r.freeze.doneWritten = true
	r.times.done = time.Since(start)
	res.Done, res.Took, res.Migrated = done, took, final.Count
	logMigrated(o.Log, took, final.Count, res.Failed)
	if !o.Offline {
		logFrozenFor(o.Log, res.FrozenFor)
	}
	logPhaseTimings(o.Log, r.times, res)
	return res, nil
}

// copyPhase is steps 4 to 7, starting over from a new snapshot when store2
// fails transiently mid-stream. It returns the tally of what was copied.
func (r *run) copyPhase(ctx context.Context) (read Tally, err error) {
	err = r.withFreshSnapshots(ctx, ", starting over from a new snapshot", func() error {
		read, err = r.copyAttempt(ctx)
		return err
	})
	return read, err
}

// copyAttempt is steps 4 to 7 on one snapshot.
func (r *run) copyAttempt(ctx context.Context) (Tally, error) {
	o := r.o
	r.counts.done.Store(0)
	r.fails.reset()

	// 4. One consistent snapshot of store2.
	start := time.Now()
	snap, err := openSnapshot(ctx, r.m.Source, o.Retry, o.Log)
	if err != nil {
		return Tally{}, err
	}
	defer closeSnapshot(ctx, snap, o.Log)
	total, err := snap.Count(ctx)
	if err != nil {
		return Tally{}, &sourceError{fmt.Errorf("count store2 records: %w", err)}
	}
	r.counts.total.Store(total)
	r.limits = r.m.KV.Limits(ctx)
	if err := r.startStatus(ctx); err != nil {
		return Tally{}, err
	}
	r.times.open = time.Since(start)

	// 5. Wipe the leftovers of an earlier attempt.
	start = time.Now()
	if err := r.wipe(ctx); err != nil {
		return Tally{}, err
	}
	r.times.wipe = time.Since(start)

	// 6, 7. Copy, several transactions in flight; record failures counted.
	start = time.Now()
	r.counts.stored(0) // the progress bar's rate and ETA start here
	read, err := r.copy(ctx, snap)
	r.times.copy = time.Since(start)
	if err != nil {
		return read, err
	}
	return read, r.fails.err(total)
}

// checkSource opens and closes a store2 snapshot, retrying transient
// failures, to refuse a store2 that was never used before anything else.
func (r *run) checkSource(ctx context.Context) error {
	snap, err := openSnapshot(ctx, r.m.Source, r.o.Retry, r.o.Log)
	if err != nil {
		return err
	}
	closeSnapshot(ctx, snap, r.o.Log)
	return nil
}

// startStatus writes the running status and keeps it current.
func (r *run) startStatus(ctx context.Context) error {
	if r.status == nil {
		o := r.o
		r.status = &statusWriter{
			kv: r.m.KV, key: StatusKey(o.Prefix), fence: r.fence, every: o.StatusEvery, log: o.Log, retry: o.Retry,
			base: Status{Component: o.Component, Host: o.Hostname, PID: o.PID, Session: r.fence.Session, Started: Time{r.start}},
			count: func() (int64, int64, []FailedRecord) {
				_, list := r.fails.get()
				return r.counts.done.Load(), r.counts.total.Load(), list
			},
			phase: PhaseCopying,
		}
	}
	return r.status.start(ctx, r.now)
}

func (r *run) now() Time { return Time{r.o.Now().UTC()} }

// txn writes ops behind the fence, retrying transient errors.
func (r *run) txn(ctx context.Context, what string, ops []Op) error {
	return r.retry(ctx, what, func() error { return r.m.KV.Txn(ctx, r.fence, ops) })
}

func (r *run) retry(ctx context.Context, what string, fn func() error) error {
	return retry(ctx, r.o.Retry, r.o.Log, what, fn)
}

// cause names why the work stopped: an interrupt, a lost lock, or err.
func (r *run) cause(parent, work context.Context, err error) error {
	switch {
	case parent.Err() != nil && !errors.Is(err, ErrInterrupted):
		return fmt.Errorf("%w: %v", ErrInterrupted, err)
	case errors.Is(context.Cause(work), ErrLockLost) && !errors.Is(err, ErrLockLost):
		return fmt.Errorf("%w: %v", ErrLockLost, err)
	}
	return err
}

// The lines operators grep for (DESIGN.md quotes them), logged here so
// that their source is migrator.go.

func logAlreadyDone(log Logger, prefix string) {
	log.Infof("Migration has already been performed (key %q exists)", DoneKey(prefix))
}

func logStarting(log Logger) { log.Infof("Starting store2 -> store3 migration...") }

func logMigrated(log Logger, took time.Duration, migrated, failed int64) {
	log.Infof("Migrated store2 -> store3 (took: %s, records migrated: %d, records failed: %d)", took, migrated, failed)
}

func logFailed(log Logger, took time.Duration, migrated, failed int64, err error) {
	log.Errorf("Migration store2 -> store3 failed (took: %s, records migrated: %d, records failed: %d): %v", took, migrated, failed, err)
}

func logRecordFailure(log Logger, rec *Record, reason string) {
	log.Errorf("Record failure: bucket %q, key %q: %s", rec.Bucket, rec.Key, reason)
}

func logDryRunStart(log Logger) { log.Infof("Starting store2 -> store3 dry run...") }

func logDryRun(log Logger, took time.Duration, checked int64, failed int) {
	log.Infof("Dry run store2 -> store3 (took: %s, records checked: %d, records failed: %d)", took, checked, failed)
}

func logCatchUpRound(log Logger, round int, c *reconciled) {
	log.Infof("Catch-up round %d: %d records changed in store2 (%d set, %d deleted)", round, c.changes(), c.set, c.deleted)
}

func logFrozen(log Logger, table string) {
	log.Infof("store2 frozen for writes (trigger %s on %s)", FreezeName, table)
}

func logUnfrozen(log Logger, why string) { log.Warnf("store2 unfrozen: %s", why) }

func endedBecause(err error) string {
	if err != nil {
		return fmt.Sprintf("the migration ended without .done: %v", err)
	}
	return "the migration is done"
}

func logCaptureEnded(log Logger, table, why string) {
	log.Infof("change capture on %s dropped (trigger %s): %s", table, CaptureName, why)
}

func logFrozenFor(log Logger, d time.Duration) {
	log.Infof("store2 was frozen for %s (freeze to .done); it stays frozen: its components now use store3", d)
}

// logPhaseTimings is the line the benchmark parses.
func logPhaseTimings(log Logger, t phaseTimes, res *Result) {
	log.Infof("Phase timings: capture=%s open=%s wipe=%s copy=%s catch-up=%s cutover=%s verify=%s done=%s (catch-up rounds: %d, records caught up: %d, frozen for: %s, store2 unchanged since the copy: %s)",
		t.capture, t.open, t.wipe, t.copy, t.catchUp, t.cutover, t.verify, t.done, res.Rounds, res.CaughtUp, res.FrozenFor, yesNo(t.asCopied))
}
