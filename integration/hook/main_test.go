//go:build integration

// Package hook tests the Chef deploy hook end to end: `deployhook run`, the
// detached worker it starts, `deployhook wait`, and the commands the cookbook
// renders, against one real PostgreSQL and one real Consul shared by the
// package's tests (each test uses databases and prefixes of its own) and the
// Debian svlogd.
package hook

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apcera/deployhook/integration/clitest"
	"github.com/apcera/deployhook/integration/harness"
	"github.com/apcera/deployhook/migrate"
)

// The services every test of the package shares.
var (
	pg     *harness.Postgres
	consul *harness.Consul
)

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	code := clitest.RunShared(m, "hook", func(s *clitest.Shared) { pg, consul = s.PG, s.Consul })
	if d, n := runLatency(); n > 0 {
		fmt.Printf("deployhook run latency: median %v over %d invocations\n", d, n)
	}
	return code
}

// Every `run` the tests make, for the latency figure.
var (
	latencyMu sync.Mutex
	latencies []time.Duration
)

func recordLatency(d time.Duration) {
	latencyMu.Lock()
	latencies = append(latencies, d)
	latencyMu.Unlock()
}

func runLatency() (time.Duration, int) {
	latencyMu.Lock()
	defer latencyMu.Unlock()
	if len(latencies) == 0 {
		return 0, 0
	}
	ds := append([]time.Duration(nil), latencies...)
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[len(ds)/2], len(ds)
}

// newEnv returns the test's Env on the shared services, with a cleanup that
// waits for (and, past a deadline, kills) every worker the test started.
func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{Env: clitest.New(t, pg, consul), t: t}
	t.Cleanup(e.reapWorkers)
	return e
}

type env struct {
	*clitest.Env
	t       *testing.T
	mu      sync.Mutex
	logDirs []string
}

// names gives the test a store2 database and a store3 prefix per component
// that no other test uses.
var nameSeq struct {
	sync.Mutex
	n int
}

type names struct {
	DB, Prefix string
}

func (e *env) names(component string) names {
	nameSeq.Lock()
	nameSeq.n++
	n := nameSeq.n
	nameSeq.Unlock()
	short := strings.TrimSuffix(clitest.DatabaseOf(component), "db")
	return names{
		DB:     fmt.Sprintf("hook%d_%sdb", n, short),
		Prefix: fmt.Sprintf("hooktest/t%d/%sdb/", n, short),
	}
}

// conf writes c, remembering its log directory for the worker cleanup.
func (e *env) conf(c clitest.Conf) string {
	e.t.Helper()
	if c.LogDir == "" {
		comp := c.Component
		if comp == "" {
			comp = "job_manager"
		}
		c.LogDir = filepath.Join(e.Dir, "log", comp)
	}
	e.watch(c.LogDir)
	return e.WriteConf(c)
}

func (e *env) watch(logDir string) {
	e.mu.Lock()
	e.logDirs = append(e.logDirs, logDir)
	e.mu.Unlock()
}

// run runs `deployhook run ARGS` and records its latency.
func (e *env) run(want int, args ...string) clitest.Result {
	e.t.Helper()
	r := e.MustRun(want, append([]string{"run"}, args...)...)
	recordLatency(r.Took)
	return r
}

// reapWorkers waits for the workers started in the test's log directories
// to exit, so that none outlives its temporary directory, and kills (by pid)
// any still there after a minute.
func (e *env) reapWorkers() {
	e.mu.Lock()
	dirs := append([]string(nil), e.logDirs...)
	e.mu.Unlock()
	deadline := time.Now().Add(time.Minute)
	for _, d := range dirs {
		for {
			pid, ok := workerPid(d)
			if !ok || !alive(pid) {
				break
			}
			if time.Now().After(deadline) {
				e.t.Errorf("worker %d (log dir %s) still running at the end of the test: killing it", pid, d)
				killPid(pid)
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// seedBig loads n generated records into a fresh database.
func (e *env) seedBig(db string, n int) {
	e.t.Helper()
	ctx := context.Background()
	if err := pg.CreateComponentDB(ctx, db, "store2_records"); err != nil {
		e.t.Fatal(err)
	}
	if err := pg.SeedFunc(ctx, db, "store2_records", n, bigRecord); err != nil {
		e.t.Fatal(err)
	}
}

var bigBuckets = []string{"jobs", "routes", "packages", "policies"}

func bigRecord(i int) migrate.Record {
	return migrate.Record{
		Bucket:  bigBuckets[i%len(bigBuckets)],
		Key:     fmt.Sprintf("job::/sandbox/big::app-%07d", i),
		Version: int64(i%9 + 1),
		Data:    []byte(fmt.Sprintf(`{"n":%d,"pad":"%s"}`, i, strings.Repeat("y", 40))),
	}
}

func bigRecords(n int) []migrate.Record {
	recs := make([]migrate.Record, n)
	for i := range recs {
		recs[i] = bigRecord(i)
	}
	return recs
}
