package migrate_test

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apcera/deployhook/migrate"
	"github.com/apcera/deployhook/migrate/memkv"
)

// The tests of what the operator reads: the lock wait, the took clock, the
// progress start, the wipe count, and the dry run's wipe preview and
// session probe.

// leftovers are the keys an earlier attempt left: five that step 5 wipes,
// and one under migration/ that it keeps.
func putLeftovers(kv *memkv.Store) {
	for _, k := range []string{prefix + "jobs/stale", prefix + "old/a/b", prefix + "leaf", prefix, prefix + "migration", prefix + "migration/keep"} {
		kv.Put(k, []byte("x"), 0)
	}
}

func TestRunLogsWipeCount(t *testing.T) {
	e := newEnv(t, records()[:10])
	if _, err := e.m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if hasLine(e.log, "Wiped ") {
		t.Error("a first run with nothing to wipe logged a Wiped line")
	}

	e = newEnv(t, records()[:10])
	putLeftovers(e.kv)
	if _, err := e.m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.log.find(t, `Wiped 5 keys under "apcera/store3/jmdb/" left by an earlier attempt`)
}

func hasLine(l *logger, text string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.ContainsFunc(l.lines, func(x logLine) bool { return strings.HasPrefix(x.text, text) })
}

// A process that waited for the lock says for how long and for whom, and
// its took counts from "Starting", not from the wait; the progress starts
// with the copy.
func TestRunLockWaitIsItsOwnLine(t *testing.T) {
	const hold = time.Second
	e := newEnv(t, records()[:5])
	ctx := context.Background()
	held, err := e.kv.TryLock(ctx, migrate.LockKey(prefix), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	e.kv.Put(migrate.StatusKey(prefix), []byte(fmt.Sprintf(`{"state":"running","host":"central-2","pid":777,"session":%q}`, held.Session())), 0)
	var mu sync.Mutex
	var progress []int64
	e.m.Opts.Progress = func(done, total int64) {
		mu.Lock()
		defer mu.Unlock()
		progress = append(progress, done)
	}
	released := make(chan struct{})
	go func() {
		defer close(released)
		for !hasLine(e.log, "Waiting for lock") {
			time.Sleep(5 * time.Millisecond) // polling the log of the run under test
		}
		time.Sleep(hold) // the wait being measured
		held.Unlock(ctx)
	}()
	res, err := e.m.Run(ctx)
	<-released
	if err != nil {
		t.Fatal(err)
	}
	line := e.log.find(t, "Waited ")
	m := regexp.MustCompile(`^Waited (\S+) for the lock held by central-2 \(pid 777\)$`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("line %q", line)
	}
	waited, err := time.ParseDuration(m[1])
	if err != nil || waited < hold {
		t.Errorf("waited %v (%v), want at least the %v the lock was held", waited, err, hold)
	}
	if res.Took >= hold {
		t.Errorf("took %v includes the lock wait of %v", res.Took, hold)
	}
	if len(progress) == 0 || progress[0] != 0 {
		t.Errorf("progress %v does not start at 0 with the copy", progress)
	}
	order := []string{}
	for _, x := range e.log.lines {
		for _, p := range []string{"Waiting for lock", "Waited ", "Starting store2", "Migrated store2"} {
			if strings.HasPrefix(x.text, p) {
				order = append(order, p)
			}
		}
	}
	if want := []string{"Waiting for lock", "Waited ", "Starting store2", "Migrated store2"}; !slices.Equal(order, want) {
		t.Errorf("lines in order %q, want %q", order, want)
	}
}

// noSessions is a Locker whose token may not create sessions.
type noSessions struct{ *memkv.Store }

func (noSessions) ProbeSession(context.Context) (bool, string, error) {
	return false, "denied by the test", nil
}

func TestDryRunWipePreviewAndSessionProbe(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, records()[:10])
	putLeftovers(e.kv)
	rep, err := e.m.DryRun(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantFirst := []string{prefix, prefix + "jobs/stale", prefix + "leaf", prefix + "migration", prefix + "old/a/b"}
	if rep.Wipe.Keys != 5 || !slices.Equal(rep.Wipe.First, wantFirst) {
		t.Errorf("wipe preview %+v, want 5 keys %q", rep.Wipe, wantFirst)
	}
	if !rep.SessionOK {
		t.Errorf("a locker that cannot probe failed the dry run: %q", rep.SessionReason)
	}
	for _, k := range wantFirst {
		if p, _ := e.kv.Get(ctx, k); p == nil {
			t.Errorf("the dry run deleted %q", k)
		}
	}

	e.m.Locker = noSessions{e.kv}
	rep, err = e.m.DryRun(ctx)
	if !errors.Is(err, migrate.ErrDryRunFailed) || !errors.Is(err, migrate.ErrPermissionDenied) || rep.SessionOK || rep.SessionReason != "denied by the test" {
		t.Errorf("error %v, session ok %t %q", err, rep.SessionOK, rep.SessionReason)
	}
}
