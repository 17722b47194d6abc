//go:build integration

package migratecli

import (
	"bytes"
	"encoding/json"
	"errors"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/apcera/deployhook/integration/clitest"
	"github.com/apcera/deployhook/integration/harness"
)

// holdLock takes <prefix>migration/.lock with consul/api's Lock, as another
// deployhook would, and returns it held.
func holdLock(t *testing.T, e *env, prefix string) *api.Lock {
	t.Helper()
	lk, err := e.Consul.Client().LockOpts(&api.LockOptions{
		Key: prefix + "migration/.lock", SessionName: "test holder", SessionTTL: "10s", LockDelay: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	lost, err := lk.Lock(nil)
	if err != nil || lost == nil {
		t.Fatalf("take the lock: %v", err)
	}
	t.Cleanup(func() { lk.Unlock() })
	return lk
}

// sessionsNamed counts the sessions called name.
func sessionsNamed(t *testing.T, e *env, name string) int {
	t.Helper()
	ss, _, err := e.Consul.Client().Session().List(nil)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, s := range ss {
		if s.Name == name {
			n++
		}
	}
	return n
}

// Another process holds the lock: migrate waits for it; once the holder
// writes .done and releases, migrate finds .done and exits 0 without
// copying.
func TestLockHeldThenDone(t *testing.T) {
	t.Parallel()
	// A Consul of its own: the only sessions on it are the holder's and
	// those of the migrate under test.
	e := ownEnv(t, shared.PG, harness.StartConsul(t, harness.WithLogLevel("warn")))
	conf := e.conf("job_manager", "jm", recordsFor("jm", 50), clitest.Conf{Name: "wait.conf"})
	p := e.prefix("jm")
	lk := holdLock(t, e, p)

	cmd := e.Command("migrate", "-f", conf, "--hostname", "waiter")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			cmd.Process.Kill()
			<-exited
		}
	})
	// It is waiting once it has a session of its own trying for the lock.
	waitFor(t, 30*time.Second, "migrate to try for the lock", func() bool {
		select {
		case <-exited:
			t.Fatalf("migrate exited while the lock was held: %v\n%s", waitErr, stderr.String())
		default:
		}
		return sessionsNamed(t, e, "deployhook migration") > 0
	})
	// Still waiting a little later; and nothing copied meanwhile.
	select {
	case <-exited:
		t.Fatalf("migrate exited while the lock was held: %v\n%s", waitErr, stderr.String())
	case <-time.After(1500 * time.Millisecond): // long enough for another lock attempt
	}
	kv, _ := e.RawKV(p)
	if len(kv) != 1 {
		t.Fatalf("keys under %q while another process holds the lock: %q", p, keysOf(kv))
	}

	done, _ := json.Marshal(doneJSON{Component: "job_manager", Host: "holder", PID: 1, RecordsMigrated: 50, Digest: "sha256:" + strings.Repeat("0", 64), ToolVersion: "0.1.0"})
	e.put(p+"migration/.done", done, 0)
	if err := lk.Unlock(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		<-exited
		t.Fatalf("migrate still waiting 60s after the lock was released:\n%s", stderr.String())
	}
	r := clitest.Result{Args: cmd.Args[1:], Stdout: stdout.String(), Stderr: stderr.String()}
	var ee *exec.ExitError
	if errors.As(waitErr, &ee) {
		r.Code = ee.ExitCode()
	} else if waitErr != nil {
		t.Fatal(waitErr)
	}
	if r.Code != 0 {
		t.Errorf("want exit 0:\n%s", r)
	}
	mustLog(t, r, "INFO", regexp.QuoteMeta(alreadyDoneMsg(p)))
	if strings.Contains(r.Stderr, "Starting store2") {
		t.Errorf("copied after another process finished:\n%s", r)
	}
	kv, _ = e.RawKV(p)
	var d doneJSON
	if !getJSON(t, kv, p+"migration/.done", &d) || d.Host != "holder" {
		t.Errorf(".done rewritten: %+v", d)
	}
	for k := range kv {
		if !strings.HasPrefix(k, p+"migration/") {
			t.Errorf("record %q written after another process finished", k)
		}
	}
}

// With --lock-timeout, a held lock is exit 4.
func TestLockTimeout(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	conf := e.conf("job_manager", "jm", recordsFor("jm", 10), clitest.Conf{})
	p := e.prefix("jm")
	holdLock(t, e, p)
	r := e.MustRun(4, "migrate", "-f", conf, "--lock-timeout", "2s")
	if r.Took < 2*time.Second || r.Took > 20*time.Second {
		t.Errorf("gave up after %v, want about 2s", r.Took)
	}
	if !strings.Contains(r.Stderr, p+"migration/.lock") {
		t.Errorf("the message does not name the lock:\n%s", r)
	}
	kv, _ := e.RawKV(p)
	if len(kv) != 1 {
		t.Errorf("keys written without the lock: %q", keysOf(kv))
	}
}
