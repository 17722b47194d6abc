//go:build integration

package hook

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apcera/deployhook/integration/clitest"
	"github.com/apcera/deployhook/integration/harness"
	"github.com/apcera/deployhook/migrate"
)

// A record store3 cannot hold fails the migration: `wait` exits 5 naming it.
// Once the record is fixed in store2, the next deploy completes.
func TestFailingRecordThenFixed(t *testing.T) {
	e := newEnv(t)
	n := e.names("job_manager")
	recs := clitest.Records(500)
	bad := []migrate.Record{
		{Bucket: "migration", Key: "reserved-bucket", Version: 1, Data: []byte("x")},
		{Bucket: "jobs", Key: "", Version: 2, Data: []byte("y")},
	}
	e.SeedDB(n.DB, append(append([]migrate.Record(nil), recs...), bad...))
	logDir := filepath.Join(e.Dir, "log", "jm")
	conf := e.conf(clitest.Conf{Database: n.DB, Prefix: n.Prefix, LogDir: logDir})

	e.run(0, "-f", conf, "--hostname", "central-1")
	w := e.MustRun(5, "wait", "-f", conf, "--timeout", "2m")
	for _, want := range []string{
		`job_manager: FAILED on central-1`,
		`failed record: bucket "migration" key "reserved-bucket"`,
		`failed record: bucket "jobs" key ""`,
	} {
		if !strings.Contains(w.Stdout, want) {
			t.Errorf("wait output lacks %q:\n%s", want, w)
		}
	}
	if _, done := e.status(n.Prefix); done != nil {
		t.Errorf(".done written by a failed migration: %+v", done)
	}
	waitWorkerExit(t, logDir)
	// A failure recorded before this wait started is final at once here:
	// this host's worker has ended, so no new attempt is coming (no 15 s
	// grace, which a wait on another host would give it).
	if w := e.MustRun(5, "wait", "-f", conf, "--timeout", "2m"); w.Took > 5*time.Second {
		t.Errorf("wait took %v to report a failure whose worker ended on this host", w.Took)
	}

	ctx := context.Background()
	if err := pg.Exec(ctx, n.DB, `DELETE FROM store2_records WHERE bucket = 'migration'`); err != nil {
		t.Fatal(err)
	}
	if err := pg.Exec(ctx, n.DB, `UPDATE store2_records SET key = 'was-empty' WHERE key = ''`); err != nil {
		t.Fatal(err)
	}
	recs = append(recs, migrate.Record{Bucket: "jobs", Key: "was-empty", Version: 2, Data: []byte("y")})

	e.run(0, "-f", conf, "--hostname", "central-1")
	w = e.MustRun(0, "wait", "-f", conf, "--timeout", "2m")
	if !strings.Contains(w.Stdout, "job_manager: done: migrated by central-1") {
		t.Errorf("wait output:\n%s", w)
	}
	e.AssertMigrated(n.Prefix, recs)
}

// `wait` on a component nobody migrates gives up after --timeout: exit 4.
func TestWaitTimeout(t *testing.T) {
	e := newEnv(t)
	n := e.names("package_manager")
	conf := e.conf(clitest.Conf{Component: "package_manager", Database: n.DB, Prefix: n.Prefix})
	w := e.MustRun(4, "wait", "-f", conf, "--timeout", "2s")
	if w.Took < 2*time.Second || w.Took > 10*time.Second {
		t.Errorf("wait --timeout 2s took %v", w.Took)
	}
	if !strings.Contains(w.Stderr, "timed out") || !strings.Contains(w.Stderr, "package_manager") {
		t.Errorf("wait does not say it timed out waiting for package_manager:\n%s", w)
	}
}

// assertNothingStarted checks that a refused `run` left no trace: no worker
// for conf, no log directory (so no pid file and no log line), nothing under
// the prefix's migration keys.
func (e *env) assertNothingStarted(conf, logDir, prefix string) {
	e.t.Helper()
	if pids := workersFor(conf); len(pids) > 0 {
		e.t.Errorf("refused run started workers %v", pids)
	}
	if _, err := os.Stat(logDir); !os.IsNotExist(err) {
		e.t.Errorf("refused run touched log dir %s (stat: %v)", logDir, err)
	}
	if st, _ := e.status(prefix); st != nil {
		e.t.Errorf("refused run left a .status: %+v", st)
	}
}

