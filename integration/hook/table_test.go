//go:build integration

package hook

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/apcera/deployhook/integration/clitest"
)

// A schema-qualified, quoted table name, end to end through the binary:
// `migrate` copies it, `verify` finds no difference, and the public table
// of the same name, which holds other records, is never read.
func TestQuotedSchemaTable(t *testing.T) {
	e := newEnv(t)
	n := e.names("job_manager")
	ctx := context.Background()
	decoy := clitest.Records(3)
	e.SeedDB(n.DB, decoy) // public.store2_records: must not be read
	c, err := pg.Connect(ctx, n.DB)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	table := pgx.Identifier{"Legacy Store", "Store2 Records"}
	for _, q := range []string{
		`CREATE SCHEMA "Legacy Store"`,
		`CREATE TABLE ` + table.Sanitize() + ` (LIKE public.store2_records INCLUDING ALL)`,
	} {
		if _, err := c.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	records := clitest.Records(250)
	for _, r := range records {
		if _, err := c.Exec(ctx, `INSERT INTO `+table.Sanitize()+` (bucket, key, version, data) VALUES ($1, $2, $3, $4)`,
			r.Bucket, r.Key, r.Version, r.Data); err != nil {
			t.Fatal(err)
		}
	}
	conf := e.conf(clitest.Conf{Database: n.DB, Prefix: n.Prefix, Table: `'"Legacy Store"."Store2 Records"'`})
	e.MustRun(0, "migrate", "-f", conf, "--hostname", "central-1")
	e.AssertMigrated(n.Prefix, records)
	e.MustRun(0, "verify", "-f", conf)

	// The same name unquoted folds to a table that does not exist: a
	// never-used store2, refused (exit 3), not the quoted one read.
	other := e.conf(clitest.Conf{Database: n.DB, Prefix: n.Prefix + "x/", Table: `Legacy_Store.Store2_Records`, Name: "folded.conf"})
	e.MustRun(3, "migrate", "-f", other, "--hostname", "central-1")
}
