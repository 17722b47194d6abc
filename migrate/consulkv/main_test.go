//go:build integration

package consulkv_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/apcera/deployhook/integration/harness"
	"github.com/apcera/deployhook/migrate/consulkv"
)

// shared is one default server for the tests that need nothing special.
var shared *harness.Consul

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "consulkv-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	shared, err = harness.StartConsulDir(dir, nil)
	if shared != nil {
		defer shared.Kill()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "consul:", err)
		return 1
	}
	code := m.Run()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "shared consul log:\n%s\n", shared.Log())
	}
	return code
}

// newStore is a Store on c with token.
func newStore(t testing.TB, c *harness.Consul, token string) *consulkv.Store {
	t.Helper()
	s, err := consulkv.New(consulkv.Config{Address: c.Addr(), Token: token})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// prefix is a fresh key prefix for one test on the shared server.
func prefix(t testing.TB) string {
	return "apcera/store3/" + t.Name() + "/"
}
