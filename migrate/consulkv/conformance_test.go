//go:build integration

package consulkv_test

import (
	"testing"

	"github.com/apcera/deployhook/migrate"
	"github.com/apcera/deployhook/migrate/migratetest"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	migratetest.TestKV(t, func(t *testing.T) (migrate.KV, migrate.Locker) {
		s := newStore(t, shared, "")
		return s, s
	})
}
