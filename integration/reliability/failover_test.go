//go:build integration

package reliability

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/apcera/deployhook/integration/clitest"
	"github.com/apcera/deployhook/integration/harness"
)

// TestConsulFailover kills the Consul leader (SIGKILL) mid-migration. The
// conf points at a follower that is not killed: the client talks to one
// agent, and killing that agent would leave it nothing to talk to, which
// is an outage, not a failover. The migration completes, or fails cleanly
// (no .done) and a rerun completes; either way with exact data.
func TestConsulFailover(t *testing.T) {
	ci, long := 2, 6
	runs := 0
	scenario(t, "consul-failover", ci, long, &runs)
	pg := harness.StartPostgres(t)
	cl := harness.StartConsulCluster(t, 3)
	env := clitest.New(t, pg, nil)
	records := seedJobs(t, env)

	for i := range count(ci, long) {
		leader, follower := clitest.LeaderAndFollower(t, cl)
		frac := 0.2 + 0.6*float64(i)/float64(max(1, count(ci, long)-1))
		name := fmt.Sprintf("run %d (leader %s killed at %.2f, conf -> %s)", i, leader.Name, frac, follower.Name)
		prefix := fmt.Sprintf("apcera/store3/failover%02d/", i)
		conf := env.WriteConf(clitest.Conf{Prefix: prefix, Address: follower.Addr(), Name: fmt.Sprintf("failover%02d.conf", i)})
		p := clitest.StartProc(t, env, "migrate", "-f", conf, "--hostname", "failover-host")
		key := clitest.ExpectedKey(prefix, "jobs", seqKey(int(frac*float64(len(records)))))
		clitest.Poll(t, 2*time.Minute, name+": progress", func() bool {
			present, _ := tryGet(follower.Addr(), key)
			return present || p.Exited()
		})
		if p.Exited() {
			t.Fatalf("%s: migration ended before the leader was killed:\n%s", name, p)
		}
		if err := leader.Kill(); err != nil {
			t.Fatal(err)
		}
		code := p.Wait(t, 4*time.Minute)
		t.Logf("%s: migrate exit %d", name, code)
		if code != 0 {
			if checkInvariantAt(t, follower.Addr(), "", prefix, records) {
				t.Errorf("%s: exit %d yet .done present", name, code)
			}
			t.Logf("%s: failed cleanly (exit %d); rerunning:\n%s", name, code, p.Stderr.String())
			if r := env.Run("migrate", "-f", conf, "--hostname", "failover-host"); r.Code != 0 {
				t.Fatalf("%s: rerun after failover:\n%s", name, r)
			}
		}
		if !checkInvariantAt(t, follower.Addr(), "", prefix, records) {
			t.Errorf("%s: no .done after the migration completed", name)
		}
		if err := leader.Restart(); err != nil {
			t.Fatal(err)
		}
		// A restarted server rejoins as a non-voter until autopilot finds
		// it stable: killing the next leader before it votes again would
		// leave no quorum, an outage rather than a failover.
		clitest.Poll(t, 90*time.Second, "three healthy voters", func() bool { return threeVoters(follower.Addr()) })
		runs++
	}
}

// threeVoters asks autopilot whether all three servers are healthy voters.
func threeVoters(addr string) bool {
	resp, err := http.Get("http://" + addr + "/v1/operator/autopilot/health")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var h struct {
		Healthy bool
		Servers []struct {
			Name    string
			Healthy bool
			Voter   bool
		}
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&h) != nil || !h.Healthy || len(h.Servers) != 3 {
		return false
	}
	for _, s := range h.Servers {
		if !s.Healthy || !s.Voter {
			return false
		}
	}
	return true
}