// DESIGN.md "Settings that lose data": refused without the flag named for
// the risk, accepted with it, and skipped (with a log line, quickly) when the
// other store does not answer.
func TestDataLossRefusals(t *testing.T) {
	e := newEnv(t)
	n := e.names("auth_server")
	recs := clitest.Records(40)
	e.SeedDB(n.DB, recs)
	logDir := filepath.Join(e.Dir, "log", "as")
	base := clitest.Conf{Component: "auth_server", Database: n.DB, Prefix: n.Prefix, LogDir: logDir}

	t.Run("store3 without migrate, store2 has records", func(t *testing.T) {
		c := base
		c.Migrate, c.Name = clitest.Bool(false), "empty3.conf"
		conf := e.conf(c)
		r := e.run(3, "-f", conf)
		if !strings.Contains(r.Stderr, "--accept-empty-store3") {
			t.Errorf("refusal does not name --accept-empty-store3:\n%s", r)
		}
		e.assertNothingStarted(conf, logDir, n.Prefix)
		r = e.run(0, "-f", conf, "--accept-empty-store3")
		e.assertNothingStarted(conf, logDir, n.Prefix)
		if !strings.Contains(r.Stderr, "--accept-empty-store3") {
			t.Errorf("accepted risk is not logged:\n%s", r)
		}
	})

	t.Run("store2 without done", func(t *testing.T) {
		c := base
		c.Kind, c.Migrate, c.Name = "store2", clitest.Bool(false), "store2.conf"
		conf := e.conf(c)
		r := e.run(0, "-f", conf)
		if !strings.Contains(r.Stderr, "nothing to migrate") {
			t.Errorf("want \"nothing to migrate\":\n%s", r)
		}
		e.assertNothingStarted(conf, logDir, n.Prefix)
	})

	t.Run("store2 after migration", func(t *testing.T) {
		mig := base
		mig.Name, mig.LogDir = "migrate.conf", filepath.Join(e.Dir, "log", "fg")
		e.MustRun(0, "migrate", "-f", e.conf(mig))
		e.AssertMigrated(n.Prefix, recs)
		c := base
		c.Kind, c.Migrate, c.Name = "store2", clitest.Bool(false), "revert.conf"
		conf := e.conf(c)
		r := e.run(3, "-f", conf)
		if !strings.Contains(r.Stderr, "--accept-store2-revert") {
			t.Errorf("refusal does not name --accept-store2-revert:\n%s", r)
		}
		if _, err := os.Stat(logDir); !os.IsNotExist(err) {
			t.Errorf("refused run touched log dir %s (stat: %v)", logDir, err)
		}
		e.run(0, "-f", conf, "--accept-store2-revert")
		// Once migrated, store3 without migrate is fine: nothing to do.
		c = base
		c.Migrate, c.Name = clitest.Bool(false), "after.conf"
		e.run(0, "-f", e.conf(c))
	})

	t.Run("other store does not answer", func(t *testing.T) {
		closed := harness.ClosedAddr(t)
		silent := silentPort(t)
		for _, tc := range []struct {
			name     string
			conf     clitest.Conf
			wantLog  string
			deadAddr string
		}{
			{"store2 closed", clitest.Conf{Migrate: clitest.Bool(false)}, "skipped the empty-store3 check", closed},
			{"store2 silent", clitest.Conf{Migrate: clitest.Bool(false)}, "skipped the empty-store3 check", silent},
			{"store3 closed, kind store2", clitest.Conf{Kind: "store2", Migrate: clitest.Bool(false)}, "skipped the store2-revert check", closed},
			{"store3 silent, kind store2", clitest.Conf{Kind: "store2", Migrate: clitest.Bool(false)}, "skipped the store2-revert check", silent},
			{"store3 silent, kind store3", clitest.Conf{Migrate: clitest.Bool(false)}, "skipped the empty-store3 check", silent},
		} {
			t.Run(tc.name, func(t *testing.T) {
				c := tc.conf
				c.Component, c.Database, c.Prefix = "auth_server", n.DB, "hooktest/dead/asdb/"
				c.LogDir = filepath.Join(e.Dir, "log", "dead")
				c.Name = strings.ReplaceAll(tc.name, " ", "_") + ".conf"
				if strings.HasPrefix(tc.name, "store2") {
					c.URL = fmt.Sprintf("postgres://postgres@%s/%s?sslmode=disable", tc.deadAddr, n.DB)
				} else {
					c.Address = tc.deadAddr
				}
				// Kind store3 without migrate refuses only when store3 has
				// no .done: a fresh prefix on the live Consul has none.
				conf := e.conf(c)
				r := e.run(0, "-f", conf)
				if r.Took > 3*time.Second {
					t.Errorf("run took %v with a store that does not answer, want < 3s", r.Took)
				}
				if !strings.Contains(r.Stderr, tc.wantLog) {
					t.Errorf("run does not log %q:\n%s", tc.wantLog, r)
				}
				if pids := workersFor(conf); len(pids) > 0 {
					t.Errorf("run started workers %v", pids)
				}
			})
		}
	})
}

