//go:build integration

package migratecli

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/apcera/deployhook/integration/clitest"
	"github.com/apcera/deployhook/integration/harness"
	"github.com/apcera/deployhook/migrate"
)

// assertNothingMigrated checks that a refused run wrote nothing under
// prefix: no record, no .done, not even the lock key.
func (e *env) assertNothingMigrated(t *testing.T, prefix string) {
	t.Helper()
	kv, _ := e.RawKV(prefix)
	for k := range kv {
		t.Errorf("key %q written under %q", k, prefix)
	}
}

// PostgreSQL unreachable: retried for --retry-for, then exit 1, naming host
// and port and never the password.
func TestPostgresUnreachable(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	addr := harness.ClosedAddr(t)
	pw := e.PG.Password()
	u := (&url.URL{Scheme: "postgres", User: url.UserPassword("postgres", pw),
		Host: addr, Path: "/jmdb", RawQuery: "sslmode=disable"}).String()
	conf := e.conf("job_manager", "jm", nil, clitest.Conf{URL: u})
	r := e.MustRun(1, "migrate", "-f", conf, "--retry-for", "5s")
	if r.Took < 5*time.Second {
		t.Errorf("gave up after %v, before --retry-for 5s", r.Took)
	}
	out := r.Stdout + r.Stderr
	if strings.Contains(out, pw) {
		t.Errorf("the password appears in the output:\n%s", r)
	}
	if !strings.Contains(out, addr) {
		t.Errorf("the output does not name %s:\n%s", addr, r)
	}
	if !strings.Contains(r.Stderr, "retrying") {
		t.Errorf("no retry logged:\n%s", r)
	}
	t.Logf("gave up after %v: %s", r.Took, lastLine(r.Stderr))
	e.assertNothingMigrated(t, e.prefix("jm"))
	kv, _ := e.RawKV(e.prefix("jm"))
	for _, p := range kv {
		if strings.Contains(string(p.Value), pw) {
			t.Errorf("key %q holds the password", p.Key)
		}
	}
}

// Consul unreachable: retried for --retry-for, then exit 1.
func TestConsulUnreachable(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	addr := harness.ClosedAddr(t)
	conf := e.conf("job_manager", "jm", recordsFor("jm", 10), clitest.Conf{Address: addr})
	r := e.MustRun(1, "migrate", "-f", conf, "--retry-for", "5s")
	if r.Took < 5*time.Second {
		t.Errorf("gave up after %v, before --retry-for 5s", r.Took)
	}
	if !strings.Contains(r.Stderr, addr) {
		t.Errorf("the output does not name the Consul address:\n%s", r)
	}
	t.Logf("gave up after %v: %s", r.Took, lastLine(r.Stderr))
	// status cannot read it either.
	e.MustRun(1, "status", "-f", conf)
}

// A database or a table that does not exist is a cluster that never used
// store2: exit 3, nothing written, no .done.
func TestNeverUsedStore2(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if err := e.PG.CreateDatabase(context.Background(), e.db("pm")); err != nil {
		t.Fatal(err)
	}
	cases := map[string]string{
		"database missing": e.conf("job_manager", "jm", nil, clitest.Conf{}),     // t_..._jm never created
		"table missing":    e.conf("package_manager", "pm", nil, clitest.Conf{}), // database without the table
	}
	for name, conf := range cases {
		t.Run(name, func(t *testing.T) {
			for _, dry := range []bool{false, true} {
				args := []string{"migrate", "-f", conf}
				if dry {
					args = append(args, "-dry_run_store_migration")
				}
				r := e.MustRun(3, args...)
				if !strings.Contains(r.Stderr, "never used store2") {
					t.Errorf("no \"never used store2\" in:\n%s", r)
				}
			}
		})
	}
	for _, short := range []string{"jm", "pm"} {
		e.assertNothingMigrated(t, e.prefix(short))
		kv, _ := e.RawKV(e.prefix(short))
		t.Logf("%s: keys left by the refused runs: %q", short, keysOf(kv))
	}
	// verify refuses too.
	e.MustRun(3, "verify", "-f", cases["table missing"])
}

// store2 with the migrate flag is invalid.
func TestStore2WithMigrateRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	conf := e.conf("job_manager", "jm", recordsFor("jm", 5), clitest.Conf{})
	r := e.MustRun(3, "migrate", "-f", conf, "-db.kind", "store2", "-db.migrate_store2_to_store3")
	if !strings.Contains(r.Stderr, "store2") {
		t.Errorf("message does not say why:\n%s", r)
	}
	if strings.Contains(r.Stderr, "Starting") {
		t.Errorf("started:\n%s", r)
	}
	kv, _ := e.RawKV(e.prefix("jm"))
	if len(kv) != 0 {
		t.Errorf("wrote %q", keysOf(kv))
	}
}

