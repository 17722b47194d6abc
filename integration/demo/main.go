// Command demo walks the operator's runbook against a local PostgreSQL and
// Consul that it starts on free loopback ports under ./.demo, seeded from
// fixtures/store2. Every line it prints after a "$ " is a real deployhook
// invocation, and what follows is that invocation's real output. While the
// deploy migrates, writers on every store2 database stand for the running
// components; the walk through failures at the end holds transactions and
// locks on store2 to put a write in flight at the freeze and to kill a
// migration right after it, and says so.
//
// Run it with `make demo`, which builds bin/deployhook and bin/consul first.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/apcera/deployhook/integration/harness"
	"github.com/apcera/deployhook/migrate"
)

// components of the demo, as in DESIGN.md's table.
var components = []struct{ name, db, service string }{
	{"job_manager", "jmdb", "continuum-job-manager"},
	{"package_manager", "pmdb", "continuum-package-manager"},
	{"auth_server", "asdb", "continuum-auth-server"},
}

var hosts = []string{"central-1", "central-2"}

func main() {
	if err := demo(); err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(1)
	}
}

func demo() error {
	root, err := harness.RepoRoot()
	if err != nil {
		return err
	}
	if err := os.Chdir(root); err != nil {
		return err
	}
	bin := filepath.Join(root, "bin", "deployhook")
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("%s is missing: run `make build` (make demo does)", bin)
	}
	dir := ".demo"
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}

	say("Starting a local PostgreSQL (store2) and a single Consul 1.16.1 server (store3) in %s ...", dir)
	svcLog, err := os.Create(filepath.Join(dir, "services.log"))
	if err != nil {
		return err
	}
	defer svcLog.Close()
	pg, err := harness.StartPostgresDir(filepath.Join(abs, "postgres"), svcLog)
	if err != nil {
		return fmt.Errorf("start PostgreSQL (log: %s): %w", svcLog.Name(), err)
	}
	defer pg.Stop()
	consul, err := harness.StartConsulDir(filepath.Join(abs, "consul"), svcLog)
	if err != nil {
		return fmt.Errorf("start Consul (log: %s): %w", svcLog.Name(), err)
	}
	defer consul.Stop()
	say("PostgreSQL on 127.0.0.1:%d, Consul on %s.", pg.Port, consul.Addr())

	ctx := context.Background()
	for _, c := range components {
		recs, err := loadFixture(filepath.Join("fixtures", "store2", c.name+".jsonl"))
		if err != nil {
			return err
		}
		if err := pg.CreateComponentDB(ctx, c.db, "store2_records"); err != nil {
			return err
		}
		if err := pg.Seed(ctx, c.db, "store2_records", recs); err != nil {
			return err
		}
		say("Seeded store2 database %s with %d %s records from fixtures/store2/%s.jsonl.", c.db, len(recs), c.name, c.name)
	}

	// One conf per component per simulated central host, as the cookbook
	// renders them: each host logs to its own directories.
	confs := map[string][]string{}
	for _, h := range hosts {
		for _, c := range components {
			path := filepath.Join(dir, "etc", h, c.name+".conf")
			logDir := filepath.Join(dir, "log", h, c.service+"-migration")
			if err := writeConf(path, c.name, pg.URLWithoutPassword(c.db), consul.Addr(), logDir); err != nil {
				return err
			}
			confs[h] = append(confs[h], path)
		}
	}
	env := append(os.Environ(), "PGPASSFILE="+pg.PassFile(), "NO_COLOR=1")
	sh := &shell{bin: bin, env: env}

	step("1. Validate cluster.conf before the deploy. A version with three mistakes:")
	sh.run("validate", "fixtures/demo/cluster-typos.conf")
	step("The corrected file:")
	sh.run("validate", "fixtures/demo/cluster.conf")

	step("2. The component conf the cookbook renders on central-1, for the Job Manager:")
	conf, err := os.ReadFile(confs["central-1"][0])
	if err != nil {
		return err
	}
	fmt.Printf("$ cat %s\n%s", confs["central-1"][0], conf)

	step("3. Dry run: checks connectivity, permissions, limits and every record; writes nothing.")
	sh.run("migrate", "-f", confs["central-1"][0], "-dry_run_store_migration")
	readerConf, err := readOnlyRole(ctx, pg, consul.Addr(), dir)
	if err != nil {
		return err
	}
	step("The same dry run as a role that may read the table but not create a trigger on it:")
	sh.run("migrate", "-f", readerConf, "-dry_run_store_migration")
	step("The deploy refuses it too, before it starts anything:")
	sh.run("run", "-f", readerConf, "--hostname", "central-1")

	step("4. The deploy: Chef runs `deployhook run` for each component on both central hosts at once.")
	say("The components keep running on store2 meanwhile: here a writer per database stands for them,")
	say("an insert, an update or a delete every %v, each committed on its own.", writeEvery)
	fixtures := map[string][]migrate.Record{}
	var ws []*writer
	for _, c := range components {
		recs, err := loadFixture(filepath.Join("fixtures", "store2", c.name+".jsonl"))
		if err != nil {
			return err
		}
		fixtures[c.name] = recs
		ws = append(ws, &writer{db: c.db, table: "store2_records", recs: recs})
	}
	stopWriters := startWriters(ctx, pg, ws)
	var wg sync.WaitGroup
	outs := make([]bytes.Buffer, len(hosts)*len(components))
	cmds := make([]string, len(outs))
	start := time.Now()
	for i, h := range hosts {
		for j, conf := range confs[h] {
			k := i*len(components) + j
			args := []string{"run", "-f", conf, "--hostname", h}
			cmds[k] = "deployhook " + strings.Join(args, " ")
			wg.Add(1)
			go func() {
				defer wg.Done()
				sh.capture(&outs[k], args...)
			}()
		}
	}
	wg.Wait()
	for k := range outs {
		fmt.Printf("$ %s\n%s", cmds[k], outs[k].String())
	}
	say("(all six returned within %v; the migrations continue in the background)", time.Since(start).Round(time.Millisecond))

	step("5. `deployhook wait` fails the converge if a migration fails:")
	waitArgs := []string{"wait"}
	for _, c := range confs["central-1"] {
		waitArgs = append(waitArgs, "-f", c)
	}
	code := sh.run(append(waitArgs, "--timeout", "2m")...)
	summaries := stopWriters()
	if code != 0 {
		return fmt.Errorf("wait exited %d", code)
	}
	say("What the components wrote to store2 during the migration:")
	for _, s := range summaries {
		say("  %s", s)
	}

	step("6. A component still on store2 after the cutover: its writes are refused, its reads work.")
	jm := fixtures["job_manager"][0]
	stmt, wrote, read, err := strayWrite(ctx, pg, "jmdb", "store2_records", jm)
	if err != nil {
		return err
	}
	say("A Job Manager still on kind = store2 writes: %s", stmt)
	say("  %s", wrote)
	say("and reads: %s", read)

	step("7. Who migrated what, when, and how long store2 was frozen:")
	sh.run(append([]string{"status"}, fArgs(confs["central-1"])...)...)
	step("The same for the Job Manager as JSON, with its .status and .done documents:")
	if err := showDone(sh, confs["central-1"][0]); err != nil {
		return err
	}

	step("8. Compare store2 and store3 record by record (every write store2 accepted is in store3):")
	if code := sh.run(append([]string{"verify"}, fArgs(confs["central-1"])...)...); code != 0 {
		return fmt.Errorf("verify exited %d", code)
	}

	step("9. The lines operators grep for, in the runit log directories of both hosts:")
	if err := grepLogs(filepath.Join(dir, "log")); err != nil {
		return err
	}

	step("10. The next deploy finds the done markers and starts nothing:")
	sh.run("run", "-f", confs["central-2"][0], "--hostname", "central-2")

	if err := recovery(ctx, sh, pg, consul.Addr(), dir); err != nil {
		return err
	}

	say("\nDemo complete. Stopping PostgreSQL and Consul; their files stay in %s.", dir)
	return nil
}