// silentPort is a loopback address that accepts connections and never says
// a word: a store that hangs.
func silentPort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				for _, c := range conns {
					c.Close()
				}
				return
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() { l.Close(); <-done })
	return l.Addr().String()
}

// A log directory held by a real svlogd: run refuses (exit 3) and starts
// nothing, and the directory is left to svlogd.
func TestLogDirHeldBySvlogd(t *testing.T) {
	e := newEnv(t)
	n := e.names("job_manager")
	e.SeedDB(n.DB, clitest.Records(20))
	logDir := filepath.Join(e.Dir, "log", "svlogd")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	sv := exec.Command("svlogd", logDir)
	stdin, err := sv.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var svErr strings.Builder
	sv.Stderr = &svErr
	if err := sv.Start(); err != nil {
		t.Fatalf("start svlogd: %v", err)
	}
	t.Cleanup(func() {
		stdin.Close()
		waited := make(chan struct{})
		go func() { sv.Wait(); close(waited) }()
		select {
		case <-waited:
		case <-time.After(10 * time.Second):
			killPid(sv.Process.Pid)
			<-waited
		}
	})
	if _, err := fmt.Fprintln(stdin, "svlogd owns this directory"); err != nil {
		t.Fatal(err)
	}
	// svlogd writes the line to current only after it took the lock.
	current := filepath.Join(logDir, "current")
	eventually(t, 10*time.Second, "svlogd to write current", func() bool {
		b, _ := os.ReadFile(current)
		return strings.Contains(string(b), "svlogd owns this directory")
	})
	before, _ := os.ReadFile(current)

	conf := e.conf(clitest.Conf{Database: n.DB, Prefix: n.Prefix, LogDir: logDir})
	r := e.run(3, "-f", conf, "--hostname", "central-1")
	if !strings.Contains(r.Stderr, logDir) || !strings.Contains(r.Stderr, "log_dir") {
		t.Errorf("refusal does not name the log dir and log_dir:\n%s", r)
	}
	if pids := workersFor(conf); len(pids) > 0 {
		t.Errorf("run started workers %v", pids)
	}
	if _, err := os.Stat(filepath.Join(logDir, pidFile)); !os.IsNotExist(err) {
		t.Errorf("pid file in svlogd's directory (stat: %v)", err)
	}
	if after, _ := os.ReadFile(current); string(after) != string(before) {
		t.Errorf("svlogd's current changed:\nbefore %q\nafter  %q", before, after)
	}
	if st, _ := e.status(n.Prefix); st != nil {
		t.Errorf("refused run started a migration: %+v", st)
	}
	if sv.ProcessState != nil {
		t.Errorf("svlogd exited: %s", svErr.String())
	}
}
