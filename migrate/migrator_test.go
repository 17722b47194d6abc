package migrate_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apcera/deployhook/migrate"
	"github.com/apcera/deployhook/migrate/memkv"
)

const prefix = "apcera/store3/jmdb/"

// logger records lines with the file of their caller.
type logger struct {
	mu    sync.Mutex
	lines []logLine
}

type logLine struct{ level, file, text string }

func (l *logger) add(level, format string, args ...interface{}) {
	_, file, _, _ := runtime.Caller(2)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, logLine{level, filepath.Base(file), fmt.Sprintf(format, args...)})
}

func (l *logger) Infof(f string, a ...interface{})  { l.add("info", f, a...) }
func (l *logger) Warnf(f string, a ...interface{})  { l.add("warn", f, a...) }
func (l *logger) Errorf(f string, a ...interface{}) { l.add("error", f, a...) }

// grepLines are the lines DESIGN.md quotes, which operators grep for: they
// must be logged from migrator.go, whose name and line the log shows.
var grepLines = []string{
	"Migration has already been performed (key ",
	"Starting store2 -> store3 migration...",
	"Migrated store2 -> store3 (took: ",
	"Starting store2 -> store3 dry run...",
	"Dry run store2 -> store3 (took: ",
	"Catch-up round ",
	"store2 frozen for writes (trigger deployhook_store2_frozen on ",
	"store2 unfrozen: ",
}

// find returns the line starting with text; a grep line must come from
// migrator.go.
func (l *logger) find(t *testing.T, text string) string {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, x := range l.lines {
		for _, g := range grepLines {
			if strings.HasPrefix(x.text, g) && x.file != "migrator.go" {
				t.Errorf("log line %q logged from %s, want migrator.go", x.text, x.file)
			}
		}
	}
	for _, x := range l.lines {
		if strings.HasPrefix(x.text, text) {
			return x.text
		}
	}
	t.Fatalf("no log line starting with %q in %v", text, l.lines)
	return ""
}

func records() []migrate.Record {
	var recs []migrate.Record
	for i := range 700 {
		recs = append(recs, migrate.Record{Bucket: "jobs", Key: fmt.Sprintf("job::/sandbox/admin::web%03d", i), Version: int64(i + 1), Data: bytes.Repeat([]byte{byte(i)}, i%50*10)})
	}
	recs = append(recs,
		migrate.Record{Bucket: "packages", Key: "é/ü", Version: 7, Data: []byte("non-ascii")},
		migrate.Record{Bucket: "packages", Key: ".", Version: 1, Data: []byte("dot")},
		migrate.Record{Bucket: "packages", Key: "..", Version: 2, Data: []byte{}},
		migrate.Record{Bucket: "routes", Key: "http::example.com/a b", Version: 1 << 40, Data: make([]byte, 100000)},
		migrate.Record{Bucket: "routes", Key: "neg", Version: -3, Data: []byte("negative version")},
	)
	return recs
}

type env struct {
	kv  *memkv.Store
	src *memkv.Source
	log *logger
	m   *migrate.Migrator
}

func newEnv(t *testing.T, recs []migrate.Record) *env {
	e := &env{kv: memkv.New(), src: memkv.NewSource(recs), log: &logger{}}
	e.m = &migrate.Migrator{Source: e.src, KV: e.kv, Locker: e.kv, Opts: migrate.Options{
		Component: "job_manager", Prefix: prefix, Hostname: "central-1", PID: 4242, ToolVersion: "test",
		Log: e.log, LockWait: 20 * time.Millisecond, InFlight: 4,
		Retry: migrate.Backoff{Min: time.Millisecond, Max: 5 * time.Millisecond, GiveUp: 5 * time.Second},
	}}
	return e
}

