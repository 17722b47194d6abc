//go:build integration

package hook

import (
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/apcera/deployhook/integration/clitest"
	"github.com/apcera/deployhook/migrate"
)

var components = []string{"job_manager", "package_manager", "auth_server"}

// Two central hosts run the hook for the three components at the same time,
// as a deploy does: each component is migrated once, by one host; the other
// host's worker finds it done; each worker logs, in the platform format, to
// its own host's log directory.
func TestTwoHostsThreeComponents(t *testing.T) {
	e := newEnv(t)
	hosts := []string{"central-1", "central-2"}
	type comp struct {
		name  string
		n     names
		recs  []migrate.Record
		confs map[string]string // by host
		logs  map[string]string // log dir by host
	}
	var comps []*comp
	for i, name := range components {
		c := &comp{name: name, n: e.names(name), recs: clitest.Records(3000 + 1000*i),
			confs: map[string]string{}, logs: map[string]string{}}
		e.SeedDB(c.n.DB, c.recs)
		for _, h := range hosts {
			c.logs[h] = filepath.Join(e.Dir, "log", h, "continuum-"+strings.ReplaceAll(name, "_", "-")+"-migration")
			c.confs[h] = e.conf(clitest.Conf{Component: name, Database: c.n.DB, Prefix: c.n.Prefix,
				LogDir: c.logs[h], Name: h + "-" + name + ".conf"})
		}
		comps = append(comps, c)
	}

	type result struct {
		r   clitest.Result
		err error
	}
	results := map[string]*result{} // host/component
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, h := range hosts {
		for _, c := range comps {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r, err := e.Try("run", "-f", c.confs[h], "--hostname", h)
				mu.Lock()
				results[h+"/"+c.name] = &result{r, err}
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	for k, res := range results {
		if res.err != nil {
			t.Fatalf("%s: %v", k, res.err)
		}
		recordLatency(res.r.Took)
		if res.r.Code != 0 {
			t.Errorf("%s: want exit 0:\n%s", k, res.r)
		}
	}

	args := []string{"wait"}
	for _, c := range comps {
		args = append(args, "-f", c.confs["central-2"])
	}
	w := e.MustRun(0, append(args, "--timeout", "2m")...)
	for _, c := range comps {
		if !strings.Contains(w.Stdout, c.name+": done: migrated by central-") {
			t.Errorf("wait does not report %s done:\n%s", c.name, w)
		}
		e.AssertMigrated(c.n.Prefix, c.recs)
	}

	for _, c := range comps {
		for _, h := range hosts {
			waitWorkerExit(t, c.logs[h])
		}
	}
	for _, c := range comps {
		_, done := e.status(c.n.Prefix)
		if done == nil {
			t.Fatalf("%s: no .done", c.name)
		}
		already := fmt.Sprintf("Migration has already been performed (key %q exists)", c.n.Prefix+"migration/.done")
		starts := map[string]int{}
		for _, h := range hosts {
			run := results[h+"/"+c.name].r
			startedPid, started := pidIn(startedRE, run.Stderr)
			lines := readLog(t, c.logs[h])
			if !started {
				// run itself found .done: no worker, and no log written.
				t.Logf("%s on %s: run found the migration done and started no worker", c.name, h)
				if !strings.Contains(run.Stderr, already) {
					t.Errorf("%s on %s: run neither started a worker nor found the migration done:\n%s", c.name, h, run)
				}
				if len(lines) > 0 {
					t.Errorf("%s on %s: no worker started, yet its log dir has lines:\n%s", c.name, h, strings.Join(lines, "\n"))
				}
				continue
			}
			var sawAlready bool
			for _, l := range lines {
				p, ok := parseLine(l)
				if !ok {
					t.Errorf("%s on %s: log line not in the platform format: %q", c.name, h, l)
					continue
				}
				if p.Pid != startedPid {
					t.Errorf("%s on %s: log line of pid %d in the log dir of worker %d: %q", c.name, h, p.Pid, startedPid, l)
				}
				switch p.Msg {
				case "Starting store2 -> store3 migration...":
					starts[h]++
					checkSource(t, p, l)
				case already:
					sawAlready = true
					checkSource(t, p, l)
				}
				if strings.HasPrefix(p.Msg, "Migrated store2 -> store3 (took: ") {
					want := fmt.Sprintf(", records migrated: %d, records failed: 0)", len(c.recs))
					if !strings.HasSuffix(p.Msg, want) {
						t.Errorf("%s on %s: %q, want it to end %q", c.name, h, p.Msg, want)
					}
					checkSource(t, p, l)
					if h != done.Host || p.Pid != done.PID {
						t.Errorf("%s: %s (pid %d) logged Migrated, but .done names %s (pid %d)", c.name, h, p.Pid, done.Host, done.PID)
					}
				}
			}
			if h != done.Host {
				t.Logf("%s on %s: worker %d found the migration done: %t", c.name, h, startedPid, sawAlready)
			}
			if h != done.Host && !sawAlready {
				t.Errorf("%s: the worker on %s (which did not migrate) did not log %q:\n%s", c.name, h, already, strings.Join(lines, "\n"))
			}
		}
		total := starts["central-1"] + starts["central-2"]
		if total != 1 || starts[done.Host] != 1 {
			t.Errorf("%s: \"Starting\" lines per host %v, want exactly one, on %s (.done's host)", c.name, starts, done.Host)
		}
	}
}

func checkSource(t *testing.T, p parsedLine, line string) {
	t.Helper()
	if !strings.HasPrefix(p.Source, "migrator.go:") || p.Level != "INFO" {
		t.Errorf("want level INFO and source migrator.go:N: %q", line)
	}
}

// Both hosts deploy a component with a record store3 cannot hold: one host
// tries and fails; the other, which waited on the lock meanwhile, reports
// that failure without trying again (DESIGN.md step 3); wait exits 5.
func TestFailingRecordTwoHosts(t *testing.T) {
	e := newEnv(t)
	n := e.names("package_manager")
	recs := clitest.Records(20000)
	recs = append(recs, migrate.Record{Bucket: "migration", Key: "reserved", Version: 1, Data: []byte("x")})
	e.SeedDB(n.DB, recs)
	hosts := []string{"central-1", "central-2"}
	confs, logs := map[string]string{}, map[string]string{}
	for _, h := range hosts {
		logs[h] = filepath.Join(e.Dir, "log", h, "pm")
		confs[h] = e.conf(clitest.Conf{Component: "package_manager", Database: n.DB, Prefix: n.Prefix,
			LogDir: logs[h], Name: h + ".conf"})
	}
	var wg sync.WaitGroup
	res := make([]clitest.Result, len(hosts))
	errs := make([]error, len(hosts))
	for i, h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i], errs[i] = e.Try("run", "-f", confs[h], "--hostname", h)
		}()
	}
	wg.Wait()
	for i := range hosts {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		recordLatency(res[i].Took)
		if _, ok := pidIn(startedRE, res[i].Stderr); res[i].Code != 0 || !ok {
			t.Fatalf("want a started worker:\n%s", res[i])
		}
	}
	w := e.MustRun(5, "wait", "-f", confs["central-2"], "--timeout", "2m")
	if !strings.Contains(w.Stdout, `failed record: bucket "migration" key "reserved"`) {
		t.Errorf("wait does not name the record:\n%s", w)
	}
	starts := 0
	for _, h := range hosts {
		waitWorkerExit(t, logs[h])
		lines := readLog(t, logs[h])
		for _, l := range lines {
			if strings.HasSuffix(l, "] Starting store2 -> store3 migration...") {
				starts++
			}
		}
		t.Logf("%s:\n%s", h, strings.Join(lines, "\n"))
	}
	if starts != 1 {
		t.Errorf("%d attempts across the hosts, want 1: the host that waited on the lock must report the other's failure, not try again", starts)
	}
}
