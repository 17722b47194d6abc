//go:build integration

package reliability

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/apcera/deployhook/integration/clitest"
	"github.com/apcera/deployhook/integration/harness"
)

// TestPostgresTrouble restarts PostgreSQL, or terminates the migration's
// backend, while the migration streams its snapshot. The migration
// completes from a new snapshot, or fails cleanly and a rerun completes.
func TestPostgresTrouble(t *testing.T) {
	for _, tc := range []struct {
		name    string
		disturb func(t *testing.T, pg *harness.Postgres)
	}{
		{"pg-restart", func(t *testing.T, pg *harness.Postgres) {
			if err := pg.Restart(); err != nil {
				t.Fatal(err)
			}
		}},
		{"pg-terminate-backend", func(t *testing.T, pg *harness.Postgres) {
			n, err := pg.TerminateBackends(context.Background(), "jmdb")
			if err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				t.Errorf("no backend of jmdb to terminate mid-read")
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ci, long := 1, 5
			runs := 0
			scenario(t, tc.name, ci, long, &runs)
			pg, consul := harness.StartPostgres(t), harness.StartConsul(t)
			env := clitest.New(t, pg, consul)
			records := seedJobs(t, env)
			for i := range count(ci, long) {
				frac := 0.2 + 0.6*float64(i)/float64(max(1, count(ci, long)-1))
				prefix := fmt.Sprintf("apcera/store3/pg%02d/", i)
				conf := env.WriteConf(clitest.Conf{Prefix: prefix, Name: fmt.Sprintf("pg%02d.conf", i)})
				p := startProc(t, env, "migrate", "-f", conf, "--hostname", "pg-host")
				waitProgress(t, consul.Addr(), "", prefix, "jobs", int(frac*float64(len(records))), 2*time.Minute, p.exited)
				if p.exited() {
					t.Fatalf("migration ended before the disturbance:\n%s", p)
				}
				tc.disturb(t, pg)
				code := p.wait(t, 4*time.Minute)
				t.Logf("run %d (at %.2f): migrate exit %d", i, frac, code)
				if code != 0 {
					if checkInvariant(t, env, prefix, records) {
						t.Errorf("exit %d yet .done present", code)
					}
					t.Logf("failed cleanly (exit %d), rerunning:\n%s", code, p.err.String())
					env.MustRun(0, "migrate", "-f", conf, "--hostname", "pg-host")
				}
				mustDone(t, env, prefix, records)
				runs++
			}
		})
	}
}

// TestPostgresWritesDuringMigration writes to store2 while an --offline
// migration copies (components not stopped although offline needs them
// stopped): INSERTs, UPDATEs of records already copied and not yet copied,
// a DELETE. The migration must notice (exit 5, "store2 changed during the
// migration", no .done); store3 holds the snapshot it copied, not a mix, so
// `verify` afterwards reports every later write as a difference (exit 5,
// naming it). The online migration with writers is integration/online's.
func TestPostgresWritesDuringMigration(t *testing.T) {
	ci, long := 1, 5
	runs := 0
	scenario(t, "pg-writes-during-migration", ci, long, &runs)
	pg, consul := harness.StartPostgres(t), harness.StartConsul(t)
	env := clitest.New(t, pg, consul)
	n := count(50000, 100000)
	for i := range count(ci, long) {
		db := fmt.Sprintf("writes%02d", i)
		snapshot := seedGen(t, env, db, n, seqRecords("jobs", n))
		prefix := fmt.Sprintf("apcera/store3/writes%02d/", i)
		conf := env.WriteConf(clitest.Conf{Prefix: prefix, Database: db, Name: db + ".conf"})
		p := startProc(t, env, "migrate", "-f", conf, "--hostname", "writes-host", "--offline")
		waitProgress(t, consul.Addr(), "", prefix, "jobs", n/5, 2*time.Minute, p.exited)

		copied, pending, gone := seqKey(10), seqKey(n-10), seqKey(n-5)
		sql := fmt.Sprintf(`BEGIN;
INSERT INTO store2_records (bucket, key, version, data) VALUES
  ('aaa-late', 'inserted-before', 1, 'new'), ('jobs', 'zz-inserted-after', 1, 'new');
UPDATE store2_records SET version = version + 1000, data = 'UPDATED' WHERE bucket = 'jobs' AND key IN (%s, %s);
DELETE FROM store2_records WHERE bucket = 'jobs' AND key = %s;
COMMIT;`, quote(copied), quote(pending), quote(gone))
		if err := pg.Exec(context.Background(), db, sql); err != nil {
			t.Fatal(err)
		}
		if p.exited() {
			t.Fatalf("the migration ended before the writes committed: the scenario did not happen\n%s", p)
		}
		if code := p.wait(t, 4*time.Minute); code != 5 || !strings.Contains(p.err.String(), "store2 changed during the migration") {
			t.Fatalf("migrate --offline with concurrent writes: exit %d, want 5 and %q\n%s", code, "store2 changed during the migration", p)
		}
		if checkInvariant(t, env, prefix, snapshot) {
			t.Errorf(".done written although store2 changed during an offline migration")
		}

		v := env.Run("verify", "-f", conf)
		if v.Code != 5 {
			t.Errorf("verify after later writes: exit %d, want 5\n%s", v.Code, v)
		}
		for _, k := range []string{"inserted-before", "zz-inserted-after", copied, pending, gone} {
			if !strings.Contains(v.Stdout, fmt.Sprintf("key %q", k)) {
				t.Errorf("verify does not name the later write to key %q:\n%s", k, v)
			}
		}
		runs++
	}
}

func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