func fArgs(confs []string) []string {
	var args []string
	for _, c := range confs {
		args = append(args, "-f", c)
	}
	return args
}

type shell struct {
	bin string
	env []string
}

// run prints the command line and its combined output, and returns its
// exit code.
func (s *shell) run(args ...string) int {
	fmt.Printf("$ deployhook %s\n", strings.Join(args, " "))
	code := s.capture(os.Stdout, args...)
	if code != 0 {
		fmt.Printf("(exit code %d)\n", code)
	}
	return code
}

func (s *shell) capture(w io.Writer, args ...string) int {
	cmd := s.command(w, args...)
	return exitCode(w, cmd.Run())
}

func (s *shell) command(w io.Writer, args ...string) *exec.Cmd {
	cmd := exec.Command(s.bin, args...)
	cmd.Env = s.env
	cmd.Stdout = w
	cmd.Stderr = w
	return cmd
}

// exitCode is the exit code of a finished command: -1, said on w, when it
// did not run.
func exitCode(w io.Writer, err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		fmt.Fprintf(w, "demo: %v\n", err)
		return -1
	}
	return 0
}

func writeConf(path, component, pgURL, consulAddr, logDir string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	logAbs, err := filepath.Abs(logDir)
	if err != nil {
		return err
	}
	conf := fmt.Sprintf(`component: %s
db: {
  kind: store3
  migrate_store2_to_store3: true
  postgres: {
    url: %q
  }
  consul: {
    address: %q
  }
}
log_dir: %q
`, component, pgURL, consulAddr, logAbs)
	return os.WriteFile(path, []byte(conf), 0o640)
}