// Records a real run cannot store: exit 5, each named with its bucket and
// key, no .done, .status failed listing them; the good records are still
// copied, and a rerun tries again (and fails again) rather than calling it
// done.
func TestRecordFailures(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cases := []struct {
		name, short string
		bad         migrate.Record
		reason      string
	}{
		{"empty key", "jm", migrate.Record{Bucket: "jobs", Key: "", Version: 1, Data: []byte("x")}, `.*empty.*`},
		{"bucket migration", "pm", migrate.Record{Bucket: "migration", Key: ".done", Version: 1, Data: []byte(`{"host":"forged"}`)}, `.*reserved.*`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			good := recordsFor(c.short, 50)
			comp := map[string]string{"jm": "job_manager", "pm": "package_manager"}[c.short]
			conf := e.conf(comp, c.short, append(append([]migrate.Record{}, good...), c.bad), clitest.Conf{})
			p := e.prefix(c.short)
			for attempt := 0; attempt < 2; attempt++ {
				r := e.MustRun(5, "migrate", "-f", conf, "--hostname", "h-fail")
				mustLog(t, r, "ERROR", fmt.Sprintf(`Record failure: bucket %q, key %q: %s`, c.bad.Bucket, c.bad.Key, c.reason))
				if hasLog(t, r.Stderr, "INFO", `Migrated store2 -> store3.*`) {
					t.Errorf("migrated line despite a failure:\n%s", r)
				}
				mustLog(t, r, "ERROR", `Migration store2 -> store3 failed \(took: `+durRE+`, records migrated: \d+, records failed: 1\): .*`)
				kv, _ := e.RawKV(p)
				if _, ok := kv[p+"migration/.done"]; ok {
					t.Fatalf(".done written despite a record failure")
				}
				var s statusJSON
				if !getJSON(t, kv, p+"migration/.status", &s) || s.State != "failed" || len(s.FailedRecords) != 1 ||
					s.FailedRecords[0].Bucket != c.bad.Bucket || s.FailedRecords[0].Key != c.bad.Key || s.Host != "h-fail" {
					t.Errorf(".status = %+v", s)
				}
				// The forged .done of a "migration" bucket must not land.
				if p, ok := kv[p+"migration/.done"]; ok {
					t.Errorf(".done = %q", p.Value)
				}
			}
			// status shows it failed.
			r := e.MustRun(0, "status", "-f", conf)
			if !regexp.MustCompile(`(?m)^` + comp + `\s+failed\s+h-fail`).MatchString(r.Stdout) {
				t.Errorf("status:\n%s", r)
			}
		})
	}
}

// A record over the server's value size limit: named with bucket and key,
// exit 5, no .done, .status failed listing it. The dry run finds it first.
func TestValueOverLimit(t *testing.T) {
	t.Parallel()
	const limit = 64 << 10
	c := harness.StartConsul(t, harness.WithLimits(limit, limit), harness.WithLogLevel("warn"))
	e := ownEnv(t, shared.PG, c)
	good := recordsFor("jm", 100)
	big := migrate.Record{Bucket: "packages", Key: "pkg::/big one", Version: 4, Data: make([]byte, 100<<10)}
	fits := migrate.Record{Bucket: "packages", Key: "pkg::/fits", Version: 5, Data: make([]byte, 30<<10)}
	conf := e.conf("job_manager", "jm", append(append([]migrate.Record{}, good...), big, fits), clitest.Conf{})
	p := e.prefix("jm")

	r := e.MustRun(5, "migrate", "-f", conf, "-dry_run_store_migration")
	if !strings.Contains(r.Stdout, `failing record: bucket "packages" key "pkg::/big one"`) {
		t.Errorf("dry run does not name the record:\n%s", r)
	}
	if !strings.Contains(r.Stdout, fmt.Sprintf("%d bytes per value (read from the agent)", limit)) {
		t.Errorf("dry run does not show the server's limit:\n%s", r)
	}

	r = e.MustRun(5, "migrate", "-f", conf)
	mustLog(t, r, "ERROR", `Record failure: bucket "packages", key "pkg::/big one": .*(kv_max_value_size|txn_max_req_len).*`)
	kv, _ := e.RawKV(p)
	if _, ok := kv[p+"migration/.done"]; ok {
		t.Fatalf(".done written")
	}
	var s statusJSON
	if !getJSON(t, kv, p+"migration/.status", &s) || s.State != "failed" || len(s.FailedRecords) != 1 || s.FailedRecords[0].Key != "pkg::/big one" {
		t.Errorf(".status = %+v", s)
	}
	if got, ok := kv[clitest.ExpectedKey(p, fits.Bucket, fits.Key)]; !ok || len(got.Value) != len(fits.Data) {
		t.Errorf("the 30 KiB record that fits was not copied")
	}
}

