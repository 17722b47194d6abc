package migrate

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// This file holds the steps of the migration, in the order of DESIGN.md
// "The migration, step by step", and every log line operators grep for: the
// command layer logs with the caller's file:line, which must point here.

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
}

// Backoff is a capped exponential backoff.
type Backoff struct {
	Min, Max time.Duration
	GiveUp   time.Duration // stop retrying after this long
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
	Migrated      int64
	Failed        int64
	Took          time.Duration
	Done          *Done          // the done key, written or found
	FailedRecords []FailedRecord // at most MaxFailedRecords
	Elsewhere     *Status        // the other host's failure, with ErrFailedElsewhere
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

// run is one invocation of Run.
type run struct {
	m      *Migrator
	o      Options
	start  time.Time // o.Now() at start: what .status and .done record
	clock  time.Time // time.Now() at start: what took measures
	lock   Lock
	fence  Fence
	limits Limits

	total, stored atomic.Int64
	progressMu    sync.Mutex

	failMu   sync.Mutex
	failed   int64
	failures []FailedRecord

	statusOn   bool
	statusStop func()
}

// Run performs the migration: steps 1 to 9 of DESIGN.md.
func (m *Migrator) Run(ctx context.Context) (*Result, error) {
	o := m.Opts.withDefaults()
	r := &run{m: m, o: o, start: o.Now().UTC(), clock: time.Now()}
	if err := CheckPrefix(o.Prefix); err != nil {
		return nil, err
	}
	doneKey := DoneKey(o.Prefix)

	// 1. The done key: already migrated, no lock taken.
	if d, present, err := r.readDone(ctx); err != nil {
		return nil, err
	} else if present {
		o.Log.Infof("Migration has already been performed (key %q exists)", doneKey)
		return &Result{AlreadyDone: true, Done: d}, nil
	}

	// A store2 that was never used is refused before the lock: taking it
	// is a write, and a cluster that never used store2 gets none.
	if err := r.checkSource(ctx); err != nil {
		return nil, err
	}

	// 2. The lock; losing it cancels the work.
	lock, err := r.acquire(ctx)
	if err != nil {
		return nil, err
	}
	r.lock = lock
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
		// 9. Release the lock, even when interrupted.
		uctx, ucancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer ucancel()
		if err := lock.Unlock(uctx); err != nil {
			o.Log.Warnf("release lock %q: %v", r.fence.LockKey, err)
		}
	}()

	// 3. Under the lock: done meanwhile, or failed elsewhere meanwhile.
	if d, present, err := r.readDone(work); err != nil {
		return nil, r.cause(ctx, work, err)
	} else if present {
		o.Log.Infof("Migration has already been performed (key %q exists)", doneKey)
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

	// 4 to 8.
	o.Log.Infof("Starting store2 -> store3 migration...")
	res, err := r.migrate(work)
	if r.statusStop != nil {
		r.statusStop()
	}
	if err != nil {
		err = r.cause(ctx, work, err)
		res.Took = time.Since(r.clock)
		o.Log.Errorf("Migration store2 -> store3 failed (took: %s, records migrated: %d, records failed: %d): %v",
			res.Took, r.stored.Load(), res.Failed, err)
		if r.statusOn {
			r.finalStatus(ctx, StateFailed, err.Error())
		}
		return res, err
	}
	r.finalStatus(ctx, StateDone, "")
	return res, nil
}

// migrate runs steps 4 to 8, starting over from a new snapshot when store2
// fails transiently mid-stream.
func (r *run) migrate(ctx context.Context) (*Result, error) {
	for attempt := 1; ; attempt++ {
		res, err := r.attempt(ctx)
		var se *sourceError
		if err == nil || !errors.As(err, &se) || !IsTransient(err) || attempt >= r.o.Attempts || ctx.Err() != nil {
			return res, err
		}
		r.o.Log.Warnf("store2 failed mid-stream, starting over from a new snapshot (attempt %d of %d): %v", attempt+1, r.o.Attempts, err)
		if err := sleep(ctx, r.o.Retry.Max); err != nil {
			return res, err
		}
	}
}

// attempt is steps 4 to 8 on one snapshot.
func (r *run) attempt(ctx context.Context) (*Result, error) {
	o := r.o
	res := &Result{}
	r.stored.Store(0)
	r.failMu.Lock()
	r.failed, r.failures = 0, nil
	r.failMu.Unlock()

	// 4. One consistent snapshot of store2. A store2 that was never used is
	// refused before anything is written.
	var snap Snapshot
	err := r.retry(ctx, "open store2 snapshot", func() error {
		var err error
		snap, err = r.m.Source.Snapshot(ctx)
		return err
	})
	if err != nil {
		return res, err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = snap.Close(cctx) // read only: nothing to lose
	}()
	total, err := snap.Count(ctx)
	if err != nil {
		return res, &sourceError{fmt.Errorf("count store2 records: %w", err)}
	}
	r.total.Store(total)
	r.limits = r.m.KV.Limits(ctx)
	if err := r.startStatus(ctx); err != nil {
		return res, err
	}

	// 5. Wipe the leftovers of an earlier attempt.
	if err := r.wipe(ctx); err != nil {
		return res, err
	}

	// 6, 7. Copy, several transactions in flight; record failures counted.
	read, err := r.copy(ctx, snap)
	res.Migrated = r.stored.Load()
	r.failMu.Lock()
	res.Failed, res.FailedRecords = r.failed, r.failures
	r.failMu.Unlock()
	if err != nil {
		return res, err
	}
	if res.Failed > 0 {
		first := res.FailedRecords[0]
		return res, fmt.Errorf("%w: %d of %d records (first: bucket %q key %q: %s)",
			ErrRecordFailures, res.Failed, total, first.Bucket, first.Key, first.Reason)
	}

	// 8. Verify count and digest, then write the done key.
	var held Tally
	var foreign []string
	var nForeign int
	err = r.retry(ctx, "verify store3", func() error {
		var err error
		held, foreign, nForeign, err = tallyStore(ctx, r.m.KV, o.Prefix)
		return err
	})
	if err != nil {
		return res, err
	}
	if !held.Equal(read) || nForeign > 0 {
		return res, fmt.Errorf("%w: store2 snapshot has %d records (%s), store3 holds %d (%s) and %d foreign keys %q",
			ErrMismatch, read.Count, read.Digest, held.Count, held.Digest, nForeign, foreign)
	}
	took := time.Since(r.clock)
	done := &Done{
		Component: o.Component, Host: o.Hostname, PID: o.PID,
		Started: Time{r.start}, Finished: Time{o.Now().UTC()}, Took: took.String(),
		RecordsMigrated: read.Count, Digest: read.Digest.String(), ToolVersion: o.ToolVersion,
	}
	if err := r.writeDone(ctx, done); err != nil {
		return res, err
	}
	res.Done, res.Took = done, took
	o.Log.Infof("Migrated store2 -> store3 (took: %s, records migrated: %d, records failed: %d)", took, read.Count, res.Failed)
	return res, nil
}

// checkSource opens and closes a store2 snapshot, retrying transient
// failures, to refuse a store2 that was never used before anything else.
func (r *run) checkSource(ctx context.Context) error {
	return r.retry(ctx, "open store2 snapshot", func() error {
		snap, err := r.m.Source.Snapshot(ctx)
		if err != nil {
			return err
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		return snap.Close(cctx)
	})
}

// acquire is step 2: wait for the lock, reaping a dead holder on this host.
func (r *run) acquire(ctx context.Context) (Lock, error) {
	o, key := r.o, LockKey(r.o.Prefix)
	var deadline time.Time
	if o.LockTimeout > 0 {
		deadline = r.clock.Add(o.LockTimeout)
	}
	var transientSince time.Time
	holder := ""
	for {
		wait := o.LockWait
		if !deadline.IsZero() {
			wait = max(min(wait, time.Until(deadline)), 10*time.Millisecond)
		}
		l, err := r.m.Locker.TryLock(ctx, key, wait)
		switch {
		case err == nil:
			return l, nil
		case ctx.Err() != nil:
			return nil, fmt.Errorf("%w: waiting for lock %q", ErrInterrupted, key)
		case errors.Is(err, ErrLockBusy):
			transientSince = time.Time{}
			prev := holder
			holder = r.reapDeadHolder(ctx)
			if holder != prev && holder != "" {
				// Once per holder: the operator reading this host's log
				// learns why nothing happens here, and where to look.
				o.Log.Infof("Waiting for lock %q, held%s", key, holder)
			}
		case IsTransient(err):
			if transientSince.IsZero() {
				transientSince = time.Now()
			} else if time.Since(transientSince) > o.Retry.GiveUp {
				return nil, fmt.Errorf("take lock %q: %w", key, err)
			}
			o.Log.Warnf("take lock %q: %v (retrying)", key, err)
			if err := sleep(ctx, o.Retry.Min); err != nil {
				return nil, fmt.Errorf("%w: waiting for lock %q", ErrInterrupted, key)
			}
		default:
			return nil, fmt.Errorf("take lock %q: %w", key, err)
		}
		if !deadline.IsZero() && !time.Now().Before(deadline) {
			return nil, fmt.Errorf("%w: %q still held after %s%s", ErrLockBusy, key, o.LockTimeout, holder)
		}
	}
}

// reapDeadHolder destroys the session of a holder that .status names on
// this host with a pid that no longer exists. It returns a description of
// the holder for errors.
func (r *run) reapDeadHolder(ctx context.Context) string {
	o := r.o
	st, err := ReadState(ctx, r.m.KV, o.Prefix)
	if err != nil || st.Status == nil || st.LockSession == "" {
		return ""
	}
	s := st.Status
	desc := fmt.Sprintf(" by host %s pid %d (session %s, state %s)", s.Host, s.PID, st.LockSession, s.State)
	if s.Session != st.LockSession {
		return fmt.Sprintf(" by session %s", st.LockSession)
	}
	if s.Host != o.Hostname || s.PID == o.PID || o.PIDAlive(s.PID) {
		return desc
	}
	o.Log.Warnf("Lock %q is held by pid %d on this host (%s), which no longer exists: destroying its session %s",
		LockKey(o.Prefix), s.PID, s.Host, s.Session)
	if err := r.m.Locker.DestroySession(ctx, s.Session); err != nil {
		o.Log.Warnf("destroy session %s: %v", s.Session, err)
	}
	return desc
}

// wipe is step 5: delete every key under the prefix but migration/, in
// fenced transactions.
func (r *run) wipe(ctx context.Context) error {
	prefix := r.o.Prefix
	if err := CheckPrefix(prefix); err != nil {
		return err
	}
	var keys []string
	if err := r.retry(ctx, "list store3 keys", func() error {
		var err error
		keys, err = r.m.KV.Keys(ctx, prefix, "/")
		return err
	}); err != nil {
		return err
	}
	var ops []Op
	flush := func() error {
		if len(ops) == 0 {
			return nil
		}
		err := r.txn(ctx, fmt.Sprintf("wipe %q", ops[0].Key), ops)
		ops = ops[:0]
		return err
	}
	size := BodySize(1, fenceSize(r.fence))
	for _, k := range keys {
		op := Op{Verb: VerbDeleteTree, Key: k}
		switch {
		case k == migrationDir(prefix):
			continue
		case k == prefix || !strings.HasSuffix(k, "/"):
			op.Verb = VerbDelete
		}
		n := opSize(op.Verb, op.Key, 0, 0, 0, "") + 1
		if len(ops)+2 > r.limits.MaxOps || size+n > r.limits.MaxBody {
			if err := flush(); err != nil {
				return err
			}
			size = BodySize(1, fenceSize(r.fence))
		}
		ops = append(ops, op)
		size += n
	}
	return flush()
}

// copy is steps 6 and 7: stream the snapshot into batches written by
// InFlight workers. It returns the tally of the records it read and sent,
// and waits for every worker before returning.
func (r *run) copy(ctx context.Context, snap Snapshot) (Tally, error) {
	o := r.o
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	b := NewBatcher(r.limits, r.fence, o.InFlight+1)
	batches := make(chan *Batch)
	var (
		wg      sync.WaitGroup
		errOnce sync.Once
		workErr error
	)
	for range o.InFlight {
		wg.Go(func() {
			for x := range batches {
				if ctx.Err() == nil {
					if err := r.txn(ctx, "copy "+x.describe(), x.Ops); err != nil {
						errOnce.Do(func() { workErr = err; cancel(err) })
					} else {
						r.progress(r.stored.Add(x.Records))
					}
				}
				b.Recycle(x)
			}
		})
	}
	send := func(x *Batch) error {
		select {
		case batches <- x:
			return nil
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
	var read Tally
	scanErr := snap.Scan(ctx, func(rec *Record) error {
		key, reason := CheckRecord(o.Prefix, rec, b)
		if reason != "" {
			r.recordFailure(rec, reason)
			return nil
		}
		read.Add(key[len(o.Prefix):], rec.Version, rec.Data)
		if full := b.Add(key, uint64(rec.Version), rec.Data); full != nil {
			return send(full)
		}
		return nil
	})
	if scanErr == nil {
		if last := b.Flush(); last != nil {
			scanErr = send(last)
		}
	}
	close(batches)
	wg.Wait()
	switch {
	case workErr != nil:
		return read, workErr
	case ctx.Err() != nil:
		return read, context.Cause(ctx)
	case scanErr != nil:
		return read, &sourceError{fmt.Errorf("read store2: %w", scanErr)}
	}
	return read, nil
}

func (r *run) recordFailure(rec *Record, reason string) {
	r.o.Log.Errorf("Record failure: bucket %q, key %q: %s", rec.Bucket, rec.Key, reason)
	r.failMu.Lock()
	defer r.failMu.Unlock()
	r.failed++
	if len(r.failures) < MaxFailedRecords {
		r.failures = append(r.failures, FailedRecord{Bucket: rec.Bucket, Key: rec.Key, Reason: reason})
	}
}

func (r *run) progress(done int64) {
	if r.o.Progress == nil {
		return
	}
	r.progressMu.Lock()
	defer r.progressMu.Unlock()
	r.o.Progress(done, r.total.Load())
}

// writeDone writes .done behind the fence and check-not-exists. When that
// fails (a rolled-back retry after a leader change), a .done naming this
// process is success.
func (r *run) writeDone(ctx context.Context, d *Done) error {
	key := DoneKey(r.o.Prefix)
	ops := []Op{{Verb: VerbCheckNotExists, Key: key}, {Verb: VerbSet, Key: key, Value: encodeJSON(d)}}
	err := r.txn(ctx, fmt.Sprintf("write %q", key), ops)
	if err == nil || ctx.Err() != nil {
		return err
	}
	got, present, rerr := r.readDone(ctx)
	if rerr == nil && present && got != nil && got.Host == d.Host && got.PID == d.PID && got.Started.Equal(d.Started.Time) {
		r.o.Log.Warnf("%v; %q names this process: it was written", err, key)
		*d = *got
		return nil
	}
	return err
}

// readDone reads .done; present is true for any value there, even one that
// does not decode: its presence is what means "migrated".
func (r *run) readDone(ctx context.Context) (d *Done, present bool, err error) {
	err = r.retry(ctx, "read .done", func() error {
		p, err := r.m.KV.Get(ctx, DoneKey(r.o.Prefix))
		if err != nil || p == nil {
			return err
		}
		present = true
		if d, err = decodeDone(p.Value); err != nil {
			r.o.Log.Warnf("%q exists but does not decode: %v", DoneKey(r.o.Prefix), err)
		}
		return nil
	})
	return d, present, err
}

// status builds .status as of now.
func (r *run) status(state, errText string) Status {
	o := r.o
	now := Time{o.Now().UTC()}
	s := Status{
		State: state, Component: o.Component, Host: o.Hostname, PID: o.PID, Session: r.fence.Session,
		Started: Time{r.start}, Updated: now,
		RecordsDone: r.stored.Load(), RecordsTotal: r.total.Load(), Error: errText,
	}
	if state != StateRunning {
		s.Finished = now
	}
	r.failMu.Lock()
	s.FailedRecords = append([]FailedRecord(nil), r.failures...)
	r.failMu.Unlock()
	return s
}

func (r *run) putStatus(ctx context.Context, s Status) error {
	return r.m.KV.Txn(ctx, r.fence, []Op{{Verb: VerbSet, Key: StatusKey(r.o.Prefix), Value: encodeJSON(s)}})
}

// startStatus writes the running status, then rewrites it every
// StatusEvery until statusStop.
func (r *run) startStatus(ctx context.Context) error {
	if err := r.retry(ctx, "write .status", func() error { return r.putStatus(ctx, r.status(StateRunning, "")) }); err != nil {
		return err
	}
	if r.statusOn {
		return nil
	}
	r.statusOn = true
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(r.o.StatusEvery)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				if err := r.putStatus(ctx, r.status(StateRunning, "")); err != nil && ctx.Err() == nil {
					r.o.Log.Warnf("write .status: %v", err)
				}
			case <-stop:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	r.statusStop = func() { close(stop); <-stopped }
	return nil
}

// finalStatus writes the last .status, even after an interrupt; it cannot
// once the lock is lost, and says so.
func (r *run) finalStatus(ctx context.Context, state, errText string) {
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := r.retry(fctx, "write .status", func() error { return r.putStatus(fctx, r.status(state, errText)) }); err != nil {
		r.o.Log.Warnf("cannot record %q in %q: %v", state, StatusKey(r.o.Prefix), err)
	}
}

// txn writes ops behind the fence, retrying transient errors.
func (r *run) txn(ctx context.Context, what string, ops []Op) error {
	return r.retry(ctx, what, func() error { return r.m.KV.Txn(ctx, r.fence, ops) })
}

// retry calls fn until it succeeds, fails for good, or transient errors
// have lasted Retry.GiveUp, with capped exponential backoff.
func (r *run) retry(ctx context.Context, what string, fn func() error) error {
	b := r.o.Retry
	delay, start := b.Min, time.Now()
	for {
		err := fn()
		switch {
		case err == nil:
			return nil
		case errors.Is(err, ErrLockLost):
			return fmt.Errorf("%s: %w", what, err)
		case ctx.Err() != nil:
			return context.Cause(ctx)
		case !IsTransient(err):
			return fmt.Errorf("%s: %w", what, err)
		case time.Since(start) > b.GiveUp:
			return fmt.Errorf("%s: gave up after %s: %w", what, b.GiveUp, err)
		}
		r.o.Log.Warnf("%s: %v (retrying in %s)", what, err, delay)
		if err := sleep(ctx, delay); err != nil {
			return err
		}
		delay = min(2*delay, b.Max)
	}
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

// DryRunReport is what a dry run found.
type DryRunReport struct {
	Prefix           string
	DoneExists       bool
	Done             *Done
	Limits           Limits
	PermissionOK     bool
	PermissionReason string
	Buckets          []BucketReport // in byte order
	Records          int64
	Failed           []FailedRecord // every one
	Took             time.Duration
}

// BucketReport counts one bucket's records.
type BucketReport struct {
	Bucket  string
	Records int64
	Bytes   int64
}

// DryRun checks, without a lock and without writing, what a real run
// would: steps 1 and 4, and every check of 5 to 8 that needs no write. Its
// error wraps ErrDryRunFailed when a real run would fail.
func (m *Migrator) DryRun(ctx context.Context) (*DryRunReport, error) {
	o := m.Opts.withDefaults()
	r := &run{m: m, o: o, start: o.Now().UTC(), clock: time.Now()}
	rep := &DryRunReport{Prefix: o.Prefix}
	if err := CheckPrefix(o.Prefix); err != nil {
		return rep, err
	}
	o.Log.Infof("Starting store2 -> store3 dry run...")
	d, present, err := r.readDone(ctx)
	if err != nil {
		return rep, err
	}
	rep.DoneExists, rep.Done = present, d
	if present {
		o.Log.Infof("Migration has already been performed (key %q exists)", DoneKey(o.Prefix))
	}
	rep.Limits = m.KV.Limits(ctx)
	if rep.PermissionOK, rep.PermissionReason, err = probeWrite(ctx, m.KV, o.Prefix); err != nil {
		return rep, err
	}

	var snap Snapshot
	if err := r.retry(ctx, "open store2 snapshot", func() error {
		var err error
		snap, err = m.Source.Snapshot(ctx)
		return err
	}); err != nil {
		return rep, err
	}
	defer snap.Close(context.WithoutCancel(ctx))
	b := SizingBatcher(rep.Limits, o.Prefix)
	r.limits = rep.Limits
	err = r.retry(ctx, "read store2", func() error {
		rep.Buckets, rep.Records, rep.Failed = nil, 0, nil
		return snap.Scan(ctx, func(rec *Record) error {
			rep.Records++
			if n := len(rep.Buckets); n == 0 || rep.Buckets[n-1].Bucket != rec.Bucket {
				rep.Buckets = append(rep.Buckets, BucketReport{Bucket: rec.Bucket})
			}
			br := &rep.Buckets[len(rep.Buckets)-1]
			br.Records++
			br.Bytes += int64(len(rec.Data))
			if _, reason := CheckRecord(o.Prefix, rec, b); reason != "" {
				o.Log.Errorf("Record failure: bucket %q, key %q: %s", rec.Bucket, rec.Key, reason)
				rep.Failed = append(rep.Failed, FailedRecord{Bucket: rec.Bucket, Key: rec.Key, Reason: reason})
			}
			return nil
		})
	})
	if err != nil {
		return rep, err
	}
	rep.Took = time.Since(r.clock)
	o.Log.Infof("Dry run store2 -> store3 (took: %s, records checked: %d, records failed: %d)", rep.Took, rep.Records, len(rep.Failed))
	switch {
	case rep.DoneExists:
		return rep, nil // a real run would stop at step 1
	case !rep.PermissionOK:
		return rep, fmt.Errorf("%w: %w: %s", ErrDryRunFailed, ErrNoPermission, rep.PermissionReason)
	case len(rep.Failed) > 0:
		f := rep.Failed[0]
		return rep, fmt.Errorf("%w: %w: %d of %d records (first: bucket %q key %q: %s)",
			ErrDryRunFailed, ErrRecordFailures, len(rep.Failed), rep.Records, f.Bucket, f.Key, f.Reason)
	}
	return rep, nil
}

// probeWrite asks whether the token may write under prefix without
// writing: a transaction whose first op, a check-index no key can pass,
// rolls back the set that follows it. Consul checks ACLs of every op before
// applying any, so a token that may not write is refused for that instead.
func probeWrite(ctx context.Context, kv KV, prefix string) (ok bool, reason string, err error) {
	key := migrationDir(prefix) + ".dry-run-probe"
	err = kv.Txn(ctx, Fence{}, []Op{
		{Verb: VerbCheckIndex, Key: key, Index: math.MaxUint64},
		{Verb: VerbSet, Key: key, Value: []byte("dry run")},
	})
	if err == nil {
		return true, fmt.Sprintf("probe %q was not rolled back: delete it", key), nil
	}
	if errors.Is(err, ErrPermissionDenied) {
		return false, fmt.Sprintf("write under %q refused: %v", prefix, err), nil
	}
	var te *TxnError
	if errors.As(err, &te) {
		return true, "write permitted (probe rolled back by its check-index)", nil
	}
	return false, "", fmt.Errorf("probe write permission under %q: %w", prefix, err)
}

// sourceError is a store2 failure mid-stream: a transient one starts the
// attempt over from a new snapshot.
type sourceError struct{ err error }

func (e *sourceError) Error() string { return e.err.Error() }
func (e *sourceError) Unwrap() error { return e.err }

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}
