//go:build integration

package consulkv_test

import (
	"testing"

	"github.com/apcera/deployhook/integration/harness"
	"github.com/apcera/deployhook/migrate/consulkv"
	"github.com/apcera/deployhook/migrate/migratetest"
)

// conformance runs the suite through a Store on addr.
func conformance(t *testing.T, c *harness.Consul, addr string) {
	migratetest.TestKV(t, func(t *testing.T) migratetest.Store {
		s, err := consulkv.New(consulkv.Config{Address: addr})
		if err != nil {
			t.Fatal(err)
		}
		return migratetest.Store{KV: s, Locker: s}
	})
}

func TestConformance(t *testing.T) {
	t.Parallel()
	conformance(t, shared, shared.Addr())
}

// Every request, Scan's listing included, through consul/api's unix
// socket transport.
func TestConformanceUnixSocket(t *testing.T) {
	t.Parallel()
	c := harness.StartConsul(t, harness.WithUnixSocket())
	conformance(t, c, c.UnixAddr())
}
