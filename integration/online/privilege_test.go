//go:build integration

package online

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/apcera/deployhook/integration/clitest"
)

// TestOnlineTriggerPrivilege runs deployhook as a PostgreSQL role that may
// read and write the store2 table but neither owns it nor has the TRIGGER
// privilege and CREATE on its schema: the dry run exits 5 naming the grant,
// and `run` refuses before it starts a worker, writing nothing to store3.
// Once the role has TRIGGER and CREATE on the schema (DESIGN.md: that, or
// ownership), the dry run passes and an online migration with the writer
// running completes.
func TestOnlineTriggerPrivilege(t *testing.T) {
	runs := 0
	scenario(t, "online-trigger-privilege", 1, 1, &runs)
	env := newEnv(t)
	pg := env.PG
	ctx := context.Background()
	db, prefix := names("privilege")
	seed(t, env, db, 5000)
	role := "deployhook_online_weak"
	pw := make([]byte, 12)
	rand.Read(pw)
	password := hex.EncodeToString(pw)
	id := pgx.Identifier{role}.Sanitize()
	if err := pg.Exec(ctx, "postgres", fmt.Sprintf(`DROP ROLE IF EXISTS %s; CREATE ROLE %s LOGIN PASSWORD %s`, id, id, quoteLiteral(password))); err != nil {
		t.Fatal(err)
	}
	if err := pg.Exec(ctx, db, fmt.Sprintf(`GRANT CONNECT ON DATABASE %s TO %s; GRANT USAGE ON SCHEMA public TO %s;
		GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO %s`, pgx.Identifier{db}.Sanitize(), id, id, table, id)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		pg.DropDatabase(context.Background(), db)
		pg.Exec(context.Background(), "postgres", "DROP ROLE IF EXISTS "+id)
	})
	// The role's password reaches deployhook through a pgpass file of our
	// own (the superuser's line kept), never its arguments.
	super, err := os.ReadFile(pg.PassFile())
	if err != nil {
		t.Fatal(err)
	}
	passFile := filepath.Join(env.Dir, "pgpass")
	line := fmt.Sprintf("%s:%d:*:%s:%s\n", pg.Host, pg.Port, role, password)
	if err := os.WriteFile(passFile, append([]byte(line), super...), 0o600); err != nil {
		t.Fatal(err)
	}
	env.Vars = append(env.Vars, "PGPASSFILE="+passFile)
	u := (&url.URL{Scheme: "postgres", User: url.User(role), Host: fmt.Sprintf("%s:%d", pg.Host, pg.Port), Path: "/" + db, RawQuery: "sslmode=disable"}).String()
	logDir := filepath.Join(env.Dir, "log", db)
	conf := env.WriteConf(clitest.Conf{URL: u, Database: db, Prefix: prefix, LogDir: logDir, Name: db + ".conf"})

	dry := env.Run("migrate", "-f", conf, "-dry_run_store_migration")
	if dry.Code != 5 {
		t.Errorf("dry run as a role without the trigger privilege: exit %d, want 5\n%s", dry.Code, dry)
	}
	if out := dry.Stdout + dry.Stderr; !strings.Contains(out, "TRIGGER") || !strings.Contains(out, table) {
		t.Errorf("the dry run does not name the grant (TRIGGER on %s):\n%s", table, dry)
	}

	r := env.Run("run", "-f", conf, "--hostname", "priv-host")
	if r.Code == 0 || strings.Contains(r.Stderr, "in the background") {
		t.Errorf("run as a role without the trigger privilege: exit %d, want a refusal before any worker\n%s", r.Code, r)
	}
	if out := r.Stdout + r.Stderr; !strings.Contains(out, "TRIGGER") {
		t.Errorf("run's refusal does not name the grant (TRIGGER on %s):\n%s", table, r)
	}
	if _, err := os.Stat(filepath.Join(logDir, "deployhook.pid")); err == nil {
		// Stop it, so that what follows tests a migration of our own.
		pid := workerPID(t, logDir, 0)
		syscall.Kill(pid, syscall.SIGKILL)
		clitest.ReapPID(t, pid, 30*time.Second)
		t.Errorf("run started a worker (pid %d) although the role cannot freeze store2:\n%s", pid, readLogDir(logDir))
	}
	if kv, _ := clitest.RawKVAt(t, env.Consul.Addr(), "", prefix); len(kv) > 0 {
		var keys []string
		for k := range kv {
			keys = append(keys, k)
		}
		t.Errorf("store3 written although run refused: %v", keys)
	}
	t.Logf("run refused with exit %d", r.Code)

	if err := pg.Exec(ctx, db, fmt.Sprintf(`GRANT TRIGGER ON %s TO %s; GRANT CREATE ON SCHEMA public TO %s`, table, id, id)); err != nil {
		t.Fatal(err)
	}
	if dry := env.Run("migrate", "-f", conf, "-dry_run_store_migration"); dry.Code != 0 {
		t.Fatalf("dry run with TRIGGER and CREATE on the schema: exit %d, want 0\n%s", dry.Code, dry)
	}
	w := startWriter(t, env, db, writerRate)
	p := clitest.StartProc(t, env, "migrate", "-f", conf, "--hostname", "priv-host")
	if code := p.Wait(t, 3*time.Minute); code != 0 {
		t.Fatalf("migrate with TRIGGER and CREATE on the schema: exit %d, want 0\n%s", code, p)
	}
	w.waitWritesAfter(p.Ended, 40, "the writer after the migration")
	st := checkMigrated(t, migrated{env: env, addr: env.Consul.Addr(), db: db, prefix: prefix, writes: w.stop(), log: p.Stderr.String(), start: p.Started})
	t.Logf("%v", st)
	runs++
}
