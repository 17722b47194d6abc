package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apcera/deployhook/integration/harness"
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
