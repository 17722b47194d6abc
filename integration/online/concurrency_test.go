//go:build integration

package online

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/apcera/deployhook/integration/clitest"
)

var hosts = []string{"central-1", "central-2", "central-3"}

// TestOnlineConcurrentHosts is a deploy on three central hosts running
// `run` for the same component while the writer runs: exactly one
// migration ("Starting" logged once over every host's log), one freeze,
// no unfreeze, one .done written once, and every check of
// TestOnlineWriters.
//
// "together" starts the three runs at once. "during-cutover" starts the
// first host alone, stops its worker (SIGSTOP) the moment its freeze
// commits, and starts the two others then: they find the freeze trigger
// without .done while the lock's holder is alive, and must leave the
// freeze alone (it is not a kill -9 leftover) and wait for the lock.
func TestOnlineConcurrentHosts(t *testing.T) {
	for _, mode := range []string{"together", "during-cutover"} {
		t.Run(mode, func(t *testing.T) {
			runs := 0
			scenario(t, "online-concurrency-"+mode, 1, 1, &runs)
			env := newEnv(t)
			addr := env.Consul.Addr()
			db, prefix := names("hosts_" + strings.ReplaceAll(mode, "-", "_"))
			seed(t, env, db, 10000)
			confs, logDirs := map[string]string{}, map[string]string{}
			for _, h := range hosts {
				logDirs[h] = filepath.Join(env.Dir, "log", db, h)
				confs[h] = env.WriteConf(clitest.Conf{Database: db, Prefix: prefix, LogDir: logDirs[h], Name: db + "-" + h + ".conf"})
			}
			var froze <-chan time.Time
			if mode == "during-cutover" {
				froze = freezeListener(t, env.PG, db)
			}
			w := startWriter(t, env, db, writerRate)
			start := time.Now()
			runAll := func(hs []string) {
				var wg sync.WaitGroup
				results := make([]clitest.Result, len(hs))
				errs := make([]error, len(hs))
				for i, h := range hs {
					wg.Go(func() { results[i], errs[i] = env.Try("run", "-f", confs[h], "--hostname", h) })
				}
				wg.Wait()
				for i := range hs {
					if errs[i] != nil {
						t.Fatal(errs[i])
					}
					if results[i].Code != 0 {
						t.Errorf("run on %s: exit %d\n%s", hs[i], results[i].Code, results[i])
					}
				}
			}
			if mode == "together" {
				runAll(hosts)
			} else {
				runAll(hosts[:1])
				pid := workerPID(t, logDirs[hosts[0]], 0)
				waitFreeze(t, froze, func() bool { return !alive(pid) }, func() string { return readLogDir(logDirs[hosts[0]]) })
				if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
					t.Fatal(err)
				}
				stoppedAt := time.Now()
				if _, ok := readDone(t, addr, prefix); ok {
					syscall.Kill(pid, syscall.SIGCONT)
					t.Fatalf("the worker was stopped after .done: the scenario did not happen")
				}
				holder := lockSession(t, addr, prefix)
				runAll(hosts[1:])
				waiting := waitLockWaiters(t, addr, holder, 2, 8*time.Second-time.Since(stoppedAt))
				stillFrozen := frozen(t, env.PG, db)
				if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
					t.Fatal(err)
				}
				t.Logf("first worker stopped for %v in cutover; %d other lock sessions seen", time.Since(stoppedAt).Round(time.Millisecond), waiting)
				if !stillFrozen {
					t.Errorf("UNFROZEN DURING ANOTHER HOST'S CUTOVER: the freeze trigger was dropped while its migration was alive")
				}
				if waiting < 2 {
					t.Errorf("the two later hosts' workers never waited for the lock (%d sessions other than the holder's)", waiting)
				}
			}

			wr := env.Run("wait", "-f", confs[hosts[1]], "--timeout", "3m")
			if wr.Code != 0 {
				t.Errorf("wait: exit %d\n%s", wr.Code, wr)
			}
			clitest.WaitWorkersGone(t, 2*time.Minute)
			starts, freezes, unfreezes := 0, 0, 0
			var winnerLog string
			for _, h := range hosts {
				log := readLogDir(logDirs[h])
				n := strings.Count(log, startingLine)
				if n > 0 {
					winnerLog = log
				}
				starts += n
				freezes += len(frozenRE.FindAllString(log, -1))
				unfreezes += strings.Count(log, unfrozenLine)
				t.Logf("%s: %d starts, log:\n%s", h, n, log)
			}
			if starts != 1 || freezes != 1 || unfreezes != 0 {
				t.Errorf("over the three hosts: %d migrations, %d freezes, %d unfreezes; want 1, 1, 0", starts, freezes, unfreezes)
			}
			if c, m := doneIndexes(t, addr, prefix); c == 0 || c != m {
				t.Errorf(".done create index %d, modify index %d: want it written exactly once", c, m)
			}
			w.waitWritesAfter(time.Now(), 40, "the writer after the migration")
			st := checkMigrated(t, migrated{env: env, addr: addr, db: db, prefix: prefix, writes: w.stop(), log: winnerLog, start: start})
			t.Logf("%v", st)
			runs++
		})
	}
}

