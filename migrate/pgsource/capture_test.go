//go:build integration

package pgsource_test

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/apcera/deployhook/migrate"
	"github.com/apcera/deployhook/migrate/pgsource"
)

// componentRole creates a login role db_component with the privileges a
// component has on the table, runs the extra statements in db (%s in them
// names the role), and returns the role's URL.
func componentRole(t *testing.T, db string, grants ...string) string {
	t.Helper()
	ctx := ctxT(t)
	role := db + "_component"
	for _, sql := range []string{
		`CREATE ROLE ` + role + ` LOGIN PASSWORD 'pw-` + role + `'`,
		`GRANT CONNECT ON DATABASE ` + db + ` TO ` + role,
	} {
		if err := pg.Exec(ctx, "postgres", sql); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		ctx := context.Background()
		pg.DropDatabase(ctx, db)
		pg.Exec(ctx, "postgres", `DROP ROLE IF EXISTS `+role)
	})
	grants = append([]string{`GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON store2_records TO %s`}, grants...)
	for _, sql := range grants {
		if err := pg.Exec(ctx, db, strings.ReplaceAll(sql, "%s", role)); err != nil {
			t.Fatal(err)
		}
	}
	u, _ := url.Parse(pg.URL(db))
	u.User = url.UserPassword(role, "pw-"+role)
	return u.String()
}

