package memkv_test

import (
	"context"
	"errors"
	"testing"

	"github.com/apcera/deployhook/migrate"
	"github.com/apcera/deployhook/migrate/memkv"
	"github.com/apcera/deployhook/migrate/migratetest"
)

func TestKVConformance(t *testing.T) {
	migratetest.TestKV(t, func(t *testing.T) migratetest.Store {
		s := memkv.New()
		return migratetest.Store{KV: s, Locker: s}
	})
}

func TestSourceConformance(t *testing.T) {
	migratetest.TestSource(t, func(t *testing.T, records []migrate.Record) migrate.Source {
		return memkv.NewSource(records)
	})
}

// A denied write fails as consulkv's does: ErrPermissionDenied, and a
// rolled-back transaction; nothing is written.
func TestDenyWrite(t *testing.T) {
	ctx := context.Background()
	s := memkv.New()
	s.DenyWrite = func(k string) bool { return k == "p/denied" }
	err := s.Txn(ctx, migrate.Fence{}, []migrate.Op{{Verb: migrate.VerbSet, Key: "p/ok"}, {Verb: migrate.VerbSet, Key: "p/denied"}})
	var te *migrate.TxnError
	if !errors.Is(err, migrate.ErrPermissionDenied) || !errors.As(err, &te) {
		t.Fatalf("denied write: %v, want ErrPermissionDenied and a *TxnError", err)
	}
	if p, _ := s.Get(ctx, "p/ok"); p != nil {
		t.Fatalf("a denied transaction wrote %+v", p)
	}
}

// Over the limits, a transaction fails as on Consul: ErrTooLarge, not a
// rolled-back transaction.
func TestTooLarge(t *testing.T) {
	ctx := context.Background()
	s := memkv.New()
	s.TxnLimits = migrate.Limits{MaxOps: 2, MaxBody: 100, MaxValue: 10}
	for name, ops := range map[string][]migrate.Op{
		"ops":   {{Verb: migrate.VerbSet, Key: "a"}, {Verb: migrate.VerbSet, Key: "b"}, {Verb: migrate.VerbSet, Key: "c"}},
		"value": {{Verb: migrate.VerbSet, Key: "a", Value: make([]byte, 11)}},
	} {
		err := s.Txn(ctx, migrate.Fence{}, ops)
		if !errors.Is(err, migrate.ErrTooLarge) || errors.As(err, new(*migrate.TxnError)) {
			t.Errorf("%s over the limit: %v, want ErrTooLarge", name, err)
		}
	}
}
