package clitest

import (
	"context"
	"testing"
	"time"

	"github.com/apcera/deployhook/integration/harness"
	"github.com/apcera/deployhook/migrate"
)

// ReadStore2 reads every record of db's table through SQL (pgx, not the
// code under test), in byte order of bucket then key: what store2 holds.
// It fails the test on any error and gives up after 2 minutes.
func ReadStore2(t testing.TB, pg *harness.Postgres, db, table string) []migrate.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := pg.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	rows, err := c.Query(ctx, `SELECT bucket, key, version, data FROM `+table+` ORDER BY bucket COLLATE "C", key COLLATE "C"`)
	if err != nil {
		t.Fatal(err)
	}
	var out []migrate.Record
	for rows.Next() {
		var r migrate.Record
		if err := rows.Scan(&r.Bucket, &r.Key, &r.Version, &r.Data); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
