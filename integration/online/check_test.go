//go:build integration

package online

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/apcera/deployhook/integration/clitest"
	"github.com/apcera/deployhook/integration/harness"
	"github.com/apcera/deployhook/migrate"
)

var jsonUnmarshal = json.Unmarshal

const (
	component    = "job_manager"
	table        = "store2_records"
	triggerName  = "deployhook_store2_frozen"
	startingLine = "Starting store2 -> store3 migration..."
	frozenLine   = "store2 frozen for writes (trigger " + triggerName + " on "
	unfrozenLine = "store2 unfrozen: "
	catchUpLine  = "Catch-up round "
)

// frozenMessage is the contract's refusal, word for word.
func frozenMessage(prefix string) string {
	return fmt.Sprintf(`store2 is frozen: %s migrated to store3 (key "%smigration/.done"); restart this component with kind = store3`, component, prefix)
}

var (
	migratedRE = regexp.MustCompile(`Migrated store2 -> store3 \(took: [^,]+, records migrated: (\d+), records failed: (\d+)\)`)
	catchUpRE  = regexp.MustCompile(`Catch-up round (\d+): (\d+) records changed in store2 \((\d+) set, (\d+) deleted\)`)
	frozenRE   = regexp.MustCompile(`store2 frozen for writes \(trigger deployhook_store2_frozen on ("?[A-Za-z0-9_]+"?\.)?"?store2_records"?\)`)
)

// newEnv is a test's view of the shared servers.
func newEnv(t *testing.T) *clitest.Env {
	t.Helper()
	return clitest.New(t, shared.PG, shared.Consul)
}

// names gives a test run its own store2 database and store3 prefix.
func names(tag string) (db, prefix string) {
	return "online_" + tag, "apcera/store3/online_" + tag + "/"
}

// seed creates db with n records over four buckets, with keys that need
// escaping, and returns them.
func seed(t testing.TB, env *clitest.Env, db string, n int) []migrate.Record {
	t.Helper()
	ctx := context.Background()
	if err := env.PG.CreateComponentDB(ctx, db, table); err != nil {
		t.Fatal(err)
	}
	buckets := []string{"jobs", "routes", "packages", "policies"}
	gen := func(i int) migrate.Record {
		return migrate.Record{
			Bucket:  buckets[i%len(buckets)],
			Key:     fmt.Sprintf("k%06d::/sandbox/app é", i),
			Version: int64(i%11 + 1),
			Data:    []byte(fmt.Sprintf(`{"i":%d,"pad":"%s"}`, i, strings.Repeat("p", 40+i%120))),
		}
	}
	if err := env.PG.SeedFunc(ctx, db, table, n, gen); err != nil {
		t.Fatal(err)
	}
	return readStore2(t, env.PG, db)
}

// readStore2 reads every record of db through SQL, in byte order.
func readStore2(t testing.TB, pg *harness.Postgres, db string) []migrate.Record {
	t.Helper()
	return clitest.ReadStore2(t, pg, db, table)
}

// pgConn connects to db as the superuser, for the test's own reads, with
// a 30 s context; done closes both.
func pgConn(t testing.TB, pg *harness.Postgres, db string) (ctx context.Context, c *pgx.Conn, done func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	c, err := pg.Connect(ctx, db)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	return ctx, c, func() { c.Close(context.Background()); cancel() }
}

