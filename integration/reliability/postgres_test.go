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
				p := clitest.StartProc(t, env, "migrate", "-f", conf, "--hostname", "pg-host")
				waitProgress(t, consul.Addr(), "", prefix, "jobs", int(frac*float64(len(records))), 2*time.Minute, p.Exited)
				if p.Exited() {
					t.Fatalf("migration ended before the disturbance:\n%s", p)
				}
				tc.disturb(t, pg)
				code := p.Wait(t, 4*time.Minute)
				t.Logf("run %d (at %.2f): migrate exit %d", i, frac, code)
				if code != 0 {
					if checkInvariant(t, env, prefix, records) {
						t.Errorf("exit %d yet .done present", code)
					}
					t.Logf("failed cleanly (exit %d), rerunning:\n%s", code, p.Stderr.String())
					env.MustRun(0, "migrate", "-f", conf, "--hostname", "pg-host")
				}
				mustDone(t, env, prefix, records)
				runs++
			}
		})
	}
}

// TestPostgresWritesDuringMigration writes to store2 while the migration
// copies (components not stopped): INSERTs, UPDATEs of records already
// copied and not yet copied, a DELETE. Online (the default), every write
// committed before the freeze reaches store3: store3 equals store2 as the
// freeze left it, `verify` finds no difference, and store2 refuses writes
// after .done (25006). Offline, the migration refuses to write .done and
// says how many records changed.
func TestPostgresWritesDuringMigration(t *testing.T) {
	ci, long := 1, 5
	runs := 0
	scenario(t, "pg-writes-during-migration", ci, long, &runs)
	pg, consul := harness.StartPostgres(t), harness.StartConsul(t)
	env := clitest.New(t, pg, consul)
	n := count(50000, 100000)
	for i := range count(ci, long) {
		for _, offline := range []bool{false, true} {
			db := fmt.Sprintf("writes%02d", i)
			args := []string{"migrate", "--hostname", "writes-host"}
			if offline {
				db += "off"
				args = append(args, "--offline")
			}
			snapshot := seedGen(t, env, db, n, seqRecords("jobs", n))
			prefix := fmt.Sprintf("apcera/store3/%s/", db)
			conf := env.WriteConf(clitest.Conf{Prefix: prefix, Database: db, Name: db + ".conf"})
			p := clitest.StartProc(t, env, append(args, "-f", conf)...)
			waitProgress(t, consul.Addr(), "", prefix, "jobs", n/5, 2*time.Minute, p.Exited)

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
			if p.Exited() {
				t.Fatalf("the migration ended before the writes committed: the scenario did not happen\n%s", p)
			}
			code := p.Wait(t, 4*time.Minute)
			if offline {
				want := "store2 changed during the migration (5 records): stop the components (runbook step 2) or migrate online"
				if code != 5 || !strings.Contains(p.Stderr.String(), want) {
					t.Fatalf("offline migrate with concurrent writes: exit %d, want 5 and %q\n%s", code, want, p)
				}
				if checkInvariant(t, env, prefix, snapshot) {
					t.Errorf("offline: .done written although store2 changed")
				}
				continue
			}
			if code != 0 {
				t.Fatalf("migrate with concurrent writes: exit %d\n%s", code, p)
			}
			// Every write: store2 as the freeze left it.
			final := store2(t, env, db)
			if len(final) != n+1 {
				t.Fatalf("store2 holds %d records, want %d", len(final), n+1)
			}
			mustDone(t, env, prefix, final)
			if v := env.Run("verify", "-f", conf); v.Code != 0 {
				t.Errorf("verify after an online migration: exit %d, want 0\n%s", v.Code, v)
			}
			err := pg.Exec(context.Background(), db, `INSERT INTO store2_records (bucket, key, version, data) VALUES ('jobs', 'after-done', 1, 'x')`)
			if err == nil || !strings.Contains(err.Error(), "SQLSTATE 25006") || !strings.Contains(err.Error(), "restart this component with kind = store3") {
				t.Errorf("a write after .done: %v, want it refused (25006)", err)
			}
		}
		runs++
	}
}

func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
