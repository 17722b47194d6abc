//go:build integration

package pgsource_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"github.com/apcera/deployhook/integration/harness"
	"github.com/apcera/deployhook/migrate"
	"github.com/apcera/deployhook/migrate/pgsource"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// dbName is a database name of the test's own.
func dbName(t *testing.T) string {
	return strings.ToLower(strings.NewReplacer("/", "_", "=", "_", " ", "_").Replace(t.Name()))
}

// newSource creates db with the record table, seeds it, and returns a
// source on it.
func newSource(t *testing.T, db string, records []migrate.Record) *pgsource.Source {
	t.Helper()
	ctx := ctxT(t)
	if err := pg.CreateComponentDB(ctx, db, migrate.DefaultTable); err != nil {
		t.Fatal(err)
	}
	if err := pg.Seed(ctx, db, migrate.DefaultTable, records); err != nil {
		t.Fatal(err)
	}
	s, err := pgsource.New(ctx, pgsource.Config{URL: pg.URL(db)})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// scanAll reads a whole snapshot, copying Data.
func scanAll(t *testing.T, src migrate.Source) []migrate.Record {
	t.Helper()
	ctx := ctxT(t)
	sn, err := src.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer sn.Close(ctx)
	var got []migrate.Record
	err = sn.Scan(ctx, func(r *migrate.Record) error {
		c := *r
		c.Data = bytes.Clone(r.Data)
		got = append(got, c)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func byteOrder(rs []migrate.Record) {
	sort.Slice(rs, func(i, j int) bool {
		if rs[i].Bucket != rs[j].Bucket {
			return rs[i].Bucket < rs[j].Bucket
		}
		return rs[i].Key < rs[j].Key
	})
}

func TestScanByteOrder(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	db := dbName(t)
	// An ICU database whose default collation is not byte order: the
	// scan's COLLATE "C" is what keeps it.
	if err := pg.Exec(ctx, "postgres", `CREATE DATABASE `+db+` TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C'`); err != nil {
		t.Fatal(err)
	}
	keys := []string{"a", "B", "b", "é", "e", "f", "Z", "ä", "\x7f", "a b", "a/b", "a::b", "=", "日本", "z", "😀", "A", "_x", "-x", ".", "..", "\t", "ü", "Ω"}
	var want []migrate.Record
	for i, k := range keys {
		for _, b := range []string{"jobs", "Jobs", "routes", "é"} {
			want = append(want, migrate.Record{Bucket: b, Key: k, Version: int64(i) - 3, Data: []byte{byte(i), 0, 0xff}})
		}
	}
	want = append(want, migrate.Record{Bucket: "big", Key: "v", Version: 1 << 62, Data: bytes.Repeat([]byte{7}, 500000)},
		migrate.Record{Bucket: "empty", Key: "v", Version: 0, Data: []byte{}})
	src := newSource(t, db, want)
	// The database's own order differs from byte order.
	c, err := pg.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	var first string
	c.QueryRow(ctx, `SELECT key FROM store2_records WHERE bucket = 'jobs' ORDER BY key LIMIT 1`).Scan(&first)
	c.Close(ctx)
	t.Logf("the database's own first key: %q", first)

	byteOrder(want)
	got := scanAll(t, src)
	if d := cmp.Diff(want, got, cmp.Comparer(func(a, b []byte) bool { return bytes.Equal(a, b) })); d != "" {
		t.Errorf("scan (-want +got):\n%s", d)
	}
}

func TestSnapshotIsolationAndCount(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	db := dbName(t)
	src := newSource(t, db, []migrate.Record{{Bucket: "jobs", Key: "a", Version: 1, Data: []byte("x")}})
	sn, err := src.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer sn.Close(ctx)
	if err := pg.Exec(ctx, db, `INSERT INTO store2_records (bucket, key, version, data) VALUES ('jobs', 'b', 1, 'y')`); err != nil {
		t.Fatal(err)
	}
	if n, err := sn.Count(ctx); n != 1 || err != nil {
		t.Errorf("Count = %d, %v; want 1 (the snapshot's)", n, err)
	}
	n := 0
	if err := sn.Scan(ctx, func(*migrate.Record) error { n++; return nil }); err != nil || n != 1 {
		t.Errorf("Scan saw %d records, %v; want 1", n, err)
	}
	if ok, err := src.HasRecords(ctx); !ok || err != nil {
		t.Errorf("HasRecords = %v, %v", ok, err)
	}
	// A write in the snapshot is refused: it is read only.
	stop := errors.New("stop")
	if err := sn.Scan(ctx, func(*migrate.Record) error { return stop }); err != stop {
		t.Errorf("Scan returned %v, want fn's error", err)
	}
}

func TestNeverUsed(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	db := dbName(t)
	if err := pg.CreateDatabase(ctx, db+"_notable"); err != nil {
		t.Fatal(err)
	}
	if err := pg.CreateComponentDB(ctx, db+"_empty", migrate.DefaultTable); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, db, table string
		want            []string
	}{
		{"no database", db + "_missing", "", []string{`database "` + db + `_missing" does not exist`, "never used store2"}},
		{"no table", db + "_notable", "", []string{`table store2_records does not exist in database "` + db + `_notable"`, "never used store2"}},
		{"other table", db + "_empty", "records_v2", []string{`table records_v2 does not exist`, "never used store2"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			u := pg.URLWithoutPassword("")
			u = strings.Replace(u, "@", ":"+pg.Password()+"@", 1)
			src, err := pgsource.New(ctx, pgsource.Config{URL: u, Database: tt.db, Table: tt.table})
			if err != nil {
				t.Fatal(err)
			}
			_, err = src.Snapshot(ctx)
			if !errors.Is(err, migrate.ErrNeverUsed) || migrate.IsTransient(err) {
				t.Fatalf("Snapshot: %v, want ErrNeverUsed", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Snapshot: %q lacks %q", err, w)
				}
			}
			if strings.Contains(err.Error(), pg.Password()) {
				t.Errorf("password leaked: %v", err)
			}
			if ok, err := src.HasRecords(ctx); ok || !errors.Is(err, migrate.ErrNeverUsed) {
				t.Errorf("HasRecords = %v, %v; want false, ErrNeverUsed", ok, err)
			}
		})
	}
	src := newSource(t, db+"_empty", nil)
	if ok, err := src.HasRecords(ctx); ok || err != nil {
		t.Errorf("HasRecords of an empty table = %v, %v", ok, err)
	}
}

func TestErrorsKeepThePasswordOut(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	closed := harness.ClosedAddr(t)
	const secret = "s3cret-Pa55word"
	wrong := strings.Replace(pg.URL("postgres"), pg.Password(), secret, 1)
	for _, tt := range []struct {
		name, url string
		transient bool
	}{
		{"connection refused", "postgres://jm:" + secret + "@" + closed + "/jmdb?sslmode=disable&connect_timeout=5", true},
		{"wrong password", wrong, false},
		{"bad url", "postgres://jm:" + secret + "@127.0.0.1:99999999/jmdb", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			src, err := pgsource.New(ctx, pgsource.Config{URL: tt.url})
			if err == nil {
				_, err = src.Snapshot(ctx)
			}
			t.Logf("%v", err)
			if err == nil || migrate.IsTransient(err) != tt.transient || errors.Is(err, migrate.ErrNeverUsed) {
				t.Errorf("err = %v, transient %v; want transient %v", err, migrate.IsTransient(err), tt.transient)
			}
			if err != nil && strings.Contains(err.Error(), secret) {
				t.Errorf("password leaked: %v", err)
			}
		})
	}
}

func TestInvalidTable(t *testing.T) {
	t.Parallel()
	for _, table := range []string{"a;drop", `x"y`, "1abc", "a.b.c", "select", strings.Repeat("t", 64)} {
		if _, err := pgsource.New(context.Background(), pgsource.Config{URL: pg.URL("jmdb"), Table: table}); !errors.Is(err, migrate.ErrTableInvalid) {
			t.Errorf("table %q: %v, want ErrTableInvalid", table, err)
		}
	}
}

// TestEnvironment runs without a URL: libpq's PG* variables, and the
// component's database as the default. Not parallel: it sets the
// environment.
func TestEnvironment(t *testing.T) {
	ctx := ctxT(t)
	const db = "env_jmdb"
	if err := pg.CreateComponentDB(ctx, db, migrate.DefaultTable); err != nil {
		t.Fatal(err)
	}
	if err := pg.Seed(ctx, db, migrate.DefaultTable, []migrate.Record{{Bucket: "jobs", Key: "k", Version: 9, Data: []byte("d")}}); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PGHOST", pg.Host)
	t.Setenv("PGPORT", fmt.Sprint(pg.Port))
	t.Setenv("PGUSER", pg.User)
	t.Setenv("PGSSLMODE", "disable")
	t.Setenv("PGDATABASE", "")
	t.Setenv("PGPASSWORD", "")
	t.Setenv("PGPASSFILE", pg.PassFile())
	src, err := pgsource.New(ctx, pgsource.Config{Database: db})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(src.String(), db+".") {
		t.Errorf("source %s, want database %q", src, db)
	}
	if got := scanAll(t, src); len(got) != 1 || got[0].Version != 9 {
		t.Errorf("scan = %+v", got)
	}
	// A URL that names no database gets the default too.
	src, err = pgsource.New(ctx, pgsource.Config{URL: pg.URLWithoutPassword(""), Database: db})
	if err != nil {
		t.Fatal(err)
	}
	if got := scanAll(t, src); len(got) != 1 {
		t.Errorf("scan with a URL without database = %+v", got)
	}
}

func TestScanConstantMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("100,000 rows")
	}
	t.Parallel()
	ctx := ctxT(t)
	db := dbName(t)
	if err := pg.CreateComponentDB(ctx, db, migrate.DefaultTable); err != nil {
		t.Fatal(err)
	}
	const n, size = 100000, 1000 // about 100 MB of data
	data := bytes.Repeat([]byte{0xab}, size)
	err := pg.SeedFunc(ctx, db, migrate.DefaultTable, n, func(i int) migrate.Record {
		// Insertion order is not key order.
		return migrate.Record{Bucket: fmt.Sprintf("b%d", i%7), Key: fmt.Sprintf("k%08d", (i*7919)%n), Version: int64(i), Data: data}
	})
	if err != nil {
		t.Fatal(err)
	}
	src, err := pgsource.New(ctx, pgsource.Config{URL: pg.URL(db)})
	if err != nil {
		t.Fatal(err)
	}
	sn, err := src.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer sn.Close(ctx)

	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	base, peak := ms.HeapInuse, ms.HeapInuse
	count := 0
	var lastB, lastK string
	start := time.Now()
	err = sn.Scan(ctx, func(r *migrate.Record) error {
		if r.Bucket < lastB || r.Bucket == lastB && r.Key <= lastK {
			return fmt.Errorf("out of order: %q/%q after %q/%q", r.Bucket, r.Key, lastB, lastK)
		}
		if len(r.Data) != size {
			return fmt.Errorf("data of %d bytes", len(r.Data))
		}
		lastB, lastK = r.Bucket, r.Key
		count++
		if count%10000 == 0 {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if count != n {
		t.Errorf("scanned %d records, want %d", count, n)
	}
	growth := int64(peak) - int64(base)
	t.Logf("scanned %d records (%d MB) in %v (%.0f rows/s); heap in use grew by %d KiB at most",
		count, n*size>>20, took, float64(n)/took.Seconds(), growth>>10)
	if growth > 16<<20 {
		t.Errorf("heap in use grew by %d MiB while scanning: not streaming", growth>>20)
	}
}

func TestLostConnectionIsTransient(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	db := dbName(t)
	var recs []migrate.Record
	for i := range 1000 {
		recs = append(recs, migrate.Record{Bucket: "jobs", Key: fmt.Sprint(i), Version: 1, Data: make([]byte, 100)})
	}
	src := newSource(t, db, recs)
	sn, err := src.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer sn.Close(ctx)
	if n, err := pg.TerminateBackends(ctx, db); err != nil || n != 1 {
		t.Fatalf("TerminateBackends = %d, %v", n, err)
	}
	err = sn.Scan(ctx, func(*migrate.Record) error { return nil })
	t.Logf("scan after pg_terminate_backend: %v", err)
	if !migrate.IsTransient(err) {
		t.Errorf("scan after pg_terminate_backend: %v, want transient", err)
	}
	if err := sn.Close(ctx); err != nil {
		t.Errorf("Close of a snapshot whose connection died: %v", err)
	}
	// A new snapshot works.
	if got := scanAll(t, src); len(got) != len(recs) {
		t.Errorf("rescan: %d records", len(got))
	}
}

func TestServerRestartIsTransient(t *testing.T) {
	if testing.Short() {
		t.Skip("own server")
	}
	t.Parallel()
	ctx := ctxT(t)
	own := harness.StartPostgres(t)
	if err := own.CreateComponentDB(ctx, "jmdb", migrate.DefaultTable); err != nil {
		t.Fatal(err)
	}
	src, err := pgsource.New(ctx, pgsource.Config{URL: own.URL("jmdb")})
	if err != nil {
		t.Fatal(err)
	}
	sn, err := src.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer sn.Close(ctx)
	if err := own.Stop(); err != nil {
		t.Fatal(err)
	}
	_, err = sn.Count(ctx)
	if !migrate.IsTransient(err) || strings.Contains(fmt.Sprint(err), own.Password()) {
		t.Errorf("count on a stopped server: %v, want transient", err)
	}
	_, err = src.Snapshot(ctx)
	if !migrate.IsTransient(err) || strings.Contains(fmt.Sprint(err), own.Password()) {
		t.Errorf("snapshot on a stopped server: %v, want transient", err)
	}
	t.Logf("stopped server: %v", err)
}

// A user without SELECT on the table is refused with ErrPermissionDenied,
// not retried.
func TestNoPrivilegeIsPermissionDenied(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	db := dbName(t)
	if err := pg.CreateComponentDB(ctx, db, migrate.DefaultTable); err != nil {
		t.Fatal(err)
	}
	role := db + "_noread"
	if err := pg.Exec(ctx, db, "CREATE ROLE "+role+" LOGIN PASSWORD 'no-read-pw'"); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(pg.URL(db))
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(role, "no-read-pw")
	src, err := pgsource.New(ctx, pgsource.Config{URL: u.String()})
	if err != nil {
		t.Fatal(err)
	}
	_, err = src.Snapshot(ctx)
	if !errors.Is(err, migrate.ErrPermissionDenied) || migrate.IsTransient(err) || strings.Contains(fmt.Sprint(err), "no-read-pw") {
		t.Fatalf("snapshot without SELECT: %v, want ErrPermissionDenied, not transient", err)
	}
	t.Logf("%v", err)
}

// Unchanged dates row versions against the marked snapshot, not against
// the clock: a write whose transaction was open when the mark was taken,
// and committed after it, is a change; one rolled back is not; and a row
// frozen by VACUUM FREEZE since keeps the xmin that dates it.
func TestUnchangedDatesRowVersionsAgainstTheMark(t *testing.T) {
	ctx := ctxT(t)
	recs := []migrate.Record{
		{Bucket: "jobs", Key: "a", Version: 1, Data: []byte("a")},
		{Bucket: "jobs", Key: "b", Version: 1, Data: []byte("b")},
	}
	for _, c := range []struct {
		name string
		// before runs before the mark, after after it; before may return a
		// transaction that after ends.
		before func(*testing.T, string) pgx.Tx
		after  func(*testing.T, string, pgx.Tx)
		want   bool
	}{
		{"in flight at the mark, committed", func(t *testing.T, db string) pgx.Tx {
			return begin(t, db, `UPDATE store2_records SET version = 2 WHERE key = 'a'`)
		}, func(t *testing.T, db string, tx pgx.Tx) {
			if err := tx.Commit(ctx); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"rolled back", nil, func(t *testing.T, db string, _ pgx.Tx) {
			if err := begin(t, db, `UPDATE store2_records SET version = 2 WHERE key = 'a'`).Rollback(ctx); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"replaced, then frozen", nil, func(t *testing.T, db string, _ pgx.Tx) {
			execAs(t, pg.URL(db), `DELETE FROM store2_records WHERE key = 'a'`, `INSERT INTO store2_records VALUES ('jobs', 'c', 1, 'c')`,
				`VACUUM (FREEZE) store2_records`)
		}, false},
		{"frozen, unchanged", nil, func(t *testing.T, db string, _ pgx.Tx) {
			execAs(t, pg.URL(db), `VACUUM (FREEZE) store2_records`)
		}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			db := dbName(t)
			src := newSource(t, db, recs)
			var tx pgx.Tx
			if c.before != nil {
				tx = c.before(t, db)
			}
			first, err := src.Snapshot(ctx)
			if err != nil {
				t.Fatal(err)
			}
			m, err := first.Mark(ctx)
			if err != nil {
				t.Fatal(err)
			}
			n, err := first.Count(ctx)
			if err != nil {
				t.Fatal(err)
			}
			first.Close(ctx)
			c.after(t, db, tx)
			later, err := src.Snapshot(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer later.Close(ctx)
			if got, err := later.Unchanged(ctx, m, n); err != nil || got != c.want {
				t.Fatalf("Unchanged = %t, %v; want %t", got, err, c.want)
			}
		})
	}
}

// begin opens a transaction on db that ran q; the test ends it.
func begin(t *testing.T, db, q string) pgx.Tx {
	t.Helper()
	ctx := ctxT(t)
	c, err := pg.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	tx, err := c.Begin(ctx)
	if err == nil {
		_, err = tx.Exec(ctx, q)
	}
	if err != nil {
		t.Fatal(err)
	}
	return tx
}

// backends returns the pids of the source's connections to db (named
// deployhook), once there are want of them: a closed connection's
// backend leaves pg_stat_activity when it has exited, a moment later.
func backends(t *testing.T, db string, want int) []int {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctxT(t), 10*time.Second)
	defer cancel()
	c, err := pg.Connect(ctx, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	for {
		rows, err := c.Query(ctx, `SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name = 'deployhook' ORDER BY pid`, db)
		if err != nil {
			t.Fatal(err)
		}
		pids, err := pgx.CollectRows(rows, pgx.RowTo[int])
		if err != nil {
			t.Fatal(err)
		}
		if len(pids) == want {
			return pids
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%d connections to %s, want %d", len(pids), db, want)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// One connection serves one use after another: a snapshot, then the
// checks, then another snapshot; a second one opened beside it is closed
// when it is done; one that died while idle is replaced; Close closes it.
func TestConnectionsAreReused(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	db := dbName(t)
	src := newSource(t, db, []migrate.Record{{Bucket: "jobs", Key: "a", Version: 1, Data: []byte("{}")}})
	defer src.Close()

	sn, err := src.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := sn.Close(ctx); err != nil {
		t.Fatal(err)
	}
	first := backends(t, db, 1)
	if ok, err := src.HasRecords(ctx); !ok || err != nil {
		t.Fatalf("HasRecords = %t, %v", ok, err)
	}
	if _, err := src.CanFreeze(ctx); err != nil {
		t.Fatal(err)
	}
	if got := backends(t, db, 1); got[0] != first[0] {
		t.Fatalf("backend %d after the checks, want %d: the connection was not reused", got[0], first[0])
	}

	// Two snapshots side by side take two connections; one is kept.
	a, err := src.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b, err := src.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := b.Count(ctx); n != 1 || err != nil {
		t.Fatalf("Count = %d, %v", n, err)
	}
	backends(t, db, 2)
	for _, sn := range []migrate.Snapshot{a, b, b} { // closing twice is harmless
		if err := sn.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	backends(t, db, 1)

	// The kept connection dies; the next use opens another.
	if n, err := pg.TerminateBackends(ctx, db); err != nil || n != 1 {
		t.Fatalf("TerminateBackends = %d, %v", n, err)
	}
	if ok, err := src.HasRecords(ctx); !ok || err != nil {
		t.Fatalf("HasRecords after the kept connection was terminated = %t, %v", ok, err)
	}
	backends(t, db, 1)

	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	backends(t, db, 0)
}