// checkCopy asserts that store3 holds exactly recs under prefix, outside
// migration/.
func checkCopy(t *testing.T, kv *memkv.Store, recs []migrate.Record) {
	t.Helper()
	want := map[string]migrate.Record{}
	for _, r := range recs {
		k, err := migrate.StoreKey(prefix, r.Bucket, r.Key)
		if err != nil {
			t.Fatal(err)
		}
		want[k] = r
	}
	n := 0
	for _, p := range kv.Dump() {
		if !strings.HasPrefix(p.Key, prefix) || strings.HasPrefix(p.Key, prefix+"migration/") {
			continue
		}
		n++
		r, ok := want[p.Key]
		if !ok {
			t.Errorf("unexpected key %q", p.Key)
			continue
		}
		if !bytes.Equal(p.Value, r.Data) || int64(p.Flags) != r.Version {
			t.Errorf("%q: flags %d, %d bytes; want version %d, %d bytes", p.Key, int64(p.Flags), len(p.Value), r.Version, len(r.Data))
		}
	}
	if n != len(want) {
		t.Errorf("store3 holds %d records, want %d", n, len(want))
	}
}

func TestRunFresh(t *testing.T) {
	recs := records()
	e := newEnv(t, recs)
	var progress []int64
	e.m.Opts.Progress = func(done, total int64) {
		if total != int64(len(recs)) {
			t.Errorf("progress total %d", total)
		}
		progress = append(progress, done)
	}
	res, err := e.m.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	checkCopy(t, e.kv, recs)
	if res.Migrated != int64(len(recs)) || res.Failed != 0 || res.Done == nil || progress[len(progress)-1] != int64(len(recs)) {
		t.Fatalf("result %+v, progress %v", res, progress)
	}
	st, err := migrate.ReadState(context.Background(), e.kv, prefix)
	if err != nil {
		t.Fatal(err)
	}
	if st.Done == nil || st.Done.RecordsMigrated != int64(len(recs)) || st.Done.Host != "central-1" || st.Done.PID != 4242 || !strings.HasPrefix(st.Done.Digest, "sha256:") {
		t.Fatalf(".done = %+v", st.Done)
	}
	var want migrate.Tally
	for _, r := range recs {
		k, _ := migrate.RelKey(r.Bucket, r.Key)
		want.Add(k, r.Version, r.Data)
	}
	if st.Done.Digest != want.Digest.String() {
		t.Fatalf("digest %s, want %s", st.Done.Digest, want.Digest)
	}
	if st.Status == nil || st.Status.State != migrate.StateDone || st.Status.RecordsDone != int64(len(recs)) || st.LockSession != "" {
		t.Fatalf(".status = %+v, lock %q", st.Status, st.LockSession)
	}
	e.log.find(t, "Starting store2 -> store3 migration...")
	line := e.log.find(t, "Migrated store2 -> store3 (took: ")
	if !strings.HasSuffix(line, fmt.Sprintf(", records migrated: %d, records failed: 0)", len(recs))) {
		t.Fatalf("line %q", line)
	}
	// Every write was fenced.
	for _, w := range e.kv.Writes() {
		if w.Session == "" {
			t.Fatalf("unfenced write %+v", w)
		}
	}
	// A second run finds the done key and takes no lock.
	before := len(e.kv.Writes())
	res, err = e.m.Run(context.Background())
	if err != nil || !res.AlreadyDone || len(e.kv.Writes()) != before {
		t.Fatalf("second run: %+v, %v, %d writes", res, err, len(e.kv.Writes())-before)
	}
	e.log.find(t, `Migration has already been performed (key "apcera/store3/jmdb/migration/.done" exists)`)
}

func TestRunWipesLeftoversKeepsMigrationDir(t *testing.T) {
	recs := records()[:10]
	e := newEnv(t, recs)
	for _, k := range []string{prefix + "jobs/stale", prefix + "old/a/b", prefix + "leaf", prefix, prefix + "migration", prefix + "migration/keep"} {
		e.kv.Put(k, []byte("x"), 0)
	}
	e.kv.Put("apcera/store3/pmdb/jobs/x", []byte("other component"), 0)
	if _, err := e.m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	checkCopy(t, e.kv, recs)
	for _, k := range []string{prefix + "migration/keep", "apcera/store3/pmdb/jobs/x"} {
		if p, _ := e.kv.Get(context.Background(), k); p == nil {
			t.Errorf("%q was deleted", k)
		}
	}
	for _, k := range []string{prefix, prefix + "leaf", prefix + "migration"} {
		if p, _ := e.kv.Get(context.Background(), k); p != nil {
			t.Errorf("%q survived", k)
		}
	}
}

