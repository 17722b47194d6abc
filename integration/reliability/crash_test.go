//go:build integration

package reliability

import (
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/apcera/deployhook/integration/clitest"
	"github.com/apcera/deployhook/integration/harness"
)

// acquireBound is how soon a rerun on the crashed host must start copying:
// well under the 10 s session TTL (Consul invalidates after up to twice
// that) plus the 1 s lock delay, so only a reaped dead holder passes; and
// under consul/api's fixed 5 s retry during a lock delay, which TryLock
// must not sit out (a reap costs the 1 s delay and one lock wait).
const acquireBound = 4 * time.Second

// killPoints spreads n kill points over a run: -1 is "during the wipe",
// the others fractions of the records copied (1 is "all copied, before
// .done").
func killPoints(n int) []float64 {
	if n <= 5 {
		return []float64{0.25, -1, 0.5, 0.9, 1}[:n]
	}
	pts := []float64{-1}
	for i := range n - 1 {
		pts = append(pts, float64(i)/float64(n-2))
	}
	return pts
}

// migrating is one migration the test started on a host: a foreground
// `migrate`, or the worker of `run`.
type migrating struct {
	t      *testing.T
	env    *clitest.Env
	conf   string
	logDir string
	host   string
	worker bool
	p      *clitest.Proc // foreground
	pid    int           // the migrating process
	start  time.Time
}

func startMigrating(t *testing.T, env *clitest.Env, conf, logDir, host string, worker bool, oldPID int) *migrating {
	t.Helper()
	m := &migrating{t: t, env: env, conf: conf, logDir: logDir, host: host, worker: worker, start: time.Now()}
	if !worker {
		m.p = clitest.StartProc(t, env, "migrate", "-f", conf, "--hostname", host)
		m.pid = m.p.Cmd.Process.Pid
		return m
	}
	r := env.MustRun(0, "run", "-f", conf, "--hostname", host)
	if !strings.Contains(r.Stderr, "started the store2 -> store3 migration in the background") {
		t.Fatalf("run started no worker:\n%s", r)
	}
	clitest.Poll(t, 10*time.Second, "the new worker's pid file", func() bool {
		m.pid = workerPID(t, logDir, 10*time.Second)
		return m.pid != oldPID
	})
	return m
}

func (m *migrating) exited() bool {
	if !m.worker {
		return m.p.Exited()
	}
	return !alive(m.pid)
}

// alive is true for a process that exists and is not a zombie.
func alive(pid int) bool {
	st, err := readProcState(pid)
	return err == nil && st != "Z"
}

func (m *migrating) signal(sig syscall.Signal) int {
	m.t.Helper()
	if !m.worker {
		m.p.Cmd.Process.Signal(sig)
		return m.p.Wait(m.t, 30*time.Second)
	}
	return killPID(m.t, m.pid, sig, 30*time.Second)
}

func (m *migrating) wait(d time.Duration) int {
	m.t.Helper()
	if !m.worker {
		return m.p.Wait(m.t, d)
	}
	return clitest.ReapPID(m.t, m.pid, d)
}

func (m *migrating) log() string {
	if !m.worker {
		return m.p.Stderr.String()
	}
	return readLogDir(m.t, m.logDir)
}

// TestCrashKill9 kills the migrating process with SIGKILL at points spread
// over the run, then reruns on the same host: the rerun must recognise the
// dead holder (its .status names this host and a dead pid), take the lock
// well before the TTL would free it, and complete with exact data.
func TestCrashKill9(t *testing.T) {
	ci, long := 5, 20
	runs := 0
	scenario(t, "crash-kill9", ci, long, &runs)
	pg, consul := harness.StartPostgres(t), harness.StartConsul(t)
	env := clitest.New(t, pg, consul)
	records := seedJobs(t, env)
	addr := consul.Addr()

	for i, f := range killPoints(count(ci, long)) {
		worker := i%2 == 1
		name := fmt.Sprintf("point %d (%.2f, worker=%t)", i, f, worker)
		prefix := fmt.Sprintf("apcera/store3/crash%02d/", i)
		logDir := filepath.Join(env.Dir, "log", fmt.Sprintf("crash%02d", i))
		conf := env.WriteConf(clitest.Conf{Prefix: prefix, LogDir: logDir, Name: fmt.Sprintf("crash%02d.conf", i)})
		junk := 0
		if f < 0 {
			junk = 4000
			putJunk(t, consul, prefix, junk)
		}

		m := startMigrating(t, env, conf, logDir, "crash-host", worker, 0)
		if f < 0 {
			// During the wipe: the first leftover bucket is gone, the
			// last is not yet.
			first := fmt.Sprintf("%sjunk%05d/x", prefix, 0)
			clitest.Poll(t, 60*time.Second, name+": wipe started", func() bool { return m.exited() || rawGet(t, addr, "", first) == nil })
		} else {
			idx := min(int(f*float64(len(records))), len(records)-1)
			waitProgress(t, addr, "", prefix, "jobs", idx, 2*time.Minute, m.exited)
		}
		if m.exited() {
			t.Fatalf("%s: the migration ended before the kill:\n%s", name, m.log())
		}
		code := m.signal(syscall.SIGKILL)
		if code != -int(syscall.SIGKILL) {
			t.Errorf("%s: killed process exit %d, want -9", name, code)
		}
		kv, _ := clitest.RawKVAt(t, addr, "", prefix)
		left := 0
		for k := range kv {
			if strings.Contains(k, "/junk") {
				left++
			}
		}
		_, doneAtKill := kv[prefix+"migration/.done"]
		t.Logf("%s: killed pid %d with %d keys under the prefix (%d of %d leftovers, .done %t)", name, m.pid, len(kv), left, junk, doneAtKill)
		checkInvariant(t, env, prefix, records)

		re := startMigrating(t, env, conf, logDir, "crash-host", worker, m.pid)
		if code := re.wait(3 * time.Minute); code != 0 {
			t.Fatalf("%s: rerun exit %d:\n%s", name, code, re.log())
		}
		log := re.log()
		if at, ok := lineTime(log, startingLine, re.start); ok {
			took := at.Sub(re.start)
			t.Logf("%s: rerun started copying %v after it was started", name, took.Round(time.Millisecond))
			if took > acquireBound {
				t.Errorf("%s: rerun took %v to take the lock from the dead holder (bound %v): the dead pid on this host was not recognised\n%s", name, took, acquireBound, log)
			}
		} else if !doneAtKill {
			t.Errorf("%s: rerun logged no %q although .done was absent:\n%s", name, startingLine, log)
		}
		mustDone(t, env, prefix, records)
		runs++
	}
}

