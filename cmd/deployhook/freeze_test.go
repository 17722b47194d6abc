//go:build integration

package main

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apcera/deployhook/integration/harness"
	"github.com/apcera/deployhook/migrate"
	"github.com/apcera/deployhook/migrate/pgsource"
)

// freezeEnv is a store2 and a store3 for the freeze's command-line paths.
type freezeEnv struct {
	t      *testing.T
	pg     *harness.Postgres
	consul *harness.Consul
	dir    string
}

// conf writes a component conf with the given store2 URL and kind.
func (e *freezeEnv) conf(name, pgURL, kind string, migrateFlag bool) string {
	path := filepath.Join(e.dir, name+".conf")
	text := fmt.Sprintf("component: job_manager\ndb: {\n  kind: %s\n  migrate_store2_to_store3: %t\n  postgres: { url: %q }\n  consul: { address: %q, prefix: \"freeze/%s/jmdb/\" }\n}\nlog_dir: %q\n",
		kind, migrateFlag, pgURL, e.consul.Addr(), name, filepath.Join(e.dir, "log-"+name))
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		e.t.Fatal(err)
	}
	return path
}

func (e *freezeEnv) run(want int, args ...string) (stdout, stderr string) {
	e.t.Helper()
	var out, errb bytes.Buffer
	if code := runMain(append([]string{"deployhook"}, args...), strings.NewReader(""), &out, &errb); code != want {
		e.t.Fatalf("deployhook %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, want, out.String(), errb.String())
	}
	return out.String(), errb.String()
}

func TestRoleThatCannotFreeze(t *testing.T) {
	e := &freezeEnv{t: t, pg: harness.StartPostgres(t), consul: harness.StartConsul(t), dir: t.TempDir()}
	ctx := context.Background()
	if err := e.pg.CreateComponentDB(ctx, "jmdb", migrate.DefaultTable); err != nil {
		t.Fatal(err)
	}
	if err := e.pg.Seed(ctx, "jmdb", migrate.DefaultTable, []migrate.Record{{Bucket: "jobs", Key: "a", Version: 1, Data: []byte("x")}}); err != nil {
		t.Fatal(err)
	}
	for _, sql := range []string{`CREATE ROLE jm LOGIN PASSWORD 'jm-pw'`, `GRANT CONNECT ON DATABASE jmdb TO jm`} {
		if err := e.pg.Exec(ctx, "postgres", sql); err != nil {
			t.Fatal(err)
		}
	}
	for _, sql := range []string{`GRANT SELECT, INSERT, UPDATE, DELETE ON store2_records TO jm`, `REVOKE CREATE ON SCHEMA public FROM PUBLIC`} {
		if err := e.pg.Exec(ctx, "jmdb", sql); err != nil {
			t.Fatal(err)
		}
	}
	u, _ := url.Parse(e.pg.URL("jmdb"))
	u.User = url.UserPassword("jm", "jm-pw")
	conf := e.conf("jm", u.String(), "store3", true)
	grant := "GRANT TRIGGER ON TABLE public.store2_records TO jm; GRANT CREATE ON SCHEMA public TO jm"

	out, _ := e.run(exitFailed, "migrate", "-f", conf, "-dry_run_store_migration")
	if !strings.Contains(out, "freeze:       DENIED") || !strings.Contains(out, grant) {
		t.Errorf("dry run report does not name the grants:\n%s", out)
	}
	out, _ = e.run(exitOK, "migrate", "-f", conf, "-dry_run_store_migration", "--offline")
	if !strings.Contains(out, "freeze:       not needed (--offline)") {
		t.Errorf("offline dry run:\n%s", out)
	}
	_, errText := e.run(exitInvalid, "run", "-f", conf)
	if !strings.Contains(errText, grant) || !strings.Contains(errText, "online false") {
		t.Errorf("run does not name the grants and the way out:\n%s", errText)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "log-jm")); !os.IsNotExist(err) {
		t.Errorf("run started a worker (%v)", err)
	}
	_, errText = e.run(exitFailed, "migrate", "-f", conf)
	if !strings.Contains(errText, grant) {
		t.Errorf("migrate does not name the grants:\n%s", errText)
	}
	// Offline, the same role migrates: nothing changes store2 meanwhile.
	_, errText = e.run(exitOK, "migrate", "-f", conf, "--offline")
	if !strings.Contains(errText, "records migrated: 1,") || strings.Contains(errText, "store2 frozen") {
		t.Errorf("offline migrate:\n%s", errText)
	}
}

// A migration killed during its cutover left store2 frozen without .done:
// the next run unfreezes it, so that components still on store2 can write.
func TestRunUnfreezesFreezeLeftBehind(t *testing.T) {
	e := &freezeEnv{t: t, pg: harness.StartPostgres(t), consul: harness.StartConsul(t), dir: t.TempDir()}
	ctx := context.Background()
	if err := e.pg.CreateComponentDB(ctx, "jmdb", migrate.DefaultTable); err != nil {
		t.Fatal(err)
	}
	src, err := pgsource.New(ctx, pgsource.Config{URL: e.pg.URL("jmdb")})
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Freeze(ctx, "session-of-a-killed-migration", "frozen"); err != nil {
		t.Fatal(err)
	}
	conf := e.conf("left", e.pg.URL("jmdb"), "store2", false)
	_, errText := e.run(exitOK, "run", "-f", conf)
	if !strings.Contains(errText, "store2 unfrozen: an earlier migration froze it and ended without .done") {
		t.Errorf("run does not say it unfroze store2:\n%s", errText)
	}
	if _, frozen, err := src.Frozen(ctx); frozen || err != nil {
		t.Fatalf("still frozen: %t, %v", frozen, err)
	}
	// Not frozen: unfreeze has nothing to do.
	out, _ := e.run(exitOK, "unfreeze", "-f", conf)
	if !strings.Contains(out, "store2 is not frozen") {
		t.Errorf("unfreeze of an unfrozen store2:\n%s", out)
	}
}
