//go:build integration

package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
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
	dir, logDir, _ := heldLogDir(t)
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

	code, stderr := runOnClosedPorts(t, dir, logDir)
	if code != exitOK || !strings.Contains(stderr, fmt.Sprintf("already running on this host (pid %d)", fake.Process.Pid)) {
		t.Fatalf("run exit %d, want 0 and the running worker named:\n%s", code, stderr)
	}
}

// heldLogDir returns a test directory and a log directory in it whose lock
// the test holds until it ends, or closes held.
func heldLogDir(t *testing.T) (dir, logDir string, held *runitlog.Dir) {
	t.Helper()
	dir = t.TempDir()
	logDir = filepath.Join(dir, "log")
	held, err := runitlog.Open(logDir, runitlog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { held.Close() })
	return dir, logDir, held
}

// runOnClosedPorts runs `deployhook run` on a job_manager conf in dir
// logging to logDir, with both stores on a closed port (the data-loss
// checks are skipped), and returns its exit code and standard error.
func runOnClosedPorts(t *testing.T, dir, logDir string) (int, string) {
	t.Helper()
	closed := "127.0.0.1:1"
	conf := filepath.Join(dir, "jm.conf")
	text := fmt.Sprintf("component: job_manager\ndb: {\n  kind: store3\n  migrate_store2_to_store3: true\n  postgres: { url: \"postgres://u@%s/jmdb\" }\n  consul: { address: %q }\n}\nlog_dir: %q\n", closed, closed, logDir)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	code := runMain([]string{"deployhook", "run", "-f", conf}, strings.NewReader(""), &out, &errb)
	return code, errb.String()
}

// Runs started together (Chef retrying) race for the log directory: each
// looks at its lock by taking it for an instant, and a worker with little
// to do takes it, writes its exit file and ends at once. A run that finds
// the directory held waits for it to be let go, then starts its own
// worker; held by something that is no worker for longer than lockWait,
// the run fails and says so.
func TestRunWaitsForTheLogDirectory(t *testing.T) {
	for _, c := range []struct {
		name string
		held time.Duration
		code int
		want string
	}{
		{"let go", 300 * time.Millisecond, exitOK, "started the store2 -> store3 migration in the background"},
		{"kept", time.Minute, exitInvalid, "is held by another process (an svlogd?)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir, logDir, held := heldLogDir(t)
			letGo := time.AfterFunc(c.held, func() { held.Close() }) // the holder's time with it
			defer letGo.Stop()
			code, stderr := runOnClosedPorts(t, dir, logDir)
			if m := regexp.MustCompile(`in the background \(pid (\d+)\)`).FindStringSubmatch(stderr); m != nil {
				// The worker cannot reach the stores; it is not under test.
				pid, _ := strconv.Atoi(m[1])
				syscall.Kill(pid, syscall.SIGKILL)
			}
			if code != c.code || !strings.Contains(stderr, c.want) {
				t.Fatalf("run exit %d, want %d and %q:\n%s", code, c.code, c.want, stderr)
			}
		})
	}
}