// A token that may only read the prefix: the dry run reports the missing
// permission (exit 5); a real run writes nothing.
func TestACLReadOnly(t *testing.T) {
	t.Parallel()
	c := harness.StartConsul(t, harness.WithACL(), harness.WithLogLevel("warn"))
	e := ownEnv(t, shared.PG, c)
	p := e.prefix("jm")
	tok, err := c.CreateToken(fmt.Sprintf(`key_prefix %q { policy = "read" }
session_prefix "" { policy = "write" }`, p))
	if err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(e.Dir, "consul.token")
	if err := os.WriteFile(tokenFile, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	conf := e.conf("job_manager", "jm", recordsFor("jm", 20), clitest.Conf{TokenFile: tokenFile})
	// DESIGN.md: a dry run exits 5 when a real run would fail.
	r := e.Run("migrate", "-f", conf, "-dry_run_store_migration")
	if r.Code != 5 {
		t.Errorf("dry run without write permission: want exit 5, got:\n%s", r)
	}
	if !strings.Contains(r.Stdout, "permission:   DENIED") || !strings.Contains(r.Stdout, "a real run would FAIL") {
		t.Errorf("dry run does not report the missing permission:\n%s", r)
	}
	if strings.Contains(r.Stdout+r.Stderr, tok) {
		t.Errorf("the token appears in the output")
	}
	kv, _ := e.RawKV(p)
	if len(kv) != 0 {
		t.Errorf("dry run wrote %q", keysOf(kv))
	}
	r = e.Run("migrate", "-f", conf, "--lock-timeout", "30s")
	if r.Code == 0 || !strings.Contains(strings.ToLower(r.Stderr), "permission denied") {
		t.Errorf("a real run without write permission: want a non-zero exit naming the denial:\n%s", r)
	}
	if strings.Contains(r.Stdout+r.Stderr, tok) {
		t.Errorf("the token appears in the output")
	}
	kv, _ = e.RawKV(p)
	if len(kv) != 0 {
		t.Errorf("real run wrote %q", keysOf(kv))
	}
	t.Logf("real run: exit %d after %v", r.Code, r.Took)
}

// Prefixes that could wipe foreign data are refused (exit 3) before any
// delete. On a Consul of its own: a wrong answer here wipes everything.
func TestDangerousPrefixes(t *testing.T) {
	t.Parallel()
	c := harness.StartConsul(t, harness.WithLogLevel("warn"))
	e := ownEnv(t, shared.PG, c)
	foreign := map[string]string{
		"toplevel":                      "a",
		"apcera/store3/jmdb/jobs/web":   "b",
		"apcera/store3/jmdb":            "c",
		"apcera/store3/pmdb/x":          "d",
		"other/service/config":          "e",
		"apcera/store3/jmdbx/sibling/k": "f",
	}
	for k, v := range foreign {
		e.put(k, []byte(v), 1)
	}
	e.SeedDB(e.db("jm"), recordsFor("jm", 20))
	_, before := e.RawKV("")
	for _, prefix := range []string{"", "/", "apcera/store3/jmdb", "apcera/", "apcera", "apcera//jmdb/", "apcera/../x/", "/apcera/store3/"} {
		t.Run(fmt.Sprintf("%q", prefix), func(t *testing.T) {
			path := e.conf("job_manager", "jm", nil, clitest.Conf{Prefix: "PLACEHOLDER/x/", Name: "p.conf"})
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			b = []byte(strings.Replace(string(b), `"PLACEHOLDER/x/"`, fmt.Sprintf("%q", prefix), 1))
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			for _, extra := range [][]string{nil, {"-dry_run_store_migration"}} {
				r := e.MustRun(3, append([]string{"migrate", "-f", path}, extra...)...)
				if strings.Contains(r.Stderr, "Starting store2 -> store3 migration") {
					t.Errorf("started with prefix %q:\n%s", prefix, r)
				}
				if !strings.Contains(r.Stderr, "prefix") {
					t.Errorf("the message does not name the prefix:\n%s", r)
				}
			}
			all, idx := e.RawKV("")
			if idx != before {
				t.Errorf("X-Consul-Index moved %d -> %d", before, idx)
			}
			for k, v := range foreign {
				if got, ok := all[k]; !ok || string(got.Value) != v {
					t.Errorf("foreign key %q lost", k)
				}
			}
		})
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}
