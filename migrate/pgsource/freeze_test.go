//go:build integration

package pgsource_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/apcera/deployhook/migrate"
	"github.com/apcera/deployhook/migrate/pgsource"
)

const freezeMsg = `store2 is frozen: job_manager migrated to store3 (key "apcera/store3/jmdb/migration/.done"); restart this component with kind = store3`

// writes are one statement of each kind a component (or an operator) may
// run against the table.
var writes = map[string]string{
	"insert":   `INSERT INTO store2_records (bucket, key, version, data) VALUES ('jobs', 'new', 1, 'x')`,
	"update":   `UPDATE store2_records SET version = version + 1 WHERE key = 'a'`,
	"delete":   `DELETE FROM store2_records WHERE key = 'a'`,
	"no-op":    `DELETE FROM store2_records WHERE false`,
	"truncate": `TRUNCATE store2_records`,
}

// checkWrites asserts that every write is refused with 25006 and the
// freeze's message (frozen), or accepted (not frozen; each in a
// transaction rolled back).
func checkWrites(t *testing.T, db string, frozen bool) {
	t.Helper()
	ctx := ctxT(t)
	c, err := pg.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	for name, sql := range writes {
		tx, err := c.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		_, err = tx.Exec(ctx, sql)
		tx.Rollback(ctx)
		var pgErr *pgconn.PgError
		switch {
		case frozen && (!errors.As(err, &pgErr) || pgErr.Code != "25006" || pgErr.Message != freezeMsg):
			t.Errorf("%s on the frozen table: %v, want SQLSTATE 25006 %q", name, err, freezeMsg)
		case !frozen && err != nil:
			t.Errorf("%s on the unfrozen table: %v", name, err)
		}
	}
}

func TestFreeze(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	db := dbName(t)
	src := newSource(t, db, []migrate.Record{{Bucket: "jobs", Key: "a", Version: 1, Data: []byte("x")}})
	checkWrites(t, db, false)
	if _, frozen, err := src.Frozen(ctx); frozen || err != nil {
		t.Fatalf("Frozen before the freeze: %t, %v", frozen, err)
	}
	if err := src.Freeze(ctx, "session-1", freezeMsg); err != nil {
		t.Fatal(err)
	}
	checkWrites(t, db, true)
	// Reads go on.
	if got := scanAll(t, src); len(got) != 1 {
		t.Fatalf("scan of the frozen table: %d records", len(got))
	}
	// Idempotent: a second freeze takes the ownership over.
	if err := src.Freeze(ctx, "session-2", freezeMsg); err != nil {
		t.Fatal(err)
	}
	if owner, frozen, err := src.Frozen(ctx); !frozen || owner != "session-2" || err != nil {
		t.Fatalf("Frozen = %q, %t, %v", owner, frozen, err)
	}
	c, err := pg.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var n int
	var schema string
	if err := c.QueryRow(ctx, `SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'deployhook%'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("%d triggers, %v", n, err)
	}
	if err := c.QueryRow(ctx, `SELECT n.nspname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE p.proname = $1`, migrate.FreezeName).Scan(&schema); err != nil || schema != "public" {
		t.Fatalf("function in schema %q, %v", schema, err)
	}
	// decide sees the owner, and may keep the freeze.
	var seen string
	dropped, err := src.Unfreeze(ctx, func(owner string) (bool, error) { seen = owner; return false, nil })
	if dropped || err != nil || seen != "session-2" {
		t.Fatalf("Unfreeze kept: %t, %v, owner %q", dropped, err, seen)
	}
	checkWrites(t, db, true)
	dropped, err = src.Unfreeze(ctx, func(string) (bool, error) { return true, nil })
	if !dropped || err != nil {
		t.Fatalf("Unfreeze: %t, %v", dropped, err)
	}
	checkWrites(t, db, false)
	if err := c.QueryRow(ctx, `SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'deployhook%'`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d triggers left, %v", n, err)
	}
	// Nothing frozen: decide is not asked.
	dropped, err = src.Unfreeze(ctx, func(string) (bool, error) { t.Error("decide called"); return true, nil })
	if dropped || err != nil {
		t.Fatalf("Unfreeze of nothing: %t, %v", dropped, err)
	}
	// Frozen again after an unfreeze.
	if err := src.Freeze(ctx, "session-3", freezeMsg); err != nil {
		t.Fatal(err)
	}
	checkWrites(t, db, true)
}

// The freeze waits for the writers in flight, for at most its lock
// timeout per attempt (a transient error), and then a committed write is
// in every later snapshot.
func TestFreezeWaitsForWritersInFlight(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	db := dbName(t)
	newSource(t, db, []migrate.Record{{Bucket: "jobs", Key: "a", Version: 1, Data: []byte("x")}})
	src, err := pgsource.New(ctx, pgsource.Config{URL: pg.URL(db), FreezeLockTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	c, err := pg.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO store2_records (bucket, key, version, data) VALUES ('jobs', 'in-flight', 1, 'x')`); err != nil {
		t.Fatal(err)
	}
	err = src.Freeze(ctx, "s", freezeMsg)
	if err == nil || !migrate.IsTransient(err) || !strings.Contains(err.Error(), "lock timeout") {
		t.Fatalf("freeze behind a writer in flight: %v, want a transient lock timeout", err)
	}
	if _, frozen, _ := src.Frozen(ctx); frozen {
		t.Fatal("frozen although the freeze failed")
	}
	done := make(chan error, 1)
	go func() {
		// Retried as the migration does, while the writer commits.
		for {
			err := src.Freeze(ctx, "s", freezeMsg)
			if err == nil || !migrate.IsTransient(err) {
				done <- err
				return
			}
		}
	}()
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range scanAll(t, src) {
		found = found || r.Key == "in-flight"
	}
	if !found {
		t.Fatal("the write committed before the freeze is not in a snapshot opened after it")
	}
	checkWrites(t, db, true)
}

