//go:build integration

package reliability

import (
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apcera/deployhook/integration/clitest"
	"github.com/apcera/deployhook/integration/harness"
	"github.com/apcera/deployhook/migrate"
)

// TestConcurrentRuns is a deploy on three central hosts at once, each with
// the three components, and Chef retrying: 27 `run` invocations started
// together, per-host log directories, then `wait`. Each component must be
// copied exactly once per round (one "Starting store2 -> store3
// migration..." line over every log directory), `wait` exits 0, and the
// invariant holds. Every round uses fresh prefixes and log directories.
func TestConcurrentRuns(t *testing.T) {
	ci, long := 10, 30
	runs := 0
	scenario(t, "concurrency-3x3x3", ci, long, &runs)
	pg, consul := harness.StartPostgres(t), harness.StartConsul(t)
	env := clitest.New(t, pg, consul)
	components := []string{"job_manager", "package_manager", "auth_server"}
	hosts := []string{"central-1", "central-2", "central-3"}
	records := map[string][]migrate.Record{}
	for i, c := range components {
		env.Seed(c, clitest.Records(300+100*i))
		records[c] = store2(t, env, clitest.DatabaseOf(c))
	}

	for round := range count(ci, long) {
		prefix := func(c string) string { return fmt.Sprintf("apcera/store3/round%02d/%s/", round, clitest.DatabaseOf(c)) }
		logDir := func(h, c string) string { return filepath.Join(env.Dir, "log", fmt.Sprintf("round%02d", round), h, c) }
		confs := map[string]map[string]string{}
		for _, h := range hosts {
			confs[h] = map[string]string{}
			for _, c := range components {
				confs[h][c] = env.WriteConf(clitest.Conf{Component: c, Prefix: prefix(c), LogDir: logDir(h, c),
					Name: fmt.Sprintf("round%02d-%s-%s.conf", round, h, c)})
			}
		}

		var wg sync.WaitGroup
		var mu sync.Mutex
		var failures []string
		start := make(chan struct{})
		for _, h := range hosts {
			for _, c := range components {
				for rep := range 3 {
					wg.Go(func() {
						cmd := env.Command("run", "-f", confs[h][c], "--hostname", h)
						<-start
						out, err := cmd.CombinedOutput()
						if err != nil {
							mu.Lock()
							failures = append(failures, fmt.Sprintf("%s %s #%d: %v\n%s", h, c, rep, err, out))
							mu.Unlock()
						}
					})
				}
			}
		}
		close(start)
		wg.Wait()
		for _, f := range failures {
			t.Errorf("round %d: run: %s", round, f)
		}

		w := env.Run("wait", "-f", confs["central-2"]["job_manager"], "-f", confs["central-2"]["package_manager"],
			"-f", confs["central-2"]["auth_server"], "--timeout", "3m")
		if w.Code != 0 {
			t.Errorf("round %d: wait: exit %d\n%s", round, w.Code, w)
		}
		clitest.WaitWorkersGone(t, 2*time.Minute)

		for _, c := range components {
			starts := 0
			var where []string
			for _, h := range hosts {
				k := strings.Count(readLogDir(t, logDir(h, c)), startingLine)
				starts += k
				if k > 0 {
					where = append(where, fmt.Sprintf("%s:%d", h, k))
				}
			}
			if starts != 1 {
				t.Errorf("round %d: %s copied %d times (%v), want exactly once", round, c, starts, where)
			}
			mustDone(t, env, prefix(c), records[c])
		}
		runs++
	}
}