// triggers returns the names of deployhook's triggers on db's table: the
// freeze and the change capture's two.
func triggers(t testing.TB, pg *harness.Postgres, db string) []string {
	t.Helper()
	ctx, c, done := pgConn(t, pg, db)
	defer done()
	rows, err := c.Query(ctx, `SELECT t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
		WHERE c.relname = $1 AND t.tgname LIKE 'deployhook%' ORDER BY 1`, table)
	if err != nil {
		t.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// frozen probes whether store2 refuses writes: an INSERT in a transaction
// that is rolled back either way. The freeze's trigger may stay behind,
// inert, when its role could not drop it; what counts is the refusal.
func frozen(t testing.TB, pg *harness.Postgres, db string) bool {
	t.Helper()
	ctx, c, done := pgConn(t, pg, db)
	defer done()
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	_, err = tx.Exec(ctx, `INSERT INTO `+table+` (bucket, key, version, data) VALUES ('deployhook-test-probe', 'probe', 1, '')`)
	var pgErr *pgconn.PgError
	switch {
	case err == nil:
		return false
	case errors.As(err, &pgErr) && pgErr.Code == "25006":
		return true
	}
	t.Fatalf("probe write to %s: %v", db, err)
	return false
}

// doneDoc is .done decoded with a type of our own.
type doneDoc struct {
	Host            string `json:"host"`
	PID             int    `json:"pid"`
	Finished        string `json:"finished"`
	RecordsMigrated int64  `json:"records_migrated"`
	RecordsFailed   int64  `json:"records_failed"`
	Digest          string `json:"digest"`
	FrozenFor       string `json:"frozen_for"`
}

func readDone(t testing.TB, addr, prefix string) (*doneDoc, bool) {
	t.Helper()
	kv, _ := clitest.RawKVAt(t, addr, "", prefix+"migration/.done")
	p, ok := kv[prefix+"migration/.done"]
	if !ok {
		return nil, false
	}
	var d doneDoc
	if err := json.Unmarshal(p.Value, &d); err != nil {
		t.Fatalf(".done does not decode: %v: %q", err, p.Value)
	}
	return &d, true
}

// errorf reports at most 20 problems of one kind, then a count.
type errorf struct {
	t    testing.TB
	what string
	n    int
}

func (e *errorf) add(format string, args ...any) {
	e.t.Helper()
	e.n++
	if e.n <= 20 {
		e.t.Errorf(e.what+": "+format, args...)
	}
}

func (e *errorf) done() {
	e.t.Helper()
	if e.n > 20 {
		e.t.Errorf("%s: %d problems in all", e.what, e.n)
	}
}

// migrated is what a test knows of a migration that should have completed
// while the writer ran.
type migrated struct {
	env    *clitest.Env
	addr   string // the Consul the checks read
	db     string
	prefix string
	writes []write   // the writer's whole log
	since  time.Time // the last freeze happened after this (earlier refusals belong to an aborted cutover)
	log    string    // the completing migration's log
	start  time.Time // when the completing migration started
}

// stats is what checkMigrated measured, for the test's log.
type stats struct {
	records, acked, ackedDuring, refused, afterDone int
	firstRefusal                                    time.Time
	rate                                            float64
	frozenFor                                       string
}

func (s stats) String() string {
	return fmt.Sprintf("%d records; writer: %d acked (%d during the migration, %.0f/s before the freeze), %d refused (%d started after .done), first refusal %s; .done frozen_for %s",
		s.records, s.acked, s.ackedDuring, s.rate, s.refused, s.afterDone, s.firstRefusal.UTC().Format("15:04:05.000000"), s.frozenFor)
}

// checkMigrated is the verdict of issue 9 on an online migration with a
// writer running throughout:
//
//   - store3 equals the final (frozen) store2 exactly: keys by the
//     escaping of DESIGN.md, values byte for byte, versions as Flags, no
//     other key outside migration/, and .done counts and digests exactly it;
//   - every acked write is in store3: the last acked write of each key is
//     its state there (the writer's keys are each written by one
//     connection, in order);
//   - every refusal is SQLSTATE 25006 with the contract's message;
//   - after the first refusal of the last cutover, no write that started
//     later was acked; every write that started after .done's finished
//     time was refused, and there were some;
//   - store2 stays frozen after .done.
func checkMigrated(t *testing.T, m migrated) stats {
	t.Helper()
	var st stats
	store2 := readStore2(t, m.env.PG, m.db)
	st.records = len(store2)
	got, _ := clitest.RawKVAt(t, m.addr, "", m.prefix)
	done, ok := readDone(t, m.addr, m.prefix)
	if !ok {
		t.Fatalf("%s: no .done after a migration that exited 0", m.prefix)
	}

	eq := &errorf{t: t, what: "store3 != final store2"}
	want := make(map[string]migrate.Record, len(store2))
	for _, r := range store2 {
		k := clitest.ExpectedKey(m.prefix, r.Bucket, r.Key)
		want[k] = r
		p, ok := got[k]
		switch {
		case !ok:
			eq.add("record %s/%q (version %d) missing in store3 (key %q)", r.Bucket, r.Key, r.Version, k)
		case !bytes.Equal(p.Value, r.Data):
			eq.add("record %q: %d bytes in store3, store2 has %d", k, len(p.Value), len(r.Data))
		case p.Flags != uint64(r.Version):
			eq.add("record %q: Flags %d in store3, store2 version %d", k, p.Flags, r.Version)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok && !strings.HasPrefix(k, m.prefix+"migration/") {
			eq.add("key %q in store3 is not in store2", k)
		}
	}
	eq.done()
	if done.RecordsMigrated != int64(len(store2)) || done.RecordsFailed != 0 {
		t.Errorf(".done says %d migrated, %d failed; the frozen store2 has %d", done.RecordsMigrated, done.RecordsFailed, len(store2))
	}
	if d := clitest.Digest(store2); done.Digest != d {
		t.Errorf(".done digest %s, the frozen store2's is %s", done.Digest, d)
	}
	st.frozenFor = done.FrozenFor
	if _, err := time.ParseDuration(done.FrozenFor); err != nil {
		t.Errorf(".done frozen_for %q is not a Go duration: %v", done.FrozenFor, err)
	}
	if mm := migratedRE.FindAllStringSubmatch(m.log, -1); len(mm) != 1 {
		t.Errorf("want one %q line in the migration's log, got %d", "Migrated store2 -> store3", len(mm))
	} else if n, _ := strconv.Atoi(mm[0][1]); n != len(store2) {
		t.Errorf("Migrated line says %s records migrated; the frozen store2 has %d", mm[0][1], len(store2))
	}
	if !frozenRE.MatchString(m.log) {
		t.Errorf("no %q line in the migration's log", frozenLine)
	}
	// Catch-up comes before the freeze: the freeze is short because the
	// rounds before it brought store3 near store2.
	if i, j := catchUpRE.FindStringIndex(m.log), frozenRE.FindStringIndex(m.log); i == nil || (j != nil && i[0] > j[0]) {
		t.Errorf("no %q line before the freeze in the migration's log: the writer wrote during the copy, so catch-up rounds are due before the cutover", catchUpLine+"K: N records changed in store2 (S set, D deleted)")
	}
	if !frozen(t, m.env.PG, m.db) {
		t.Errorf("store2 is not frozen after .done (triggers %v on %s): a component still on store2 would write into the void", triggers(t, m.env.PG, m.db), table)
	}
	checkNoCapture(t, m.env.PG, m.db, "after .done")

	checkAcked(t, m.writes, m.prefix, got, store2)

	// Refusals: the contract's code and message, and none acked after the
	// freeze.
	msg := frozenMessage(m.prefix)
	bad := &errorf{t: t, what: "refusal"}
	var first time.Time
	for _, w := range m.writes {
		switch w.Outcome {
		case "refused":
			st.refused++
			if w.SQLState != "25006" || w.Message != msg {
				bad.add("%s: want SQLSTATE 25006 %q", w, msg)
			}
			if !w.start().Before(m.since) && (first.IsZero() || w.end().Before(first)) {
				first = w.end()
			}
		case "acked":
			st.acked++
		default:
			bad.add("%s: a write that is neither acked nor refused", w)
		}
	}
	bad.done()
	st.firstRefusal = first
	if first.IsZero() {
		t.Fatalf("the writer was never refused after the cutover (%d writes logged)", len(m.writes))
	}
	late := &errorf{t: t, what: "ACKED AFTER THE FREEZE"}
	finished, err := time.Parse(time.RFC3339Nano, done.Finished)
	if err != nil {
		t.Errorf(".done finished %q: %v", done.Finished, err)
	}
	for _, w := range m.writes {
		if w.start().After(first) && w.Outcome == "acked" {
			late.add("%s started after a refusal at %s", w, first.UTC().Format("15:04:05.000000"))
		}
		if err == nil && w.start().After(finished) {
			st.afterDone++
			if w.Outcome != "refused" {
				late.add("%s started after .done (finished %s)", w, done.Finished)
			}
		}
		if w.Outcome == "acked" && w.end().After(m.start) && w.end().Before(first) {
			st.ackedDuring++
		}
	}
	late.done()
	if st.afterDone == 0 {
		t.Errorf("no write started after .done (finished %s): the writer did not run after the migration", done.Finished)
	}
	if st.ackedDuring == 0 {
		t.Errorf("no write was acked between the start of the migration and the freeze: the scenario did not happen")
	}
	if d := first.Sub(m.start).Seconds(); d > 0 {
		st.rate = float64(countWrites(m.writes, func(w write) bool { return w.start().After(m.start) && w.end().Before(first) })) / d
	}
	return st
}

// checkAcked checks that the last acked write of every key the writer
// touched is that key's state in store3 and in store2.
func checkAcked(t *testing.T, writes []write, prefix string, store3 map[string]clitest.RawPair, store2 []migrate.Record) {
	t.Helper()
	type key struct{ bucket, key string }
	last := map[key]write{}
	for _, w := range writes {
		if w.Outcome == "acked" {
			last[key{w.Bucket, w.Key}] = w
		}
	}
	in2 := make(map[key]migrate.Record, len(store2))
	for _, r := range store2 {
		in2[key{r.Bucket, r.Key}] = r
	}
	lost := &errorf{t: t, what: "ACKED WRITE LOST"}
	for k, w := range last {
		p, ok := store3[clitest.ExpectedKey(prefix, k.bucket, k.key)]
		r, ok2 := in2[k]
		if w.Op == "delete" {
			if ok {
				lost.add("%s: the key is still in store3 (version %d)", w, p.Flags)
			}
			if ok2 {
				lost.add("%s: the key is still in store2 (version %d)", w, r.Version)
			}
			continue
		}
		switch {
		case !ok:
			lost.add("%s: not in store3", w)
		case p.Flags != uint64(w.Version) || sha(p.Value) != w.SHA256:
			lost.add("%s: store3 has version %d, data sha256 %s", w, p.Flags, sha(p.Value))
		}
		if !ok2 || r.Version != w.Version || sha(r.Data) != w.SHA256 {
			lost.add("%s: store2 disagrees (present %t, version %d)", w, ok2, r.Version)
		}
	}
	lost.done()
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// checkNoAckWhileFrozen checks that no write that started after the first
// refusal at or after from and ended before until was acked: the window in
// which the test knows store2 stayed frozen.
func checkNoAckWhileFrozen(t *testing.T, writes []write, from, until time.Time) int {
	t.Helper()
	var first time.Time
	for _, w := range writes {
		if w.Outcome == "refused" && !w.start().Before(from) && (first.IsZero() || w.end().Before(first)) {
			first = w.end()
		}
	}
	if first.IsZero() {
		t.Errorf("no write was refused between %s and %s although store2 was frozen", from.UTC().Format("15:04:05.000"), until.UTC().Format("15:04:05.000"))
		return 0
	}
	late := &errorf{t: t, what: "ACKED WHILE FROZEN"}
	n := 0
	for _, w := range writes {
		if w.start().After(first) && w.end().Before(until) {
			n++
			if w.Outcome == "acked" {
				late.add("%s after a refusal at %s", w, first.UTC().Format("15:04:05.000000"))
			}
		}
	}
	late.done()
	return n
}

// checkNoCapture checks that the change capture is gone: no capture
// trigger that records (a role that does not own the table leaves them
// inert), no log table (it would grow with every write).
func checkNoCapture(t testing.TB, pg *harness.Postgres, db, when string) {
	t.Helper()
	ctx, c, done := pgConn(t, pg, db)
	defer done()
	var triggers, logs int
	if err := c.QueryRow(ctx, `SELECT (SELECT count(*) FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
			WHERE t.tgname LIKE 'deployhook_store2_capture%' AND p.prosrc <> ' BEGIN RETURN NULL; END '),
		(SELECT count(*) FROM pg_class WHERE relname LIKE 'deployhook_store2_changes%')`).Scan(&triggers, &logs); err != nil {
		t.Fatal(err)
	}
	if triggers+logs != 0 {
		t.Errorf("the change capture is left %s: %d triggers, %d log tables", when, triggers, logs)
	}
}

// checkWritable checks that store2 took writes after tm: no freeze
// trigger, and every write that started after tm (at least n of them,
// waited for) was acked.
func checkWritable(t *testing.T, env *clitest.Env, w *writerProc, db string, tm time.Time, n int) {
	t.Helper()
	if frozen(t, env.PG, db) {
		t.Errorf("store2 still frozen (triggers %v) after the migration ended without .done", triggers(t, env.PG, db))
	}
	checkNoCapture(t, env.PG, db, "after the migration ended without .done")
	ws := w.waitWritesAfter(tm, n, "store2 writable again")
	bad := &errorf{t: t, what: "STORE2 NOT WRITABLE"}
	for _, x := range ws {
		if x.start().After(tm) && x.Outcome != "acked" {
			bad.add("%s", x)
		}
	}
	bad.done()
}

// freezeListener reports the commit of the freeze: an event trigger in db
// notifies a channel when a CREATE TRIGGER of the freeze's trigger commits
// (not the change capture's), and PostgreSQL delivers a notification only
// once its transaction has committed.
func freezeListener(t testing.TB, pg *harness.Postgres, db string) <-chan time.Time {
	t.Helper()
	ctx := context.Background()
	ch := "deployhook_test_freeze_" + db
	if err := pg.Exec(ctx, db, fmt.Sprintf(`
CREATE OR REPLACE FUNCTION deployhook_test_notify_freeze() RETURNS event_trigger LANGUAGE plpgsql AS $$
DECLARE r record;
BEGIN
  FOR r IN SELECT object_identity FROM pg_event_trigger_ddl_commands() LOOP
    IF r.object_identity LIKE 'deployhook_store2_frozen on %%' THEN PERFORM pg_notify(%s, r.object_identity); END IF;
  END LOOP;
END $$;
DROP EVENT TRIGGER IF EXISTS deployhook_test_notify_freeze;
CREATE EVENT TRIGGER deployhook_test_notify_freeze ON ddl_command_end WHEN TAG IN ('CREATE TRIGGER')
  EXECUTE FUNCTION deployhook_test_notify_freeze();`, quoteLiteral(ch))); err != nil {
		t.Fatal(err)
	}
	c, err := pg.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "LISTEN "+pgx.Identifier{ch}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	lctx, cancel := context.WithCancel(ctx)
	out := make(chan time.Time, 1)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			if _, err := c.WaitForNotification(lctx); err != nil {
				if !errors.Is(err, context.Canceled) {
					t.Logf("freeze listener: %v", err)
				}
				return
			}
			select {
			case out <- time.Now():
			default:
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-stopped; c.Close(context.Background()) })
	return out
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// holdStore2 runs insert, a write to db's table, in a transaction it
// leaves open, as soon as the migration p has put its change capture on
// the table, and returns that transaction. The freeze waits for it (and
// retries, letting other writers through), so the migration catches up
// and does not freeze until the test commits or rolls it back; its write
// is captured. A catch-up round's log line alone does not say that much: a
// round that finds little to do is followed by the freeze at once. The
// capture goes on before the copy's snapshot and the freeze after the
// copy: the write lands between them, and after the snapshot.
func holdStore2(t *testing.T, env *clitest.Env, db string, p *clitest.Proc, insert string) pgx.Tx {
	t.Helper()
	ctx := context.Background()
	c, err := env.PG.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	clitest.Poll(t, 2*time.Minute, "the change capture on "+db, func() bool {
		var on bool
		if err := c.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
			WHERE c.relname = $1 AND t.tgname = $2)`, table, migrate.CaptureName).Scan(&on); err != nil {
			t.Fatal(err)
		}
		if !on && p.Exited() {
			t.Fatalf("migrate exited before it put its change capture on store2:\n%s", p)
		}
		return on
	})
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, insert); err != nil {
		t.Fatalf("the held transaction's write (before the freeze): %v", err)
	}
	return tx
}
