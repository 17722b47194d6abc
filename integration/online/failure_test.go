//go:build integration

package online

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/apcera/deployhook/integration/clitest"
)

// TestOnlineRecordFailure: a record that cannot be stored, with the writer
// running: exit 5, no .done, .status names the record, and store2 takes
// writes right after the exit (never frozen, or unfrozen on the way out).
// The bad record is either in the first snapshot (the reserved bucket) or
// inserted during catch-up (a value too large for a fenced transaction).
func TestOnlineRecordFailure(t *testing.T) {
	for _, tc := range []struct {
		name          string
		bucket, key   string
		size          int
		duringCatchUp bool
	}{
		{name: "reserved-bucket-in-snapshot", bucket: "migration", key: "reserved::x"},
		{name: "oversize-value-during-catch-up", bucket: "jobs", key: "big::value", size: 600 << 10, duringCatchUp: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runs := 0
			scenario(t, "online-record-failure-"+tc.name, 1, 1, &runs)
			env := newEnv(t)
			db, prefix := names("recfail_" + strings.ReplaceAll(tc.name, "-", "_"))
			seed(t, env, db, 5000)
			insert := fmt.Sprintf(`INSERT INTO %s (bucket, key, version, data) VALUES (%s, %s, 7, decode(repeat('ab', %d), 'hex'))`,
				table, quoteLiteral(tc.bucket), quoteLiteral(tc.key), tc.size)
			if !tc.duringCatchUp {
				if err := env.PG.Exec(context.Background(), db, insert); err != nil {
					t.Fatalf("insert the bad record: %v", err)
				}
			}
			conf := env.WriteConf(clitest.Conf{Database: db, Prefix: prefix, Name: db + ".conf"})
			w := startWriter(t, env, db, writerRate)
			p := clitest.StartProc(t, env, "migrate", "-f", conf, "--hostname", "recfail-host")
			if tc.duringCatchUp {
				// Written after the copy's snapshot, committed once a
				// catch-up round has run, before the freeze.
				tx := holdStore2(t, env, db, p, insert)
				if !p.WaitLog(t, 2*time.Minute, catchUpLine+"1:") {
					t.Fatalf("migrate logged no catch-up round:\n%s", p)
				}
				if err := tx.Commit(context.Background()); err != nil {
					t.Fatalf("commit the bad record: %v", err)
				}
			}
			if code := p.Wait(t, 3*time.Minute); code != 5 {
				t.Fatalf("migrate with a record failure: exit %d, want 5\n%s", code, p)
			}
			if _, ok := readDone(t, env.Consul.Addr(), prefix); ok {
				t.Errorf(".done written by a migration with a record failure")
			}
			if !strings.Contains(p.Stderr.String(), tc.key) {
				t.Errorf("the log does not name the failing record %q:\n%s", tc.key, p.Stderr)
			}
			st := readStatus(t, env.Consul.Addr(), prefix)
			if st == nil || st.State != "failed" || !st.names(tc.bucket, tc.key) {
				t.Errorf(".status after the record failure: %+v, want failed naming %s/%s", st, tc.bucket, tc.key)
			}
			checkWritable(t, env, w, db, p.Ended, 20)
			checkRefusals(t, w.stop(), prefix)
			runs++
		})
	}
}

// checkRefusals checks that every refused write was refused by the freeze
// with the contract's message (a migration that froze and unfroze).
func checkRefusals(t *testing.T, ws []write, prefix string) {
	t.Helper()
	bad := &errorf{t: t, what: "refusal"}
	for _, w := range ws {
		if w.Outcome != "acked" && (w.SQLState != "25006" || w.Message != frozenMessage(prefix)) {
			bad.add("%s", w)
		}
	}
	bad.done()
}

// statusDoc is .status decoded with a type of our own.
type statusDoc struct {
	State         string `json:"state"`
	Host          string `json:"host"`
	Error         string `json:"error"`
	FailedRecords []struct {
		Bucket, Key, Reason string
	} `json:"failed_records"`
	raw string
}

func (s *statusDoc) names(bucket, key string) bool {
	for _, f := range s.FailedRecords {
		if f.Bucket == bucket && f.Key == key {
			return true
		}
	}
	return false
}

