//go:build integration

package pgsource_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/apcera/deployhook/integration/harness"
)

// pg is one server for the package's tests; each test uses its own
// databases.
var pg *harness.Postgres

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "pgsource-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	pg, err = harness.StartPostgresDir(dir, nil)
	if pg != nil {
		defer pg.Stop()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "postgres:", err)
		return 1
	}
	code := m.Run()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "postgres log:\n%s\n", pg.Log())
	}
	return code
}
