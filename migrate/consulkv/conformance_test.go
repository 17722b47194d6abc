//go:build integration

package consulkv_test

import (
	"context"
	"testing"

	"github.com/hashicorp/consul/api"

	"github.com/apcera/deployhook/integration/harness"
	"github.com/apcera/deployhook/migrate/consulkv"
	"github.com/apcera/deployhook/migrate/migratetest"
)

// conformance runs the suite through a Store on addr, with c's raw
// X-Consul-Index as the suite's Index.
func conformance(t *testing.T, c *harness.Consul, addr string) {
	cl := c.Client()
	index := func(ctx context.Context, prefix string) (uint64, error) {
		_, meta, err := cl.KV().Keys(prefix, "/", (&api.QueryOptions{}).WithContext(ctx))
		if err != nil {
			return 0, err
		}
		return meta.LastIndex, nil
	}
	migratetest.TestKV(t, func(t *testing.T) migratetest.Store {
		s, err := consulkv.New(consulkv.Config{Address: addr})
		if err != nil {
			t.Fatal(err)
		}
		return migratetest.Store{KV: s, Locker: s, Index: index}
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
