//go:build integration

package online

import (
	"context"
	"testing"
	"time"

	"github.com/apcera/deployhook/integration/clitest"
)

// TestOnlineLongTransactionAtFreeze holds a write transaction open across
// the freeze: the freeze waits for it (its write, committed later, is in
// store3), and meanwhile the freeze's short lock_timeout and retry let the
// writer's other writes through instead of queueing them all behind one
// long transaction (DESIGN.md "Cutover").
func TestOnlineLongTransactionAtFreeze(t *testing.T) {
	runs := 0
	scenario(t, "online-long-transaction-at-freeze", 1, 1, &runs)
	env := newEnv(t)
	db, prefix := names("longtx")
	seed(t, env, db, 10000)
	conf := env.WriteConf(clitest.Conf{Database: db, Prefix: prefix, Name: db + ".conf"})
	w := startWriter(t, env, db, writerRate)
	ctx := context.Background()
	mon, err := env.PG.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer mon.Close(ctx)

	p := clitest.StartProc(t, env, "migrate", "-f", conf, "--hostname", "longtx-host")
	tx := holdStore2(t, env, db, p, `INSERT INTO `+table+` (bucket, key, version, data) VALUES ('jobs', 'long transaction', 41, 'LONG')`)
	defer tx.Rollback(ctx)
	if !p.WaitLog(t, 2*time.Minute, catchUpLine+"1:") {
		t.Fatalf("migrate logged no catch-up round:\n%s", p)
	}
	// The freeze waiting behind it: a SHARE ROW EXCLUSIVE request on the
	// table that is not granted.
	clitest.Poll(t, 2*time.Minute, "the freeze waiting for the long transaction", func() bool {
		var n int
		if err := mon.QueryRow(ctx, `SELECT count(*) FROM pg_locks
			WHERE relation = $1::regclass AND mode = 'ShareRowExclusiveLock' AND NOT granted`, table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if p.Exited() {
			t.Fatalf("migrate exited while a write transaction was open:\n%s", p)
		}
		return n > 0
	})
	waitingAt := time.Now()
	// Hold it well past the freeze's lock timeout: the writer must keep
	// getting writes through.
	w.waitFor(time.Minute, "writes acked while the long transaction blocks the freeze", func(ws []write) bool {
		return countWrites(ws, func(x write) bool { return x.Outcome == "acked" && x.start().After(waitingAt) }) >= 20
	})
	heldFor := time.Since(waitingAt)
	if frozen(t, env.PG, db) {
		t.Fatalf("store2 frozen while a write transaction that began before the freeze was still open")
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatalf("commit the long transaction (the freeze must wait for it, not break it): %v", err)
	}
	t.Logf("the freeze waited; 20 writes of the writer acked in %v meanwhile; the long transaction committed", heldFor.Round(time.Millisecond))

	if code := p.Wait(t, 3*time.Minute); code != 0 {
		t.Fatalf("migrate: exit %d\n%s", code, p)
	}
	kv, _ := clitest.RawKVAt(t, env.Consul.Addr(), "", clitest.ExpectedKey(prefix, "jobs", "long transaction"))
	if got, ok := kv[clitest.ExpectedKey(prefix, "jobs", "long transaction")]; !ok || string(got.Value) != "LONG" || got.Flags != 41 {
		t.Errorf("the long transaction's write, committed before the freeze, is not in store3: %+v", got)
	}
	w.waitWritesAfter(p.Ended, 40, "the writer after the migration")
	st := checkMigrated(t, migrated{env: env, addr: env.Consul.Addr(), db: db, prefix: prefix, writes: w.stop(), log: p.Stderr.String(), start: p.Started})
	t.Logf("%v\n%s", st, progressLines(p.Stderr.String()))
	runs++
}