// loadFixture reads one JSON object per line: bucket, key, version, data.
func loadFixture(path string) ([]migrate.Record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var recs []migrate.Record
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		var r struct {
			Bucket, Key, Data string
			Version           int64
		}
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, line, err)
		}
		recs = append(recs, migrate.Record{Bucket: r.Bucket, Key: r.Key, Version: r.Version, Data: []byte(r.Data)})
	}
	return recs, sc.Err()
}

// grepFor are the log lines of the runbook's step 9.
var grepFor = []string{"store2 -> store3", "already been performed", "Catch-up round", "store2 frozen", "store2 was frozen", "store2 unfrozen", "change capture"}

// grepLogs prints, like `grep -H`, the migration lines of every log file.
func grepLogs(dir string) error {
	fmt.Printf("$ grep -rH '%s' %s\n", strings.Join(grepFor, `\|`), dir)
	return filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(path, ".pid") || filepath.Base(path) == "lock" {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, l := range strings.Split(string(b), "\n") {
			for _, p := range grepFor {
				if strings.Contains(l, p) {
					fmt.Printf("%s:%s\n", path, l)
					break
				}
			}
		}
		return nil
	})
}

func say(format string, args ...interface{}) { fmt.Printf(format+"\n", args...) }

func step(title string) { fmt.Printf("\n==> %s\n", title) }