func TestRunRecordFailures(t *testing.T) {
	recs := append(records()[:20],
		migrate.Record{Bucket: "jobs", Key: "", Version: 1, Data: []byte("x")},
		migrate.Record{Bucket: "migration", Key: ".done", Version: 1, Data: []byte("x")},
		migrate.Record{Bucket: "jobs", Key: "huge", Version: 1, Data: make([]byte, 2000)},
	)
	e := newEnv(t, recs)
	e.kv.TxnLimits = migrate.Limits{MaxOps: 128, MaxBody: 512 * 1024, MaxValue: 1000}
	res, err := e.m.Run(context.Background())
	if !errors.Is(err, migrate.ErrRecordFailures) {
		t.Fatalf("error %v, want ErrRecordFailures", err)
	}
	if res.Failed != 3 || len(res.FailedRecords) != 3 {
		t.Fatalf("result %+v", res)
	}
	st, _ := migrate.ReadState(context.Background(), e.kv, prefix)
	if st.Done != nil {
		t.Fatal(".done written despite record failures")
	}
	if st.Status.State != migrate.StateFailed || len(st.Status.FailedRecords) != 3 || st.Status.Error == "" || st.Status.Finished.IsZero() {
		t.Fatalf(".status = %+v", st.Status)
	}
	reasons := fmt.Sprint(st.Status.FailedRecords)
	for _, want := range []string{"empty key segment", `"migration" is reserved`, "kv_max_value_size"} {
		if !strings.Contains(reasons, want) {
			t.Errorf("failed records %s lack %q", reasons, want)
		}
	}
	e.log.find(t, `Record failure: bucket "jobs", key "huge": data of 2000 bytes exceeds kv_max_value_size`)
}

func TestRunLockLostMidRun(t *testing.T) {
	e := newEnv(t, records())
	var lostAt uint64
	var session string
	e.kv.BeforeTxn = func(seq int64, f migrate.Fence, ops []migrate.Op) error {
		if seq == 4 {
			session = f.Session
			if err := e.kv.DestroySession(context.Background(), f.Session); err != nil {
				t.Error(err)
			}
			lostAt, _ = e.kv.Index(context.Background(), prefix)
		}
		return nil
	}
	_, err := e.m.Run(context.Background())
	if !errors.Is(err, migrate.ErrLockLost) {
		t.Fatalf("error %v, want ErrLockLost", err)
	}
	for _, w := range e.kv.Writes() {
		if w.Index > lostAt && w.Session == session {
			t.Fatalf("write at %d after the lock was lost at %d: %+v", w.Index, lostAt, w)
		}
	}
	if st, _ := migrate.ReadState(context.Background(), e.kv, prefix); st.Done != nil {
		t.Fatal(".done written")
	}
}

func TestRunRetriesTransientErrors(t *testing.T) {
	recs := records()
	e := newEnv(t, recs)
	e.kv.BeforeTxn = func(seq int64, f migrate.Fence, ops []migrate.Op) error {
		if seq%3 == 0 && seq < 20 {
			return migrate.Transient(errors.New("no cluster leader"))
		}
		return nil
	}
	if _, err := e.m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	checkCopy(t, e.kv, recs)
	e.log.find(t, "Migrated store2 -> store3")
}

func TestRunRestartsOnTransientSourceFailure(t *testing.T) {
	recs := records()
	e := newEnv(t, recs)
	e.m.Opts.Retry.Max = time.Millisecond
	e.m.Opts.Offline = true
	failed := false
	e.src.ScanErr = func(n, i int) error {
		// Snapshot 1 is the never-used check, 2 the copy's.
		if n == 2 && i == 500 {
			failed = true
			return migrate.Transient(errors.New("terminating connection due to administrator command"))
		}
		return nil
	}
	if _, err := e.m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The check, the failed copy, the copy again, and offline's check that
	// store2 did not change.
	if !failed || e.src.Opened() != 4 {
		t.Fatalf("%d snapshots opened, want 4 (scan failed: %t)", e.src.Opened(), failed)
	}
	checkCopy(t, e.kv, recs)
}

