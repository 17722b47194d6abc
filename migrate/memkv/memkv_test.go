package memkv_test

import (
	"testing"

	"github.com/apcera/deployhook/migrate"
	"github.com/apcera/deployhook/migrate/memkv"
	"github.com/apcera/deployhook/migrate/migratetest"
)

func TestKVConformance(t *testing.T) {
	migratetest.TestKV(t, func(t *testing.T) (migrate.KV, migrate.Locker) {
		s := memkv.New()
		return s, s
	})
}

func TestSourceConformance(t *testing.T) {
	migratetest.TestSource(t, func(t *testing.T, records []migrate.Record) migrate.Source {
		return memkv.NewSource(records)
	})
}