func TestCanFreeze(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	db := dbName(t)
	owner := newSource(t, db, []migrate.Record{{Bucket: "jobs", Key: "a", Version: 1, Data: []byte("x")}})
	if missing, err := owner.CanFreeze(ctx); missing != "" || err != nil {
		t.Fatalf("the owner: %q, %v", missing, err)
	}
	role := db + "_component"
	src, err := pgsource.New(ctx, pgsource.Config{URL: componentRole(t, db, `REVOKE CREATE ON SCHEMA public FROM PUBLIC`)})
	if err != nil {
		t.Fatal(err)
	}
	missing, err := src.CanFreeze(ctx)
	if err != nil || !strings.Contains(missing, `GRANT TRIGGER ON TABLE public.store2_records TO `+role) ||
		!strings.Contains(missing, `GRANT CREATE ON SCHEMA public TO `+role) {
		t.Fatalf("no privilege: %q, %v", missing, err)
	}
	var pgErr *pgconn.PgError
	if err := src.Freeze(ctx, "s", freezeMsg); !errors.As(err, &pgErr) || pgErr.Code != "42501" {
		t.Fatalf("freeze without the privileges: %v", err)
	}
	if err := pg.Exec(ctx, db, `GRANT TRIGGER ON store2_records TO `+role); err != nil {
		t.Fatal(err)
	}
	if missing, _ = src.CanFreeze(ctx); strings.Contains(missing, "GRANT TRIGGER") || !strings.Contains(missing, "GRANT CREATE ON SCHEMA") {
		t.Fatalf("TRIGGER only: %q", missing)
	}
	if err := pg.Exec(ctx, db, `GRANT CREATE ON SCHEMA public TO `+role); err != nil {
		t.Fatal(err)
	}
	if missing, err = src.CanFreeze(ctx); missing != "" || err != nil {
		t.Fatalf("TRIGGER and CREATE: %q, %v", missing, err)
	}
	// Such a role freezes, and unfreezes although it may not drop the
	// trigger of a table it does not own.
	if err := src.Freeze(ctx, "s", freezeMsg); err != nil {
		t.Fatal(err)
	}
	checkWrites(t, db, true)
	if dropped, err := src.Unfreeze(ctx, func(string) (bool, error) { return true, nil }); !dropped || err != nil {
		t.Fatalf("unfreeze by a non-owner: %t, %v", dropped, err)
	}
	checkWrites(t, db, false)
	if _, frozen, err := src.Frozen(ctx); frozen || err != nil {
		t.Fatalf("Frozen after the unfreeze: %t, %v", frozen, err)
	}
	if err := src.Freeze(ctx, "s2", freezeMsg); err != nil {
		t.Fatal(err)
	}
	checkWrites(t, db, true)
	// The owner drops what the non-owner left inert.
	if dropped, err := owner.Unfreeze(ctx, func(string) (bool, error) { return true, nil }); !dropped || err != nil {
		t.Fatalf("unfreeze by the owner: %t, %v", dropped, err)
	}
	checkWrites(t, db, false)
}