func readStatus(t testing.TB, addr, prefix string) *statusDoc {
	t.Helper()
	kv, _ := clitest.RawKVAt(t, addr, "", prefix+"migration/.status")
	p, ok := kv[prefix+"migration/.status"]
	if !ok {
		return nil
	}
	s := &statusDoc{raw: string(p.Value)}
	if err := jsonUnmarshal(p.Value, s); err != nil {
		t.Fatalf(".status does not decode: %v: %q", err, p.Value)
	}
	return s
}

// TestOnlineKill9AtFreeze kills `migrate` with SIGKILL the moment its
// freeze commits (before .done): store2 stays frozen (writes refused),
// the next `run` on the host unfreezes it (writes acked again, the
// "store2 unfrozen" line), and its worker completes the migration with the
// writer still running, with every check of TestOnlineWriters.
func TestOnlineKill9AtFreeze(t *testing.T) {
	runs := 0
	scenario(t, "online-kill9-at-freeze", 1, 1, &runs)
	env := newEnv(t)
	db, prefix := names("kill9")
	seed(t, env, db, 10000)
	logDir := filepath.Join(env.Dir, "log", db)
	conf := env.WriteConf(clitest.Conf{Database: db, Prefix: prefix, LogDir: logDir, Name: db + ".conf"})
	froze := freezeListener(t, env.PG, db)
	w := startWriter(t, env, db, writerRate)

	p := clitest.StartProc(t, env, "migrate", "-f", conf, "--hostname", "kill-host")
	var freezeAt time.Time
	select {
	case freezeAt = <-froze:
		p.Cmd.Process.Signal(syscall.SIGKILL)
	case <-p.Done():
		t.Fatalf("migrate exited without freezing store2:\n%s", p)
	case <-time.After(3 * time.Minute):
		t.Fatalf("no freeze within 3 minutes:\n%s", p)
	}
	killAt := time.Now()
	if code := p.Wait(t, 30*time.Second); code != -int(syscall.SIGKILL) {
		t.Fatalf("migrate killed at the freeze: exit %d, want -9\n%s", code, p)
	}
	if _, ok := readDone(t, env.Consul.Addr(), prefix); ok {
		t.Fatalf("the kill came %v after the freeze, too late: .done was already written (the scenario did not happen)\n%s", killAt.Sub(freezeAt), p)
	}
	t.Logf("SIGKILL %v after the freeze committed, .done absent", killAt.Sub(freezeAt))
	if !frozen(t, env.PG, db) {
		t.Fatalf("no freeze trigger after the kill although the freeze had committed")
	}
	w.waitWritesAfter(killAt, 10, "writes against the frozen store2")
	runAt := time.Now()
	checkNoAckWhileFrozen(t, w.read(), freezeAt, runAt)

	r := env.MustRun(0, "run", "-f", conf, "--hostname", "kill-host")
	pid := workerPID(t, logDir, 0)
	clitest.Poll(t, time.Minute, "store2 unfrozen by the next run", func() bool { return !frozen(t, env.PG, db) })
	// Taken after the drop was seen: a refusal that started later comes
	// from the rerun's own freeze.
	unfrozenAt := time.Now()
	w.waitFor(30*time.Second, "a write acked after the unfreeze", func(ws []write) bool {
		return countWrites(ws, func(x write) bool { return x.Outcome == "acked" && x.start().After(unfrozenAt) }) > 0
	})
	if wr := env.Run("wait", "-f", conf, "--timeout", "3m"); wr.Code != 0 {
		t.Fatalf("wait for the rerun: exit %d\n%s\nworker log:\n%s", wr.Code, wr, readLogDir(logDir))
	}
	if code := clitest.ReapPID(t, pid, time.Minute); code != 0 {
		t.Errorf("worker exit %d, want 0\n%s", code, readLogDir(logDir))
	}
	log := readLogDir(logDir)
	if !strings.Contains(r.Stderr+log, unfrozenLine) {
		t.Errorf("neither run nor its worker logged %q:\n%s\nworker log:\n%s", unfrozenLine, r, log)
	}
	w.waitWritesAfter(time.Now(), 40, "the writer after the rerun")
	st := checkMigrated(t, migrated{env: env, addr: env.Consul.Addr(), db: db, prefix: prefix, writes: w.stop(), since: unfrozenAt, log: log, start: runAt})
	t.Logf("%v", st)
	runs++
}