func TestRunGivesUpOnPermanentTxnError(t *testing.T) {
	e := newEnv(t, records())
	e.kv.DenyWrite = func(k string) bool { return strings.Contains(k, "/jobs/") }
	_, err := e.m.Run(context.Background())
	var te *migrate.TxnError
	if !errors.As(err, &te) {
		t.Fatalf("error %v, want a *TxnError", err)
	}
	if st, _ := migrate.ReadState(context.Background(), e.kv, prefix); st.Done != nil || st.Status.State != migrate.StateFailed {
		t.Fatalf("state %+v", st)
	}
}

func TestRunReapsDeadHolderOnThisHost(t *testing.T) {
	recs := records()[:5]
	e := newEnv(t, recs)
	ctx := context.Background()
	held, err := e.kv.TryLock(ctx, migrate.LockKey(prefix), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	e.kv.Put(migrate.StatusKey(prefix), []byte(fmt.Sprintf(`{"state":"running","host":"central-1","pid":777,"session":%q}`, held.Session())), 0)
	e.m.Opts.PIDAlive = func(pid int) bool { return pid != 777 }
	if _, err := e.m.Run(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-held.Lost():
	default:
		t.Fatal("the dead holder's lock was not lost")
	}
	e.log.find(t, `Lock "apcera/store3/jmdb/migration/.lock" is held by pid 777 on this host`)
	checkCopy(t, e.kv, recs)
}

func TestRunLockTimeout(t *testing.T) {
	for _, tc := range []struct{ name, host string }{{"other host", "central-2"}, {"live pid", "central-1"}} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, records()[:5])
			ctx := context.Background()
			held, err := e.kv.TryLock(ctx, migrate.LockKey(prefix), time.Second)
			if err != nil {
				t.Fatal(err)
			}
			e.kv.Put(migrate.StatusKey(prefix), []byte(fmt.Sprintf(`{"state":"running","host":%q,"pid":777,"session":%q}`, tc.host, held.Session())), 0)
			e.m.Opts.PIDAlive = func(pid int) bool { return tc.host == "central-1" }
			e.m.Opts.LockTimeout = 100 * time.Millisecond
			_, err = e.m.Run(ctx)
			if !errors.Is(err, migrate.ErrLockBusy) || !strings.Contains(err.Error(), "pid 777") {
				t.Fatalf("error %v, want ErrLockBusy naming the holder", err)
			}
			if e.kv.Holder(migrate.LockKey(prefix)) != held.Session() {
				t.Fatal("a live holder's session was destroyed")
			}
			e.log.find(t, fmt.Sprintf(`Waiting for lock "apcera/store3/jmdb/migration/.lock", held by host %s pid 777`, tc.host))
		})
	}
}

func TestRunInterruptedWhileWaiting(t *testing.T) {
	e := newEnv(t, records()[:5])
	ctx, cancel := context.WithCancel(context.Background())
	if _, err := e.kv.TryLock(ctx, migrate.LockKey(prefix), time.Second); err != nil {
		t.Fatal(err)
	}
	e.kv.BeforeTxn = nil
	e.m.Opts.PIDAlive = func(int) bool { cancel(); return true }
	e.kv.Put(migrate.StatusKey(prefix), []byte(`{"state":"running","host":"central-1","pid":777,"session":"00000000-0000-4000-8000-000000000001"}`), 0)
	_, err := e.m.Run(ctx)
	if !errors.Is(err, migrate.ErrInterrupted) {
		t.Fatalf("error %v, want ErrInterrupted", err)
	}
}