func execAs(t *testing.T, connURL string, sqls ...string) {
	t.Helper()
	ctx := ctxT(t)
	c, err := pgx.Connect(ctx, connURL)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	for _, sql := range sqls {
		if _, err := c.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
}

// changed reads what cs says changed, as "bucket/key=data" or
// "bucket/key deleted".
func changed(t *testing.T, cs migrate.ChangeSnapshot) (all bool, got []string) {
	t.Helper()
	all, err := cs.Changed(ctxT(t), func(rec *migrate.Record, present bool) error {
		if present {
			got = append(got, fmt.Sprintf("%s/%s=%s", rec.Bucket, rec.Key, rec.Data))
		} else {
			got = append(got, fmt.Sprintf("%s/%s deleted", rec.Bucket, rec.Key))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return all, got
}

// triggersLeft counts what the freeze and the capture left in the database.
func objectsLeft(t *testing.T, db string) (triggers, functions, tables int) {
	t.Helper()
	ctx := ctxT(t)
	c, err := pg.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	err = c.QueryRow(ctx, `SELECT (SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'deployhook%'),
		(SELECT count(*) FROM pg_proc WHERE proname LIKE 'deployhook%'),
		(SELECT count(*) FROM pg_class WHERE relname LIKE 'deployhook%')`).Scan(&triggers, &functions, &tables)
	if err != nil {
		t.Fatal(err)
	}
	return
}

// The capture records every key a component's writes change, as the
// component's role (which has no privilege on the capture's table); a
// round sees the records as its snapshot holds them, consumes only what
// that snapshot saw, and forgets nothing when it is not consumed.
func TestCapture(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	db := dbName(t)
	var recs []migrate.Record
	for _, k := range []string{"a", "b", "c", "untouched"} {
		recs = append(recs, migrate.Record{Bucket: "jobs", Key: k, Version: 1, Data: []byte("x")})
	}
	src := newSource(t, db, recs)
	component := componentRole(t, db)
	if _, on, err := src.Capturing(ctx); on || err != nil {
		t.Fatalf("Capturing before Capture: %t, %v", on, err)
	}
	if err := src.Capture(ctx, "session-1"); err != nil {
		t.Fatal(err)
	}
	if owner, on, err := src.Capturing(ctx); !on || owner != "session-1" || err != nil {
		t.Fatalf("Capturing = %q, %t, %v", owner, on, err)
	}
	execAs(t, component,
		`INSERT INTO store2_records (bucket, key, version, data) VALUES ('jobs', 'd', 1, 'new')`,
		`UPDATE store2_records SET data = 'changed', version = 2 WHERE key = 'a'`,
		`UPDATE store2_records SET key = 'b2' WHERE key = 'b'`,
		`DELETE FROM store2_records WHERE key = 'c'`,
		`INSERT INTO store2_records (bucket, key, version, data) VALUES ('jobs', 'gone', 1, 'x')`,
		`DELETE FROM store2_records WHERE key = 'gone'`,
	)
	want := []string{"jobs/a=changed", "jobs/b deleted", "jobs/b2=x", "jobs/c deleted", "jobs/d=new", "jobs/gone deleted"}
	round := func() migrate.ChangeSnapshot {
		t.Helper()
		cs, err := src.Changes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return cs
	}
	// Closed without Consume: nothing forgotten.
	cs := round()
	if all, got := changed(t, cs); all || !slices.Equal(got, want) {
		t.Fatalf("changes %q (all %t), want %q", got, all, want)
	}
	cs.Close(ctx)
	cs = round()
	// A write after the snapshot: neither seen nor consumed.
	execAs(t, component, `UPDATE store2_records SET data = 'later' WHERE key = 'untouched'`)
	if _, got := changed(t, cs); !slices.Equal(got, want) {
		t.Fatalf("changes again %q, want %q", got, want)
	}
	if n, err := cs.Count(ctx); n != 4 || err != nil {
		t.Fatalf("count in the change snapshot: %d, %v", n, err)
	}
	if err := cs.Consume(ctx); err != nil {
		t.Fatal(err)
	}
	cs.Close(ctx)
	cs = round()
	if _, got := changed(t, cs); !slices.Equal(got, []string{"jobs/untouched=later"}) {
		t.Fatalf("changes after the consume %q", got)
	}
	cs.Consume(ctx)
	cs.Close(ctx)

	// A TRUNCATE names no record: compare all.
	execAs(t, component, `TRUNCATE store2_records`)
	cs = round()
	if all, _ := changed(t, cs); !all {
		t.Fatal("a TRUNCATE did not ask for a comparison of all records")
	}
	cs.Close(ctx)

	// A new capture forgets the earlier one's records.
	if err := src.Capture(ctx, "session-2"); err != nil {
		t.Fatal(err)
	}
	cs = round()
	if all, got := changed(t, cs); all || len(got) != 0 {
		t.Fatalf("a new capture holds %q (all %t)", got, all)
	}
	cs.Close(ctx)

	// EndCapture asks, then drops all of it; writes go on.
	var seen string
	if dropped, err := src.EndCapture(ctx, func(owner string) (bool, error) { seen = owner; return false, nil }); dropped || err != nil || seen != "session-2" {
		t.Fatalf("EndCapture kept: %t, %v, owner %q", dropped, err, seen)
	}
	if dropped, err := src.EndCapture(ctx, func(string) (bool, error) { return true, nil }); !dropped || err != nil {
		t.Fatalf("EndCapture: %t, %v", dropped, err)
	}
	if tr, fn, tb := objectsLeft(t, db); tr+fn+tb != 0 {
		t.Fatalf("left %d triggers, %d functions, %d tables", tr, fn, tb)
	}
	execAs(t, component, `INSERT INTO store2_records (bucket, key, version, data) VALUES ('jobs', 'after', 1, 'x')`)
	if _, err := src.Changes(ctx); err == nil {
		t.Fatal("Changes without a capture")
	}
	if dropped, err := src.EndCapture(ctx, func(string) (bool, error) { t.Error("decide called"); return true, nil }); dropped || err != nil {
		t.Fatalf("EndCapture of nothing: %t, %v", dropped, err)
	}
}

// A role that may capture without owning the table (TRIGGER, CREATE on
// the schema) leaves the triggers inert when it ends the capture; the
// owner drops them.
func TestCaptureByNonOwner(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	db := dbName(t)
	owner := newSource(t, db, []migrate.Record{{Bucket: "jobs", Key: "a", Version: 1, Data: []byte("x")}})
	migrator := componentRole(t, db, `GRANT TRIGGER ON store2_records TO %s`, `GRANT CREATE ON SCHEMA public TO %s`)
	src, err := pgsource.New(ctx, pgsource.Config{URL: migrator})
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Capture(ctx, "s"); err != nil {
		t.Fatal(err)
	}
	execAs(t, pg.URL(db), `UPDATE store2_records SET data = 'y'`) // as the table's owner
	cs, err := src.Changes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, got := changed(t, cs); !slices.Equal(got, []string{"jobs/a=y"}) {
		t.Fatalf("changes %q", got)
	}
	cs.Close(ctx)
	if dropped, err := src.EndCapture(ctx, func(string) (bool, error) { return true, nil }); !dropped || err != nil {
		t.Fatalf("EndCapture by a non-owner: %t, %v", dropped, err)
	}
	if _, on, err := src.Capturing(ctx); on || err != nil {
		t.Fatalf("Capturing after the end: %t, %v", on, err)
	}
	if tr, fn, tb := objectsLeft(t, db); tr != 2 || fn != 1 || tb != 0 {
		t.Fatalf("left %d triggers, %d functions, %d tables; want the 2 inert triggers and their function", tr, fn, tb)
	}
	execAs(t, pg.URL(db), `UPDATE store2_records SET data = 'z'`)
	// Captured again, then ended by the owner: nothing left.
	if err := src.Capture(ctx, "s2"); err != nil {
		t.Fatal(err)
	}
	if dropped, err := owner.EndCapture(ctx, func(string) (bool, error) { return true, nil }); !dropped || err != nil {
		t.Fatalf("EndCapture by the owner: %t, %v", dropped, err)
	}
	if tr, fn, tb := objectsLeft(t, db); tr+fn+tb != 0 {
		t.Fatalf("left %d triggers, %d functions, %d tables", tr, fn, tb)
	}
}
