//go:build integration

package migratecli

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/apcera/deployhook/integration/clitest"
	"github.com/apcera/deployhook/integration/harness"
	"github.com/apcera/deployhook/migrate"
)

// maxRSS is what a migration may hold whatever the size of store2 (the
// issue's target; DESIGN.md: constant memory).
const maxRSS = 64 << 10 // KiB

// The memory of a migration does not grow with the size of a bucket. Its
// verification lists store3 one (bucket, first escaped byte of the key)
// chunk at a time; keys spread over many first bytes keep each chunk small,
// but real keys share their first bytes ("job::/...", "pkg::/..."), and then
// one chunk is the whole bucket.
func TestMigrateMemoryBounded(t *testing.T) {
	t.Parallel()
	c := harness.StartConsul(t, harness.WithLogLevel("warn"))
	e := ownEnv(t, shared.PG, c)
	const n = 150_000
	val := bytes.Repeat([]byte("v"), 200)
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
	cases := []struct {
		name string
		key  func(i int) string
	}{
		{"keys spread over 64 first bytes", func(i int) string { return fmt.Sprintf("%c%08d", alphabet[i%len(alphabet)], i) }},
		{"keys sharing their first byte", func(i int) string { return fmt.Sprintf("job::/sandbox/app-%08d", i) }},
	}
	rss := make([]int64, len(cases))
	for i, tc := range cases {
		short := fmt.Sprintf("m%d", i)
		db := e.db(short)
		if err := e.PG.CreateComponentDB(context.Background(), db, "store2_records"); err != nil {
			t.Fatal(err)
		}
		if err := e.PG.SeedFunc(context.Background(), db, "store2_records", n, func(i int) migrate.Record {
			return migrate.Record{Bucket: "jobs", Key: tc.key(i), Version: 1, Data: val}
		}); err != nil {
			t.Fatal(err)
		}
		conf := e.conf("job_manager", short, nil, clitest.Conf{})
		cmd := e.Command("migrate", "-f", conf)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		peak, err := harness.RunPeakRSS(cmd)
		if err != nil {
			t.Fatalf("%s: migrate: %v\n%s", tc.name, err, stderr.String())
		}
		if !hasLog(t, stderr.String(), "INFO", migratedRE(n, 0)) {
			t.Fatalf("%s: no Migrated line:\n%s", tc.name, stderr.String())
		}
		rss[i] = peak
		t.Logf("%s: %d records: peak RSS %.1f MiB", tc.name, n, float64(rss[i])/1024)
	}
	// The spread keys are the reference, what the pipeline itself holds;
	// the same records under keys that share a first byte must not need
	// much more, and neither may exceed the target.
	if rss[1] >= maxRSS || rss[1] > 2*rss[0] {
		t.Errorf("peak RSS %.1f MiB migrating %d records of one bucket whose keys share a first byte (%.1f MiB with spread keys); want < %d MiB and not twice the reference",
			float64(rss[1])/1024, n, float64(rss[0])/1024, maxRSS>>10)
	}
}