func TestRunFailedElsewhere(t *testing.T) {
	e := newEnv(t, records()[:5])
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	e.m.Opts.Now = func() time.Time { return start }
	e.kv.Put(migrate.StatusKey(prefix), []byte(`{"state":"failed","host":"central-2","pid":9,"finished":"2026-01-02T03:04:06Z","error":"records could not be stored"}`), 0)
	before := len(e.kv.Writes())
	res, err := e.m.Run(context.Background())
	if !errors.Is(err, migrate.ErrFailedElsewhere) || res.Elsewhere == nil || res.Elsewhere.Host != "central-2" {
		t.Fatalf("error %v, result %+v", err, res)
	}
	for _, w := range e.kv.Writes()[before:] {
		for _, op := range w.Ops {
			if op.Key != migrate.StatusKey(prefix) || true {
				if strings.HasPrefix(op.Key, prefix) && op.Key != migrate.LockKey(prefix) {
					t.Fatalf("wrote %q", op.Key)
				}
			}
		}
	}
	// A failure older than this process's start is retried.
	e.m.Opts.Now = func() time.Time { return start.Add(time.Hour) }
	if _, err := e.m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestRunRefusesDangerousPrefix(t *testing.T) {
	for _, p := range []string{"", "/", "apcera", "apcera/", "apcera/store3", "/apcera/store3/", "apcera//x/", "apcera/../x/"} {
		e := newEnv(t, records()[:5])
		e.kv.Put("apcera/x", []byte("foreign"), 0)
		e.m.Opts.Prefix = p
		before := len(e.kv.Writes())
		_, err := e.m.Run(context.Background())
		if !errors.Is(err, migrate.ErrDangerousPrefix) {
			t.Errorf("prefix %q: error %v, want ErrDangerousPrefix", p, err)
		}
		if len(e.kv.Writes()) != before {
			t.Errorf("prefix %q: wrote something", p)
		}
	}
	if err := migrate.CheckPrefix(prefix); err != nil {
		t.Fatal(err)
	}
}

func TestRunNeverUsed(t *testing.T) {
	e := newEnv(t, nil)
	e.m.Source = memkv.NeverUsed{}
	_, err := e.m.Run(context.Background())
	if !errors.Is(err, migrate.ErrNeverUsed) {
		t.Fatalf("error %v, want ErrNeverUsed", err)
	}
	// Nothing at all: not even the lock key, which taking the lock writes.
	for _, p := range e.kv.Dump() {
		t.Errorf("wrote %q", p.Key)
	}
}

func TestDryRun(t *testing.T) {
	recs := append(records(), migrate.Record{Bucket: "migration", Key: "x", Version: 1, Data: []byte("x")})
	e := newEnv(t, recs)
	e.kv.Put(prefix+"jobs/stale", []byte("x"), 0)
	ctx := context.Background()
	before, _ := e.kv.Index(ctx, prefix)
	rep, err := e.m.DryRun(ctx)
	if !errors.Is(err, migrate.ErrDryRunFailed) || !errors.Is(err, migrate.ErrRecordFailures) {
		t.Fatalf("error %v", err)
	}
	after, _ := e.kv.Index(ctx, prefix)
	if before != after {
		t.Fatalf("dry run changed the index %d -> %d", before, after)
	}
	if !rep.PermissionOK || rep.DoneExists || rep.Records != int64(len(recs)) || len(rep.Failed) != 1 || len(rep.Buckets) != 4 || rep.Buckets[0].Bucket != "jobs" || rep.Buckets[0].Records != 700 {
		t.Fatalf("report %+v", rep)
	}
	e.log.find(t, "Starting store2 -> store3 dry run...")
	line := e.log.find(t, "Dry run store2 -> store3 (took: ")
	if !strings.HasSuffix(line, fmt.Sprintf(", records checked: %d, records failed: 1)", len(recs))) {
		t.Fatalf("line %q", line)
	}

	// Clean data, then a token that may not write.
	e = newEnv(t, records())
	if _, err := e.m.DryRun(ctx); err != nil {
		t.Fatal(err)
	}
	e.kv.DenyWrite = func(string) bool { return true }
	rep, err = e.m.DryRun(ctx)
	if !errors.Is(err, migrate.ErrPermissionDenied) || rep.PermissionOK {
		t.Fatalf("error %v, report %+v", err, rep)
	}
}

func TestVerify(t *testing.T) {
	recs := records()
	e := newEnv(t, recs)
	ctx := context.Background()
	if _, err := e.m.Run(ctx); err != nil {
		t.Fatal(err)
	}
	d, err := migrate.Verify(ctx, e.src, e.kv, prefix, 0)
	if err != nil || !d.Equal() || d.Source.Count != int64(len(recs)) {
		t.Fatalf("clean verify: %+v, %v", d, err)
	}
	key := func(b, k string) string { s, _ := migrate.StoreKey(prefix, b, k); return s }
	kv := e.kv
	kv.Put(key("packages", "é/ü"), []byte("changed"), 7)
	kv.Put(key("routes", "neg"), []byte("negative version"), 4)
	kv.Put(key("jobs", "job::/sandbox/admin::extra"), []byte("x"), 1)
	kv.Put(prefix+"jobs/=41", []byte("non-canonical"), 1)
	kv.Put(prefix+"toplevel", []byte("x"), 1)
	if err := kv.Txn(ctx, migrate.Fence{}, []migrate.Op{{Verb: migrate.VerbDelete, Key: key("packages", "..")}}); err != nil {
		t.Fatal(err)
	}
	d, err = migrate.Verify(ctx, e.src, e.kv, prefix, 0)
	if err != nil || d.Equal() {
		t.Fatalf("verify: %+v, %v", d, err)
	}
	got := map[string]string{}
	for _, x := range d.Entries {
		got[x.Kind+" "+x.Bucket+" "+x.Key+" "+x.StoreKey] = x.Detail
	}
	for _, want := range []string{
		"different packages é/ü " + key("packages", "é/ü"),
		"different routes neg " + key("routes", "neg"),
		"extra jobs job::/sandbox/admin::extra " + key("jobs", "job::/sandbox/admin::extra"),
		"extra   " + prefix + "jobs/=41",
		"extra   " + prefix + "toplevel",
		"missing packages .. " + key("packages", ".."),
	} {
		if _, ok := got[want]; !ok {
			t.Errorf("missing entry %q in %v", want, got)
		}
	}
	if len(got) != 6 {
		t.Errorf("%d entries, want 6: %v", len(got), got)
	}
	// --max caps each kind: 2 different, 3 extra, 1 missing.
	d, _ = migrate.Verify(ctx, e.src, e.kv, prefix, 2)
	perKind := map[string]int{}
	for _, x := range d.Entries {
		perKind[x.Kind]++
	}
	if want := map[string]int{migrate.DiffDifferent: 2, migrate.DiffExtra: 2, migrate.DiffMissing: 1}; !maps.Equal(perKind, want) || d.Omitted != 1 {
		t.Errorf("max 2: entries per kind %v, want %v; %d omitted, want 1", perKind, want, d.Omitted)
	}
}

// listingKV records the prefixes store3 is listed by. Until waitFor is
// listed, listing the top level waits (a few seconds at most, then fails):
// verification must not wait for the buckets to be found before it lists
// the chunks the records are in.
type listingKV struct {
	*memkv.Store
	waitFor string
	mu      sync.Mutex
	scanned []string
	started chan struct{}
	once    sync.Once
}

func newListingKV(kv *memkv.Store, waitFor string) *listingKV {
	k := &listingKV{Store: kv, waitFor: waitFor, started: make(chan struct{})}
	if waitFor == "" {
		close(k.started)
	}
	return k
}

func (k *listingKV) Scan(ctx context.Context, prefix string, fn func(*migrate.Pair) error) error {
	k.mu.Lock()
	k.scanned = append(k.scanned, prefix)
	k.mu.Unlock()
	if prefix == k.waitFor {
		k.once.Do(func() { close(k.started) })
	}
	return k.Store.Scan(ctx, prefix, fn)
}

func (k *listingKV) Keys(ctx context.Context, prefix, separator string) ([]string, error) {
	select {
	case <-k.started:
	case <-time.After(5 * time.Second):
		return nil, fmt.Errorf("listingKV: %q listed before %q", prefix, k.waitFor)
	}
	return k.Store.Keys(ctx, prefix, separator)
}

func (k *listingKV) count(p string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	n := 0
	for _, s := range k.scanned {
		if s == p {
			n++
		}
	}
	return n
}

// The chunks the records are in are listed at once, not after the keys
// listing that finds the buckets (which costs the server a walk of every
// key).
func TestVerifyListsKnownChunksWhileFindingBuckets(t *testing.T) {
	recs := records()
	e := newEnv(t, recs)
	ctx := context.Background()
	if _, err := e.m.Run(ctx); err != nil {
		t.Fatal(err)
	}
	kv := newListingKV(e.kv, prefix+"jobs/j")
	d, err := migrate.Verify(ctx, e.src, kv, prefix, 0)
	if err != nil || !d.Equal() {
		t.Fatalf("verify: %+v, %v", d, err)
	}
	// Every chunk of every bucket is still listed, once: the empty ones
	// too, where only a writer outside the migration can have put keys.
	for _, p := range []string{prefix + "jobs/j", prefix + "jobs/a", prefix + "packages/=", prefix + "routes/z"} {
		if n := kv.count(p); n != 1 {
			t.Errorf("%q listed %d times, want 1", p, n)
		}
	}
}

// Offline, store3 is listed once after the copy: the check that store2
// did not change is the same pass as the verification.
func TestOfflineListsStore3Once(t *testing.T) {
	e := newEnv(t, records())
	e.m.Opts.Offline = true
	kv := newListingKV(e.kv, "")
	e.m.KV = kv
	if _, err := e.m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	checkCopy(t, e.kv, records())
	if n := kv.count(prefix + "jobs/j"); n != 1 {
		t.Fatalf("%q listed %d times, want 1", prefix+"jobs/j", n)
	}
}

// A chunk of more than maxListRecords records is listed in parts under its
// stem, and what lies under the chunk outside the parts is still found: a
// key outside the stem (the stem check lists the whole chunk), the stem's
// own key, a key under a part the copy put nothing in.
func TestLargeChunksAreListedInParts(t *testing.T) {
	defer migrate.SetMaxListRecords(100)()
	recs := records()
	e := newEnv(t, recs)
	kv := newListingKV(e.kv, "")
	e.m.KV = kv
	ctx := context.Background()
	if _, err := e.m.Run(ctx); err != nil {
		t.Fatal(err)
	}
	checkCopy(t, e.kv, recs)
	// The 700 jobs keys share "job::/sandbox/admin::web" and go on with a
	// digit.
	stem := prefix + "jobs/job=3A=3A=2Fsandbox=2Fadmin=3A=3Aweb"
	if n := kv.count(prefix + "jobs/j"); n != 0 {
		t.Errorf("the large chunk listed whole %d times", n)
	}
	for _, part := range []string{stem + "3", stem + "Z"} {
		if n := kv.count(part); n != 1 {
			t.Errorf("part %q listed %d times, want 1 (the cutover)", part, n)
		}
	}

	key := func(b, k string) string { s, _ := migrate.StoreKey(prefix, b, k); return s }
	if d, err := migrate.Verify(ctx, e.src, kv, prefix, 0); err != nil || !d.Equal() {
		t.Fatalf("clean verify: %+v, %v", d, err)
	}
	// Each alone, so that the chunk differs only by it: the record-by-record
	// pass over a chunk that differs would find any of them anyway.
	for _, c := range []struct{ key, want string }{
		{"job::/sandbox/admin::web123", "different job::/sandbox/admin::web123"}, // in a part
		{"job::/sandbox/admin::web", "extra job::/sandbox/admin::web"},           // the stem's own key
		{"job::/sandbox/admin::webZ", "extra job::/sandbox/admin::webZ"},         // a part the copy left empty
		{"jz", "extra jz"}, // outside the stem
	} {
		k := key("jobs", c.key)
		old, _ := e.kv.Get(ctx, k)
		e.kv.Put(k, []byte("changed"), 124)
		d, err := migrate.Verify(ctx, e.src, kv, prefix, 0)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, x := range d.Entries {
			got = append(got, x.Kind+" "+x.Key)
		}
		if len(got) != 1 || got[0] != c.want || d.Source.Equal(d.Store) {
			t.Errorf("%s: entries %q, want [%q]; store2 %d records (%s), store3 %d (%s)", c.key, got, c.want, d.Source.Count, d.Source.Digest, d.Store.Count, d.Store.Digest)
		}
		if old != nil {
			e.kv.Put(k, old.Value, old.Flags)
		} else if err := e.kv.Txn(ctx, migrate.Fence{}, []migrate.Op{{Verb: migrate.VerbDelete, Key: k}}); err != nil {
			t.Fatal(err)
		}
	}
	if n := kv.count(prefix + "jobs/j"); n == 0 {
		t.Error("a key outside the stem did not make verification list the whole chunk")
	}
}