// TestCrashSIGTERM interrupts the migration: exit 6, .status failed with
// an error that says interrupted, the lock released at once (another host
// takes it within a short --lock-timeout), and that host completes.
func TestCrashSIGTERM(t *testing.T) {
	ci, long := 2, 6
	runs := 0
	scenario(t, "crash-sigterm", ci, long, &runs)
	pg, consul := harness.StartPostgres(t), harness.StartConsul(t)
	env := clitest.New(t, pg, consul)
	records := seedJobs(t, env)
	addr := consul.Addr()

	for i := range count(ci, long) {
		worker := i%2 == 1
		name := fmt.Sprintf("run %d (worker=%t)", i, worker)
		prefix := fmt.Sprintf("apcera/store3/term%02d/", i)
		logDir := filepath.Join(env.Dir, "log", fmt.Sprintf("term%02d", i))
		conf := env.WriteConf(clitest.Conf{Prefix: prefix, LogDir: logDir, Name: fmt.Sprintf("term%02d.conf", i)})
		m := startMigrating(t, env, conf, logDir, "term-host", worker, 0)
		frac := 0.2 + 0.6*float64(i)/float64(max(1, count(ci, long)-1))
		waitProgress(t, addr, "", prefix, "jobs", int(frac*float64(len(records))), 2*time.Minute, m.exited)
		if code := m.signal(syscall.SIGTERM); code != 6 {
			t.Errorf("%s: SIGTERM: exit %d, want 6\n%s", name, code, m.log())
		}
		if l := rawGet(t, addr, "", prefix+"migration/.lock"); l != nil && l.Session != "" {
			t.Errorf("%s: lock still held by session %s after exit 6", name, l.Session)
		}
		st := readStatus(t, addr, "", prefix)
		switch {
		case st == nil:
			t.Errorf("%s: no .status after SIGTERM", name)
		case st.State != "failed" || !strings.Contains(strings.ToLower(st.Error), "interrupt"):
			t.Errorf("%s: .status after SIGTERM: state %q error %q, want failed and interrupted", name, st.State, st.Error)
		}
		if checkInvariant(t, env, prefix, records) {
			t.Errorf("%s: .done written by an interrupted migration", name)
		}

		other := env.Run("migrate", "-f", conf, "--hostname", "other-host", "--lock-timeout", "3s")
		if other.Code != 0 {
			t.Fatalf("%s: another host could not take the released lock:\n%s", name, other)
		}
		mustDone(t, env, prefix, records)
		runs++
	}
}

// putJunk writes n keys in n buckets under prefix: the leftovers of an
// earlier failed attempt that the wipe must remove.
func putJunk(t testing.TB, c *harness.Consul, prefix string, n int) {
	t.Helper()
	kv := c.Client().KV()
	for i := 0; i < n; i += 64 {
		var ops api.KVTxnOps
		for j := i; j < min(n, i+64); j++ {
			ops = append(ops, &api.KVTxnOp{Verb: api.KVSet, Key: fmt.Sprintf("%sjunk%05d/x", prefix, j), Value: []byte("leftover")})
		}
		ok, resp, _, err := kv.Txn(ops, nil)
		if err != nil || !ok {
			t.Fatalf("put junk: ok=%t err=%v resp=%+v", ok, err, resp)
		}
	}
}
