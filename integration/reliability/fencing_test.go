//go:build integration

package reliability

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/apcera/deployhook/integration/clitest"
	"github.com/apcera/deployhook/integration/harness"
)

// TestLockLossFencing destroys the migrator's session mid-run, as an
// operator or a TTL expiry would. From that moment not one key under the
// prefix may change: every write transaction is fenced by check-session.
// The destroy releases the lock key, so the lock key's ModifyIndex right
// after it is the destroy's raft index; a transaction in flight that
// committed before the destroy has a lower one. The process must exit 5
// (lost lock), and a second process then completes.
func TestLockLossFencing(t *testing.T) {
	ci, long := 2, 10
	runs := 0
	scenario(t, "lock-loss-fencing", ci, long, &runs)
	pg, consul := harness.StartPostgres(t), harness.StartConsul(t)
	env := clitest.New(t, pg, consul)
	records := seedJobs(t, env)
	addr := consul.Addr()

	for i := range count(ci, long) {
		frac := 0.2 + 0.7*float64(i)/float64(max(1, count(ci, long)-1))
		name := fmt.Sprintf("run %d (at %.2f)", i, frac)
		prefix := fmt.Sprintf("apcera/store3/fence%02d/", i)
		conf := env.WriteConf(clitest.Conf{Prefix: prefix, Name: fmt.Sprintf("fence%02d.conf", i)})
		p := clitest.StartProc(t, env, "migrate", "-f", conf, "--hostname", "fenced-host")
		waitProgress(t, addr, "", prefix, "jobs", int(frac*float64(len(records))), 2*time.Minute, p.Exited)
		if p.Exited() {
			t.Fatalf("%s: migration ended before the session was destroyed:\n%s", name, p)
		}

		lockKey := prefix + "migration/.lock"
		l := rawGet(t, addr, "", lockKey)
		if l == nil || l.Session == "" {
			t.Fatalf("%s: lock key %q not held mid-run: %+v", name, lockKey, l)
		}
		resp, body := clitest.ConsulRequest(t, "PUT", addr, "", "/v1/session/destroy/"+l.Session, nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: destroy session: %s: %s", name, resp.Status, body)
		}
		after := rawGet(t, addr, "", lockKey)
		if after == nil || after.Session != "" {
			t.Fatalf("%s: lock key still held after destroying its session: %+v", name, after)
		}
		destroyIndex := after.ModifyIndex
		atDestroy, _ := clitest.RawKVAt(t, addr, "", prefix)

		if code := p.Wait(t, 2*time.Minute); code != 5 {
			t.Errorf("%s: migrate after losing its lock: exit %d, want 5\n%s", name, code, p)
		}
		final, index := clitest.RawKVAt(t, addr, "", prefix)
		late := 0
		for k, v := range final {
			if v.ModifyIndex > destroyIndex {
				late++
				if late <= 10 {
					t.Errorf("%s: FENCE BROKEN: key %q written at index %d, after the session was destroyed at %d", name, k, v.ModifyIndex, destroyIndex)
				}
			}
		}
		for k := range atDestroy {
			if _, ok := final[k]; !ok {
				late++
				t.Errorf("%s: FENCE BROKEN: key %q deleted after the session was destroyed", name, k)
			}
		}
		t.Logf("%s: %d keys at the destroy (index %d), %d at exit (index %d), %d written or deleted after it",
			name, len(atDestroy), destroyIndex, len(final), index, late)
		if checkInvariant(t, env, prefix, records) {
			t.Errorf("%s: .done present although the migrator lost its lock", name)
		}

		second := env.Run("migrate", "-f", conf, "--hostname", "second-host", "--lock-timeout", "30s")
		if second.Code != 0 {
			t.Fatalf("%s: second process after the lost lock:\n%s", name, second)
		}
		mustDone(t, env, prefix, records)
		runs++
	}
}