// recovery shows a migration that cannot complete and how an operator gets
// out of it, on a copy of the Job Manager's data under a prefix of its own.
func recovery(ctx context.Context, sh *shell, pg *harness.Postgres, consulAddr, dir string) error {
	step("11. When a migration cannot complete: a copy of jmdb with two records store3 cannot hold.")
	recs, err := loadFixture(filepath.Join("fixtures", "store2", "job_manager.jsonl"))
	if err != nil {
		return err
	}
	recs = append(recs,
		migrate.Record{Bucket: "jobs", Key: "job::/prod/big::core-dump", Version: 4, Data: bytes.Repeat([]byte("x"), 600<<10)},
		migrate.Record{Bucket: "migration", Key: "legacy-marker", Version: 1, Data: []byte("{}")},
	)
	const db = "jmdb_copy"
	if err := pg.CreateComponentDB(ctx, db, "store2_records"); err != nil {
		return err
	}
	if err := pg.Seed(ctx, db, "store2_records", recs); err != nil {
		return err
	}
	conf := filepath.Join(dir, "etc", "central-1", "job_manager-copy.conf")
	logDir, err := filepath.Abs(filepath.Join(dir, "log", "central-1", "copy"))
	if err != nil {
		return err
	}
	text := fmt.Sprintf(`component: job_manager
db: {
  kind: store3
  migrate_store2_to_store3: true
  postgres: { url: %q }
  consul: {
    address: %q
    prefix: "demo/copy/jmdb/"
  }
}
log_dir: %q
`, pg.URLWithoutPassword(db), consulAddr, logDir)
	if err := os.WriteFile(conf, []byte(text), 0o640); err != nil {
		return err
	}
	sh.run("migrate", "-f", conf, "--hostname", "central-1")
	sh.run("status", "-f", conf)
	step("The fix here is in store2 (the other choice for the large record is raising Consul's limits):")
	fmt.Printf("$ psql %s -c \"DELETE FROM store2_records WHERE bucket = 'migration' OR key = 'job::/prod/big::core-dump'\"\n", db)
	if err := pg.Exec(ctx, db, "DELETE FROM store2_records WHERE bucket = 'migration' OR key = 'job::/prod/big::core-dump'"); err != nil {
		return err
	}
	big := recs[len(recs)-2]
	step("12. A write in flight at the cutover. A Job Manager begins a transaction that writes that record again:")
	say("BEGIN; INSERT INTO store2_records (bucket, key, version, data) VALUES ('%s', '%s', %d, <%d KiB>);", big.Bucket, big.Key, big.Version, len(big.Data)>>10)
	say("and commits it only once the migration's freeze waits for it (the demo watches pg_locks). It begins once the")
	say("change capture is in place: the demo holds another write in flight across the capture's install.")
	gate, err := holdCapture(ctx, pg, db, "store2_records")
	if err != nil {
		return err
	}
	args := []string{"migrate", "-f", conf, "--hostname", "central-1"}
	var out bytes.Buffer
	exited := make(chan struct{})
	var code int
	go func() {
		defer close(exited)
		code = sh.capture(&out, args...)
	}()
	tx, err := gate.through(ctx, big, exited)
	var waited bool
	if err == nil {
		waited, err = tx.commitWhenFreezeWaits(ctx, pg, db, "store2_records", exited)
	}
	<-exited
	if err != nil {
		return err
	}
	fmt.Printf("$ deployhook %s\n%s", strings.Join(args, " "), out.String())
	if code != 0 {
		fmt.Printf("(exit code %d)\n", code)
	}
	if !waited {
		return fmt.Errorf("the migration ended (exit code %d) before its freeze waited for the write in flight", code)
	}
	say("(the demo committed its insert while the freeze waited for it)")
	step("The migration failed after its freeze, and unfroze store2 itself:")
	sh.run("unfreeze", "-f", conf)
	step("Fixed in store2 again:")
	q := fmt.Sprintf("DELETE FROM store2_records WHERE key = '%s'", big.Key)
	fmt.Printf("$ psql %s -c \"%s\"\n", db, q)
	if err := pg.Exec(ctx, db, q); err != nil {
		return err
	}

	step("13. A migration killed during its cutover (kill -9, a host rebooted) leaves store2 frozen without .done.")
	say("The demo stops the next migration right after its freeze, and kills it there: it holds a write in flight")
	say("until the freeze waits for it, queues an ACCESS EXCLUSIVE lock on the table behind the freeze, and commits")
	say("the write; the freeze commits, and the migration's next read of store2 waits for the demo's lock.")
	late := migrate.Record{Bucket: "jobs", Key: "job::/prod/web::late-write", Version: 1, Data: []byte(`{"state":"started"}`)}
	out.Reset()
	if gate, err = holdCapture(ctx, pg, db, "store2_records"); err != nil {
		return err
	}
	cmd := sh.command(&out, args...)
	if err := cmd.Start(); err != nil {
		return err
	}
	exited = make(chan struct{})
	var waitErr error
	go func() {
		defer close(exited)
		waitErr = cmd.Wait()
	}()
	held, release := false, func() {}
	write, err := gate.through(ctx, late, exited)
	if err == nil {
		held, release, err = holdAfterFreeze(ctx, pg, db, "store2_records", write, exited)
	}
	if err != nil {
		cmd.Process.Kill()
		<-exited
		return err
	}
	if held {
		cmd.Process.Kill()
		<-exited
		release()
	} else {
		<-exited
	}
	fmt.Printf("$ deployhook %s\n%s", strings.Join(args, " "), out.String())
	if !held {
		code := exitCode(os.Stdout, waitErr)
		say("(exit code %d: the demo did not catch this migration between its freeze and its next read, so it was", code)
		say("not killed, and the output above is all it did; on a busy machine the freeze's attempt can time out first)")
	} else {
		say("(killed with SIGKILL by the demo, after its freeze)")
		sh.run("status", "-f", conf)
		stmt, wrote, _, err := strayWrite(ctx, pg, db, "store2_records", recs[0])
		if err != nil {
			return err
		}
		say("A Job Manager on %s writes: %s", db, stmt)
		say("  %s", wrote)
		step("The next attempt on that host (a deploy, or `deployhook migrate`) drops the freeze left without .done, and completes:")
		if code := sh.run(args...); code != 0 {
			return fmt.Errorf("migrate after the kill exited %d", code)
		}
	}
	sh.run("status", "-f", conf)

	step("After .done, store2 stays frozen: `deployhook unfreeze` refuses to thaw a retired store2.")
	sh.run("unfreeze", "-f", conf)
	step("Abandoning the migration (this copy's Job Manager stays on store2) takes the flag named for the risk:")
	sh.run("unfreeze", "-f", conf, "--accept-store2-revert")
	stmt, wrote, _, err := strayWrite(ctx, pg, db, "store2_records", recs[0])
	if err != nil {
		return err
	}
	say("A Job Manager on %s writes: %s", db, stmt)
	say("  %s", wrote)
	return nil
}

