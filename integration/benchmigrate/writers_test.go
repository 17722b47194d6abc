//go:build integration

package main

import (
	"context"
	"testing"
	"time"

	"github.com/apcera/deployhook/integration/harness"
	"github.com/apcera/deployhook/migrate"
)

// The writers write at about their rate, their refusals by a frozen store2
// are counted rather than fatal, and the reset's delete leaves the seeded
// records only.
func TestWriters(t *testing.T) {
	ctx := context.Background()
	pg := harness.StartPostgres(t)
	if err := pg.CreateComponentDB(ctx, database, table); err != nil {
		t.Fatal(err)
	}
	const n = 1000
	vals := values()
	if err := pg.SeedFunc(ctx, database, table, n, func(i int) migrate.Record { return record(i, vals[i%26]) }); err != nil {
		t.Fatal(err)
	}
	w, err := startWriters(ctx, pg, n, 200, 2, "test", vals)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // the writers' own pace is what is observed
	if err := pg.Exec(ctx, database, `CREATE FUNCTION frozen() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'frozen' USING ERRCODE = '25006'; END $$`); err != nil {
		t.Fatal(err)
	}
	if err := pg.Exec(ctx, database, `CREATE TRIGGER frozen BEFORE INSERT OR UPDATE OR DELETE ON `+table+` FOR EACH ROW EXECUTE FUNCTION frozen()`); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	s := w.stop()
	t.Logf("writers: %s", s)
	if s.err != nil {
		t.Fatalf("writers failed: %v", s.err)
	}
	if rate := float64(s.applied) / s.took.Seconds(); s.applied < 50 || rate > 220 {
		t.Errorf("%d writes applied in %v (%.0f/s), want about 200/s before the freeze", s.applied, s.took, rate)
	}
	if s.refused == 0 {
		t.Error("no write refused while store2 was frozen")
	}
	if err := pg.Exec(ctx, database, `DROP TRIGGER frozen ON `+table); err != nil {
		t.Fatal(err)
	}
	if err := deleteWriterKeys(ctx, pg); err != nil {
		t.Fatal(err)
	}
	if got, err := count(ctx, pg); err != nil || got != n {
		t.Errorf("after deleteWriterKeys store2 holds %d records (%v), want %d", got, err, n)
	}
}
