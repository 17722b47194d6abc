//go:build integration

package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apcera/deployhook/integration/harness"
	"github.com/apcera/deployhook/runitlog"
)

// A cluster that never used store2 must never migrate, and run must say so
// to the deploy itself: the worker's refusal would only reach its log, and
// wait would then sit out its whole timeout.
func TestRunRefusesNeverUsedStore2(t *testing.T) {
	pg := harness.StartPostgres(t)
	consul := harness.StartConsul(t)
	ctx := context.Background()
	// jmdb exists but has no record table; pmdb does not exist at all.
	if err := pg.CreateDatabase(ctx, "jmdb"); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PGPASSFILE", pg.PassFile())
	for _, tc := range []struct{ component, db, why string }{
		{"job_manager", "jmdb", "table"},
		{"package_manager", "pmdb", "database"},
	} {
		t.Run(tc.why+" missing", func(t *testing.T) {
			dir := t.TempDir()
			logDir := filepath.Join(dir, "log")
			conf := filepath.Join(dir, tc.component+".conf")
			text := fmt.Sprintf("component: %s\ndb: {\n  kind: store3\n  migrate_store2_to_store3: true\n  postgres: { url: %q }\n  consul: { address: %q }\n}\nlog_dir: %q\n",
				tc.component, pg.URLWithoutPassword(tc.db), consul.Addr(), logDir)
			if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			var out, errb bytes.Buffer
			code := runMain([]string{"deployhook", "run", "-f", conf}, strings.NewReader(""), &out, &errb)
			if code != exitInvalid {
				t.Fatalf("run exit %d, want %d\nstderr:\n%s", code, exitInvalid, errb.String())
			}
			if !strings.Contains(errb.String(), "never used store2") || !strings.Contains(errb.String(), "migrate_store2_to_store3 = false") {
				t.Errorf("message does not say store2 was never used and what to set:\n%s", errb.String())
			}
			if _, err := os.Stat(logDir); !os.IsNotExist(err) {
				t.Errorf("log dir %s exists: a worker was started (%v)", logDir, err)
			}
		})
	}
}

// A worker takes its log directory's lock, then writes its pid file. A run
// that looks in between must wait for the pid file and report the worker
// already running, not blame an svlogd and fail the deploy.
func TestRunFindsWorkerBetweenLockAndPidFile(t *testing.T) {
	dir := t.TempDir()
	logDir := filepath.Join(dir, "log")
	held, err := runitlog.Open(logDir, runitlog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	// Stands in for the worker: a live process whose command line has
	// --worker (the shell stays, as it has more to do after sleep).
	fake := exec.Command("bash", "-c", "sleep 30; true", "deployhook", "--worker")
	if err := fake.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { fake.Process.Kill(); fake.Wait() }()
	go func() {
		time.Sleep(300 * time.Millisecond) // the gap being tested
		os.WriteFile(filepath.Join(logDir, pidFileName), []byte(strconv.Itoa(fake.Process.Pid)+"\n"), 0o644)
	}()

	// Both stores on a closed port: the data-loss checks are skipped.
	closed := "127.0.0.1:1"
	conf := filepath.Join(dir, "jm.conf")
	text := fmt.Sprintf("component: job_manager\ndb: {\n  kind: store3\n  migrate_store2_to_store3: true\n  postgres: { url: \"postgres://u@%s/jmdb\" }\n  consul: { address: %q }\n}\nlog_dir: %q\n", closed, closed, logDir)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	code := runMain([]string{"deployhook", "run", "-f", conf}, strings.NewReader(""), &out, &errb)
	if code != exitOK || !strings.Contains(errb.String(), fmt.Sprintf("already running on this host (pid %d)", fake.Process.Pid)) {
		t.Fatalf("run exit %d, want 0 and the running worker named:\n%s", code, errb.String())
	}
}

// A worker with little to do (another host migrated) can take the lock,
// write its exit file and end between two looks of a run started beside
// it (Chef retrying): that run reports it ended, and exits 0. An exit file
// from before the run does not count: the directory is then held by
// something else, and the run says so.
func TestRunFindsWorkerThatEndedMeanwhile(t *testing.T) {
	for _, c := range []struct {
		name     string
		finished time.Duration // the exit file's, from now
		code     int
		want     string
	}{
		// In the future: it ended after the run began, whenever that was.
		{"ended during the run", time.Minute, exitOK, "migration started by another run on this host (pid 4242) has ended"},
		{"ended before the run", -time.Hour, exitInvalid, "is held by another process"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			logDir := filepath.Join(dir, "log")
			held, err := runitlog.Open(logDir, runitlog.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer held.Close()
			ex := fmt.Sprintf(`{"pid":4242,"code":0,"error":"","finished":%q}`, time.Now().Add(c.finished).UTC().Format(time.RFC3339Nano))
			if err := os.WriteFile(filepath.Join(logDir, exitFileName), []byte(ex), 0o644); err != nil {
				t.Fatal(err)
			}
			closed := "127.0.0.1:1"
			conf := filepath.Join(dir, "jm.conf")
			text := fmt.Sprintf("component: job_manager\ndb: {\n  kind: store3\n  migrate_store2_to_store3: true\n  postgres: { url: \"postgres://u@%s/jmdb\" }\n  consul: { address: %q }\n}\nlog_dir: %q\n", closed, closed, logDir)
			if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			var out, errb bytes.Buffer
			code := runMain([]string{"deployhook", "run", "-f", conf}, strings.NewReader(""), &out, &errb)
			if code != c.code || !strings.Contains(errb.String(), c.want) {
				t.Fatalf("run exit %d, want %d and %q:\n%s", code, c.code, c.want, errb.String())
			}
		})
	}
}