// waitFreeze waits for the freeze's notification, failing the test when
// exited reports that the migration ended first.
func waitFreeze(t testing.TB, froze <-chan time.Time, exited func() bool, log func() string) time.Time {
	t.Helper()
	deadline := time.After(3 * time.Minute)
	for {
		select {
		case at := <-froze:
			return at
		case <-deadline:
			t.Fatalf("no freeze within 3 minutes:\n%s", log())
		case <-time.After(20 * time.Millisecond):
			if exited() {
				t.Fatalf("the migration exited without freezing store2:\n%s", log())
			}
		}
	}
}

// alive is true for a process that exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	f := strings.Fields(s[i+1:])
	return i >= 0 && len(f) > 0 && f[0] != "Z"
}

// lockSession returns the session holding prefix's lock.
func lockSession(t testing.TB, addr, prefix string) string {
	t.Helper()
	key := prefix + "migration/.lock"
	kv, _ := clitest.RawKVAt(t, addr, "", key)
	if kv[key].Session == "" {
		t.Fatalf("lock %q not held", key)
	}
	return kv[key].Session
}

// waitLockWaiters polls Consul's session list until n distinct sessions
// other than holder have been seen (workers waiting for the lock create
// one per attempt), or within passes, and returns how many were seen.
func waitLockWaiters(t testing.TB, addr, holder string, n int, within time.Duration) int {
	t.Helper()
	seen := map[string]bool{}
	deadline := time.Now().Add(within)
	for len(seen) < n && time.Now().Before(deadline) {
		resp, body := clitest.ConsulRequest(t, "GET", addr, "", "/v1/session/list", nil)
		if resp.StatusCode == http.StatusOK {
			var ss []struct{ ID, Name string }
			if jsonUnmarshal(body, &ss) == nil {
				for _, s := range ss {
					if s.ID != holder && strings.Contains(s.Name, "deployhook") {
						seen[s.ID] = true
					}
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return len(seen)
}

// doneIndexes returns .done's CreateIndex and ModifyIndex.
func doneIndexes(t testing.TB, addr, prefix string) (uint64, uint64) {
	t.Helper()
	resp, body := clitest.ConsulRequest(t, "GET", addr, "", "/v1/kv/"+clitest.PathEscape(prefix+"migration/.done"), nil)
	if resp.StatusCode != http.StatusOK {
		return 0, 0
	}
	var ps []struct{ CreateIndex, ModifyIndex uint64 }
	if err := jsonUnmarshal(body, &ps); err != nil || len(ps) != 1 {
		t.Fatalf("decode .done: %v", err)
	}
	return ps[0].CreateIndex, ps[0].ModifyIndex
}