// readOnlyRole creates a PostgreSQL role that may read jmdb's store2 table
// and nothing more, gives its password to the demo's .pgpass, and writes a
// Job Manager conf that logs in as it.
func readOnlyRole(ctx context.Context, pg *harness.Postgres, consulAddr, dir string) (string, error) {
	const role = "jm_reader"
	secret := make([]byte, 16)
	if _, err := rand.Read(secret); err != nil {
		return "", err
	}
	password := hex.EncodeToString(secret)
	for _, q := range []string{
		"CREATE ROLE " + role + " LOGIN PASSWORD '" + password + "'",
		"GRANT SELECT ON store2_records TO " + role,
	} {
		if err := pg.Exec(ctx, "jmdb", q); err != nil {
			return "", fmt.Errorf("create role %s: %w", role, err)
		}
	}
	f, err := os.OpenFile(pg.PassFile(), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return "", err
	}
	_, err = fmt.Fprintf(f, "127.0.0.1:%d:*:%s:%s\n", pg.Port, role, password)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", err
	}
	u, err := url.Parse(pg.URLWithoutPassword("jmdb"))
	if err != nil {
		return "", err
	}
	u.User = url.User(role)
	path := filepath.Join(dir, "etc", "central-1", "job_manager-reader.conf")
	logDir := filepath.Join(dir, "log", "central-1", "reader")
	return path, writeConf(path, "job_manager", u.String(), consulAddr, logDir)
}

// showDone runs `status --format json` for one component, prints its real
// output, then the .done document in it, indented, for the reader.
func showDone(sh *shell, conf string) error {
	args := []string{"status", "--format", "json", "-f", conf}
	var out bytes.Buffer
	code := sh.capture(&out, args...)
	fmt.Printf("$ deployhook %s\n%s", strings.Join(args, " "), out.String())
	if code != 0 {
		return fmt.Errorf("status --format json exited %d", code)
	}
	var row struct {
		Done json.RawMessage `json:"done"`
	}
	if err := json.NewDecoder(&out).Decode(&row); err != nil {
		return fmt.Errorf("read the output of status --format json: %w", err)
	}
	var done bytes.Buffer
	if err := json.Indent(&done, row.Done, "", "  "); err != nil {
		return fmt.Errorf("indent .done: %w", err)
	}
	say("Its .done document, indented by the demo:\n%s", done.String())
	return nil
}