// TestOnlineLockLoss destroys the migration's lock session, as an operator
// or a TTL expiry would: during catch-up, and the moment the freeze
// commits. Either way: exit 5, no .done, not one key under the prefix
// changes after the destroy, store2 not frozen and writable right after;
// then a rerun completes with the writer still running.
func TestOnlineLockLoss(t *testing.T) {
	for _, tc := range []struct {
		name    string
		atFreez bool
	}{{"during-catch-up", false}, {"at-freeze", true}} {
		t.Run(tc.name, func(t *testing.T) {
			runs := 0
			scenario(t, "online-lock-loss-"+tc.name, 1, 1, &runs)
			env := newEnv(t)
			addr := env.Consul.Addr()
			db, prefix := names("lockloss_" + strings.ReplaceAll(tc.name, "-", "_"))
			seed(t, env, db, 10000)
			conf := env.WriteConf(clitest.Conf{Database: db, Prefix: prefix, Name: db + ".conf"})
			var froze <-chan time.Time
			if tc.atFreez {
				froze = freezeListener(t, env.PG, db)
			}
			w := startWriter(t, env, db, writerRate)
			p := clitest.StartProc(t, env, "migrate", "-f", conf, "--hostname", "lockloss-host")
			var held pgx.Tx // keeps the migration from freezing
			if !tc.atFreez {
				held = holdStore2(t, env, db, p, `INSERT INTO `+table+` (bucket, key, version, data) VALUES ('jobs', 'held', 1, 'HELD')`)
			}
			if tc.atFreez {
				select {
				case <-froze:
				case <-p.Done():
					t.Fatalf("migrate exited without freezing store2:\n%s", p)
				case <-time.After(3 * time.Minute):
					t.Fatalf("no freeze within 3 minutes:\n%s", p)
				}
			} else if !p.WaitLog(t, 2*time.Minute, catchUpLine+"1:") {
				t.Fatalf("migrate logged no catch-up round:\n%s", p)
			}
			destroyedAt := time.Now()
			destroyIndex, atDestroy := destroyLockSession(t, addr, prefix)
			if !tc.atFreez && frozen(t, env.PG, db) {
				t.Fatalf("store2 already frozen when the session was destroyed: not during catch-up")
			}
			if held != nil {
				// Let go: on its way out the migration drops its capture,
				// which waits for the writers in flight, as the freeze does.
				if err := held.Rollback(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			code := p.Wait(t, 3*time.Minute)
			if d, ok := readDone(t, addr, prefix); ok {
				t.Fatalf(".done present after the lock was lost (exit %d, .done %+v): the destroy came too late or the fence is broken\n%s", code, d, p)
			}
			if code != 5 {
				t.Errorf("migrate after losing its lock: exit %d, want 5\n%s", code, p)
			}
			checkFence(t, addr, prefix, destroyIndex, atDestroy)
			checkWritable(t, env, w, db, p.Ended, 20)
			if tc.atFreez {
				if !strings.Contains(p.Stderr.String(), unfrozenLine) {
					t.Errorf("no %q line after losing the lock in cutover:\n%s", unfrozenLine, p)
				}
			}
			t.Logf("exit %d %v after the destroy", code, p.Ended.Sub(destroyedAt).Round(time.Millisecond))

			re := clitest.StartProc(t, env, "migrate", "-f", conf, "--hostname", "second-host", "--lock-timeout", "30s")
			if code := re.Wait(t, 3*time.Minute); code != 0 {
				t.Fatalf("rerun after the lost lock: exit %d\n%s", code, re)
			}
			w.waitWritesAfter(re.Ended, 40, "the writer after the rerun")
			st := checkMigrated(t, migrated{env: env, addr: addr, db: db, prefix: prefix, writes: w.stop(), since: re.Started, log: re.Stderr.String(), start: re.Started})
			t.Logf("rerun: %v", st)
			runs++
		})
	}
}

// destroyLockSession destroys the session holding prefix's lock and
// returns the destroy's raft index (the lock key's ModifyIndex right
// after, the destroy released it) and the keys under the prefix then.
func destroyLockSession(t *testing.T, addr, prefix string) (uint64, map[string]clitest.RawPair) {
	t.Helper()
	lockKey := prefix + "migration/.lock"
	kv, _ := clitest.RawKVAt(t, addr, "", lockKey)
	l, ok := kv[lockKey]
	if !ok || l.Session == "" {
		t.Fatalf("lock key %q not held mid-run: %+v", lockKey, l)
	}
	resp, body := clitest.ConsulRequest(t, "PUT", addr, "", "/v1/session/destroy/"+l.Session, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("destroy session %s: %s: %s", l.Session, resp.Status, body)
	}
	kv, _ = clitest.RawKVAt(t, addr, "", lockKey)
	after := kv[lockKey]
	if after.Session != "" {
		t.Fatalf("lock key still held after destroying its session: %+v", after)
	}
	at, _ := clitest.RawKVAt(t, addr, "", prefix)
	return after.ModifyIndex, at
}

// checkFence checks that no key under prefix was written or deleted after
// the destroy.
func checkFence(t *testing.T, addr, prefix string, destroyIndex uint64, atDestroy map[string]clitest.RawPair) {
	t.Helper()
	final, _ := clitest.RawKVAt(t, addr, "", prefix)
	bad := &errorf{t: t, what: "FENCE BROKEN"}
	for k, v := range final {
		if v.ModifyIndex > destroyIndex {
			bad.add("key %q written at index %d, after the session was destroyed at %d", k, v.ModifyIndex, destroyIndex)
		}
	}
	for k := range atDestroy {
		if _, ok := final[k]; !ok {
			bad.add("key %q deleted after the session was destroyed", k)
		}
	}
	bad.done()
}

var offlineRE = regexp.MustCompile(`store2 changed during the migration \((\d+) records\): stop the components \(runbook step 2\) or migrate online`)

// TestOnlineOfflineWithWriters: --offline with the writer running must not
// freeze and must not complete: exit 5 with the contract's message, no
// .done, no write refused. Once the writer has stopped, --offline
// completes, still without freezing store2.
func TestOnlineOfflineWithWriters(t *testing.T) {
	runs := 0
	scenario(t, "online-offline-writers", 1, 1, &runs)
	env := newEnv(t)
	db, prefix := names("offline")
	seed(t, env, db, 5000)
	conf := env.WriteConf(clitest.Conf{Database: db, Prefix: prefix, Name: db + ".conf"})
	w := startWriter(t, env, db, writerRate)
	p := clitest.StartProc(t, env, "migrate", "-f", conf, "--hostname", "offline-host", "--offline")
	if code := p.Wait(t, 3*time.Minute); code != 5 {
		t.Fatalf("migrate --offline with writers: exit %d, want 5\n%s", code, p)
	}
	if !offlineRE.MatchString(p.Stderr.String()) {
		t.Errorf("migrate --offline with writers does not say %q:\n%s", offlineRE, p)
	}
	if _, ok := readDone(t, env.Consul.Addr(), prefix); ok {
		t.Errorf(".done written by --offline although store2 changed")
	}
	checkWritable(t, env, w, db, p.Started, 20)
	ws := w.stop()
	if n := countWrites(ws, func(x write) bool { return x.Outcome != "acked" }); n > 0 {
		t.Errorf("--offline: %d writes not acked (it must never freeze)", n)
	}

	again := env.MustRun(0, "migrate", "-f", conf, "--hostname", "offline-host", "--offline")
	if strings.Contains(again.Stderr, frozenLine) || frozen(t, env.PG, db) {
		t.Errorf("--offline froze store2:\n%s", again)
	}
	store2 := readStore2(t, env.PG, db)
	got, _ := clitest.RawKVAt(t, env.Consul.Addr(), "", prefix)
	eq := &errorf{t: t, what: "store3 != store2 after --offline"}
	for _, r := range store2 {
		k := clitest.ExpectedKey(prefix, r.Bucket, r.Key)
		if p, ok := got[k]; !ok || string(p.Value) != string(r.Data) || p.Flags != uint64(r.Version) {
			eq.add("record %q", k)
		}
		delete(got, k)
	}
	for k := range got {
		if !strings.HasPrefix(k, prefix+"migration/") {
			eq.add("extra key %q", k)
		}
	}
	eq.done()
	if d, ok := readDone(t, env.Consul.Addr(), prefix); !ok || d.RecordsMigrated != int64(len(store2)) {
		t.Errorf("--offline without writers: .done %+v, want %d records", d, len(store2))
	}
	runs++
}
