//go:build integration

package pgsource_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/apcera/deployhook/migrate"
	"github.com/apcera/deployhook/migrate/pgsource"
	"github.com/apcera/deployhook/validate"
)

// A table name the component conf accepts is read by pgsource from real
// PostgreSQL: plain, schema-qualified, quoted with case and spaces, and in
// a schema of its own. The conf is the validator's, not a test's copy.
func TestTableNamesEndToEnd(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	db := dbName(t)
	if err := pg.CreateComponentDB(ctx, db, migrate.DefaultTable); err != nil {
		t.Fatal(err)
	}
	c, err := pg.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	// Each table holds one record whose key names it, so that a read of
	// the wrong table shows.
	for _, tb := range []migrate.Table{{Schema: "public", Name: "store2_records"}, {Name: "My Table"},
		{Schema: "Store Two", Name: `odd "name"`}, {Schema: "legacy", Name: "records"}, {Name: "select"}} {
		if tb.Schema != "" {
			if _, err := c.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{tb.Schema}.Sanitize()); err != nil {
				t.Fatal(err)
			}
		}
		id := pgx.Identifier(tb.Parts()).Sanitize()
		if _, err := c.Exec(ctx, "CREATE TABLE IF NOT EXISTS "+id+" (LIKE public.store2_records INCLUDING ALL)"); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Exec(ctx, "INSERT INTO "+id+" (bucket, key, version, data) VALUES ('jobs', $1, 1, 'x')", id); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		conf string
		want migrate.Table
		key  string // the record's key: which table was read
	}{
		{`table: store2_records`, migrate.Table{Name: "store2_records"}, `"public"."store2_records"`},
		{`table: STORE2_Records`, migrate.Table{Name: "store2_records"}, `"public"."store2_records"`},
		{`table: public.store2_records`, migrate.Table{Schema: "public", Name: "store2_records"}, `"public"."store2_records"`},
		{`table: '"My Table"'`, migrate.Table{Name: "My Table"}, `"My Table"`},
		{`table: "\"Store Two\".\"odd \"\"name\"\"\""`, migrate.Table{Schema: "Store Two", Name: `odd "name"`}, `"Store Two"."odd ""name"""`},
		{`table: Legacy.RECORDS`, migrate.Table{Schema: "legacy", Name: "records"}, `"legacy"."records"`},
		{`table: '"select"'`, migrate.Table{Name: "select"}, `"select"`},
	} {
		t.Run(tc.conf, func(t *testing.T) {
			src := fmt.Sprintf("component: job_manager\ndb: {\n  kind: store3\n  migrate_store2_to_store3: true\n  postgres: { %s }\n}\n", tc.conf)
			comp, diags := validate.LoadComponent([]byte(src), "jm.conf")
			if diags.HasErrors() {
				t.Fatalf("validate refuses %s: %v", tc.conf, diags)
			}
			s, err := pgsource.New(ctx, pgsource.Config{URL: pg.URL(db), Table: comp.Postgres.Table})
			if err != nil {
				t.Fatalf("pgsource refuses what validate accepted (%q): %v", comp.Postgres.Table, err)
			}
			if !strings.Contains(s.String(), "."+tc.want.String()+" on ") {
				t.Errorf("source %s, want table %s", s, tc.want)
			}
			got := scanAll(t, s)
			if len(got) != 1 || got[0].Key != tc.key {
				t.Errorf("read %+v from %s, want the one record of %s", got, s, tc.key)
			}
		})
	}
}

// ParseTable agrees with PostgreSQL's own parser: what it accepts,
// PostgreSQL reads as the same parts (parse_ident) and as a table name in
// FROM; what it refuses, PostgreSQL refuses too, except for the refusals
// ParseTable documents as stricter. Every key word PostgreSQL knows is
// tried, unquoted, as a table name and after a schema.
func TestParseTableAgreesWithPostgres(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	c, err := pg.Connect(ctx, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	rows, err := c.Query(ctx, "SELECT word FROM pg_get_keywords()")
	if err != nil {
		t.Fatal(err)
	}
	words, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"store2_records", "Store2_Records", "public.store2_records", `"My Table"`, `"s"."t"`,
		`"a""b".x$1`, "_t", "tablé", "ÉTÉ", `"a.b"`, "a$", "a.b.c", "", ".", "a.", ".a", "a..b", `""`, `"abc`,
		`"a"b`, "2019_records", "my table", "store2-records", "a;drop table x", `x"y`, "a b", "t1.", `"x".`}
	// Stricter than PostgreSQL on purpose (documented on ParseTable).
	stricter := map[string]bool{" store2_records": true, "store2_records ": true, "public . t": true,
		strings.Repeat("a", 64): true, `"` + strings.Repeat("b", 64) + `"`: true}
	for n := range stricter {
		names = append(names, n)
	}
	for _, w := range words {
		names = append(names, w, "public."+w, strings.ToUpper(w))
	}
	for _, name := range names {
		parsed, err := ParseTableVerdict(name)
		pgParts, pgOK := postgresReads(ctx, t, c, name)
		switch {
		case err == nil && !pgOK:
			t.Errorf("ParseTable(%q) accepts %v, PostgreSQL refuses it", name, parsed.Parts())
		case err == nil && !cmp.Equal(parsed.Parts(), pgParts):
			t.Errorf("ParseTable(%q) = %q, PostgreSQL reads %q", name, parsed.Parts(), pgParts)
		case err != nil && pgOK && !stricter[name]:
			t.Errorf("ParseTable(%q) refuses (%v), PostgreSQL reads %q", name, err, pgParts)
		case err != nil && !errors.Is(err, migrate.ErrTableInvalid):
			t.Errorf("ParseTable(%q): %v, want ErrTableInvalid", name, err)
		}
	}
}

// ParseTableVerdict is migrate.ParseTable, named for the test's messages.
var ParseTableVerdict = migrate.ParseTable

// postgresReads asks PostgreSQL whether name is one table name: parse_ident
// reads it whole (no alias or other words after it), and it stands as a
// table in FROM (the statement fails for want of the table, 42P01 or
// 3F000, not for its syntax). It returns the parts PostgreSQL reads.
func postgresReads(ctx context.Context, t *testing.T, c *pgx.Conn, name string) ([]string, bool) {
	t.Helper()
	if strings.ContainsRune(name, 0) {
		return nil, false
	}
	var parts []string
	err := c.QueryRow(ctx, "SELECT parse_ident($1)", name).Scan(&parts)
	var pe *pgconn.PgError
	switch {
	case errors.As(err, &pe):
		return nil, false
	case err != nil:
		t.Fatalf("parse_ident(%q): %v", name, err)
	}
	_, err = c.Exec(ctx, "SELECT 1 FROM "+name+" LIMIT 0")
	switch {
	case err == nil:
		return nil, false // not a table: a function such as current_date
	case !errors.As(err, &pe):
		t.Fatalf("SELECT 1 FROM %s: %v", name, err)
	case pe.Code != "42P01" && pe.Code != "3F000":
		return nil, false
	}
	return parts, true
}
