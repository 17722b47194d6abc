//go:build integration

package clitest

import (
	"strings"
	"testing"

	"github.com/apcera/deployhook/integration/harness"
)

// The helpers themselves, end to end: a migration through the binary,
// checked through the raw HTTP reads.
func TestMigrateAndAssert(t *testing.T) {
	e := New(t, harness.StartPostgres(t), harness.StartConsul(t))
	recs := Records(50)
	recs = append(recs, Records(1)[0])
	recs[50].Key = ".."
	e.Seed("job_manager", recs)
	conf := e.WriteConf(Conf{})
	r := e.MustRun(0, "migrate", "-f", conf)
	if !strings.Contains(r.Stderr, "Migrated store2 -> store3") {
		t.Errorf("no Migrated line:\n%s", r)
	}
	e.AssertMigrated(DefaultPrefix("job_manager"), recs)
	if got := ExpectedKey("apcera/store3/jmdb/", "jobs", "job::/sandbox/admin::web"); got != "apcera/store3/jmdb/jobs/job=3A=3A=2Fsandbox=2Fadmin=3A=3Aweb" {
		t.Errorf("ExpectedKey = %q, not DESIGN.md's example", got)
	}
}
