//go:build integration

package pgsource_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/apcera/deployhook/migrate"
	"github.com/apcera/deployhook/migrate/migratetest"
	"github.com/apcera/deployhook/migrate/pgsource"
)

var conformanceTables atomic.Int64

// writable lets the suite write behind a snapshot's back.
type writable struct {
	*pgsource.Source
	db, table string
}

func (w writable) Insert(ctx context.Context, r migrate.Record) error {
	c, err := pg.Connect(ctx, w.db)
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	_, err = c.Exec(ctx, `INSERT INTO `+pgx.Identifier{w.table}.Sanitize()+` (bucket, key, version, data) VALUES ($1, $2, $3, $4)
		ON CONFLICT (bucket, key) DO UPDATE SET version = EXCLUDED.version, data = EXCLUDED.data`, r.Bucket, r.Key, r.Version, r.Data)
	return err
}

func (w writable) Delete(ctx context.Context, bucket, key string) (bool, error) {
	c, err := pg.Connect(ctx, w.db)
	if err != nil {
		return false, err
	}
	defer c.Close(ctx)
	tag, err := c.Exec(ctx, `DELETE FROM `+pgx.Identifier{w.table}.Sanitize()+` WHERE bucket = $1 AND key = $2`, bucket, key)
	return tag.RowsAffected() > 0, err
}

var _ migratetest.SourceWriter = writable{}

func TestConformance(t *testing.T) {
	t.Parallel()
	const db = "conformance"
	if err := pg.CreateDatabase(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	migratetest.TestSource(t, func(t *testing.T, records []migrate.Record) migrate.Source {
		// A table each, in one database: a database each costs a second.
		table := fmt.Sprintf("records_%d", conformanceTables.Add(1))
		ctx := context.Background()
		if err := pg.CreateComponentDB(ctx, db, table); err != nil {
			t.Fatal(err)
		}
		if err := pg.Seed(ctx, db, table, records); err != nil {
			t.Fatal(err)
		}
		src, err := pgsource.New(ctx, pgsource.Config{URL: pg.URL(db), Table: table})
		if err != nil {
			t.Fatal(err)
		}
		return writable{src, db, table}
	})
}
