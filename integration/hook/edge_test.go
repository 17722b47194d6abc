//go:build integration

package hook

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apcera/deployhook/integration/clitest"
)

// A cluster that never used store2 (no database) must never migrate: run
// refuses before detaching (exit 3), so the Chef run fails at once instead
// of waiting out wait's timeout on a worker that refused in the background.
func TestNeverUsedStore2(t *testing.T) {
	e := newEnv(t)
	n := e.names("job_manager")
	logDir := filepath.Join(e.Dir, "log", "jm")
	conf := e.conf(clitest.Conf{Database: n.DB, Prefix: n.Prefix, LogDir: logDir})
	r := e.run(3, "-f", conf, "--hostname", "central-1")
	if !strings.Contains(r.Stderr, "never used store2") || !strings.Contains(r.Stderr, "migrate_store2_to_store3 = false") {
		t.Errorf("refusal does not say store2 was never used and what to set:\n%s", r)
	}
	e.assertNothingStarted(conf, logDir, n.Prefix)
}

// A log_dir that cannot be a directory: run fails before detaching, naming
// it, rather than reporting a worker that dies unheard.
func TestUnusableLogDir(t *testing.T) {
	e := newEnv(t)
	n := e.names("job_manager")
	e.SeedDB(n.DB, clitest.Records(10))
	file := filepath.Join(e.Dir, "a-file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	logDir := filepath.Join(file, "log")
	conf := e.conf(clitest.Conf{Database: n.DB, Prefix: n.Prefix, LogDir: logDir})
	r := e.Run("run", "-f", conf, "--hostname", "central-1")
	recordLatency(r.Took)
	if r.Code == 0 || !strings.Contains(r.Stderr, logDir) {
		t.Errorf("want run to fail naming %s:\n%s", logDir, r)
	}
	if pids := workersFor(conf); len(pids) > 0 {
		t.Errorf("run started workers %v", pids)
	}
	if st, _ := e.status(n.Prefix); st != nil {
		t.Errorf("a migration started: %+v", st)
	}
}
