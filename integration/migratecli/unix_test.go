//go:build integration

package migratecli

import (
	"testing"

	"github.com/apcera/deployhook/integration/clitest"
	"github.com/apcera/deployhook/integration/harness"
)

// A dry run, the whole migration (its verification read-back included) and
// verify, with store3 at a unix:// address: the listing once bypassed consul/api
// and failed there (invalid URL escape "%2F") after copying every record.
func TestMigrateOverUnixSocket(t *testing.T) {
	t.Parallel()
	c := harness.StartConsul(t, harness.WithUnixSocket())
	e := ownEnv(t, shared.PG, c)
	recs := recordsFor("jm", 300)
	conf := e.conf("job_manager", "jm", recs, clitest.Conf{Address: c.UnixAddr()})
	r := e.MustRun(0, "migrate", "-f", conf, "-dry_run_store_migration")
	mustLog(t, r, "INFO", dryRunRE(len(recs), 0))
	r = e.MustRun(0, "migrate", "-f", conf, "--hostname", "central-unix")
	mustLog(t, r, "INFO", migratedRE(len(recs), 0))
	e.AssertMigrated(e.prefix("jm"), recs)
	e.MustRun(0, "verify", "-f", conf)
}
