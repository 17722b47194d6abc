//go:build integration

// Package reliability is the "prove it survives" suite: the real deployhook
// binary against real PostgreSQL and Consul processes on loopback, with
// crashes, failovers, lost locks, PostgreSQL trouble, concurrency, hostile
// input and secrets. Every scenario ends with an independent check: Consul's
// raw HTTP API and SQL through pgx, never the code under test.
//
// CI runs the bounded sizes; SOAK=1 (make soak) runs the long ones. Each
// scenario logs one machine-readable line
//
//	RELIABILITY scenario="crash-kill9" runs=5 ci_runs=5 soak_runs=20 result=pass
//
// which cmd/report turns into docs/RELIABILITY.md.
package reliability

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/apcera/deployhook/integration/clitest"
	"github.com/apcera/deployhook/migrate"
)

// count picks the CI or the SOAK=1 number of runs (clitest.Count).
var count = clitest.Count

var (
	summaryMu sync.Mutex
	summary   []string
)

func TestMain(m *testing.M) {
	// Workers that `run` detaches are re-parented to us rather than to a
	// PID 1 that may never reap them (this container's does not): a
	// zombie passes kill(pid, 0), so an unreaped crashed worker would look
	// alive to the dead-holder check. A real init reaps; so do we
	// (clitest.ReapWorkers).
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		fmt.Fprintf(os.Stderr, "prctl(PR_SET_CHILD_SUBREAPER): %v\n", err)
		os.Exit(1)
	}
	code := m.Run()
	clitest.ReapWorkers()
	summaryMu.Lock()
	for _, s := range summary {
		fmt.Println("SUMMARY " + s)
	}
	summaryMu.Unlock()
	os.Exit(code)
}

// scenario registers the RELIABILITY line of a test, logged when it ends
// with its result and kept for the SUMMARY lines. *runs is what actually ran.
func scenario(t *testing.T, name string, ci, long int, runs *int) {
	clitest.Scenario(t, name, ci, long, runs, func(line string) {
		summaryMu.Lock()
		summary = append(summary, fmt.Sprintf("%s %s", t.Name(), line))
		summaryMu.Unlock()
	})
}

// ---- independent reads of store3 (Consul's raw HTTP API) ----

// kvPair is a key as Consul's HTTP API returns it.
type kvPair = clitest.RawPair

// rawGet reads one key; nil when absent.
func rawGet(t testing.TB, addr, token, key string) *kvPair {
	t.Helper()
	resp, body := clitest.ConsulRequest(t, "GET", addr, token, "/v1/kv/"+clitest.PathEscape(key), nil)
	if resp.StatusCode == http.StatusNotFound {
		return nil
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("get %q: %s: %s", key, resp.Status, body)
	}
	var pairs []struct {
		Key         string
		Value       []byte
		Flags       uint64
		ModifyIndex uint64
		Session     string
	}
	if err := json.Unmarshal(body, &pairs); err != nil || len(pairs) != 1 {
		t.Fatalf("decode get %q: %v (%d pairs)", key, err, len(pairs))
	}
	p := pairs[0]
	return &kvPair{Key: p.Key, Value: p.Value, Flags: p.Flags, ModifyIndex: p.ModifyIndex, Session: p.Session}
}

// rawStatus decodes .status as JSON of its own (not the product's types).
type rawStatusDoc struct {
	State        string `json:"state"`
	Host         string `json:"host"`
	PID          int    `json:"pid"`
	Session      string `json:"session"`
	RecordsDone  int64  `json:"records_done"`
	RecordsTotal int64  `json:"records_total"`
	Error        string `json:"error"`
	Finished     string `json:"finished"`
	Failed       []struct {
		Bucket, Key, Reason string
	} `json:"failed_records"`
}

func readStatus(t testing.TB, addr, token, prefix string) *rawStatusDoc {
	t.Helper()
	p := rawGet(t, addr, token, prefix+"migration/.status")
	if p == nil {
		return nil
	}
	var s rawStatusDoc
	if err := json.Unmarshal(p.Value, &s); err != nil {
		t.Fatalf(".status does not decode: %v: %q", err, p.Value)
	}
	return &s
}

// ---- independent reads of store2 (SQL through pgx) ----

// store2 reads every record of db's store2_records in byte order.
func store2(t testing.TB, env *clitest.Env, db string) []migrate.Record {
	t.Helper()
	return clitest.ReadStore2(t, env.PG, db, "store2_records")
}

// ---- the invariant ----

// checkInvariant is the suite's one verdict on store3 under prefix: either
// .done is absent, or store3 equals records exactly (every key by the
// escaping of DESIGN.md, value byte for byte, version in Flags, no other
// key outside migration/) and .done counts and digests exactly them.
// Callers pass what store2 held (store2 reads it through SQL) or the
// snapshot they know. It returns whether .done is present.
func checkInvariant(t testing.TB, env *clitest.Env, prefix string, records []migrate.Record) bool {
	t.Helper()
	return checkInvariantAt(t, env.Consul.Addr(), env.Token, prefix, records)
}

func checkInvariantAt(t testing.TB, addr, token, prefix string, records []migrate.Record) bool {
	t.Helper()
	got, _ := clitest.RawKVAt(t, addr, token, prefix)
	done, ok := got[prefix+"migration/.done"]
	if !ok {
		return false
	}
	var doc struct {
		RecordsMigrated int64  `json:"records_migrated"`
		RecordsFailed   int64  `json:"records_failed"`
		Digest          string `json:"digest"`
	}
	if err := json.Unmarshal(done.Value, &doc); err != nil {
		t.Errorf("INVARIANT: %s: .done does not decode: %v", prefix, err)
	}
	bad := 0
	fail := func(format string, args ...any) {
		bad++
		if bad <= 20 {
			t.Errorf("INVARIANT: %s: .done present over wrong data: "+format, append([]any{prefix}, args...)...)
		}
	}
	want := make(map[string]bool, len(records))
	for _, r := range records {
		k := clitest.ExpectedKey(prefix, r.Bucket, r.Key)
		want[k] = true
		p, ok := got[k]
		switch {
		case !ok:
			fail("record bucket %q key %q missing (key %q)", r.Bucket, r.Key, k)
		case !bytes.Equal(p.Value, r.Data):
			fail("record %q: %d bytes in store3, want %d (%.40q vs %.40q)", k, len(p.Value), len(r.Data), p.Value, r.Data)
		case p.Flags != uint64(r.Version):
			fail("record %q: flags %d, want version %d", k, p.Flags, r.Version)
		}
	}
	for k := range got {
		if !want[k] && !strings.HasPrefix(k, prefix+"migration/") {
			fail("unexpected key %q", k)
		}
	}
	if doc.RecordsMigrated != int64(len(records)) || doc.RecordsFailed != 0 {
		fail(".done says %d migrated, %d failed; store2 has %d", doc.RecordsMigrated, doc.RecordsFailed, len(records))
	}
	if d := clitest.Digest(records); doc.Digest != d {
		fail(".done digest %s, want %s", doc.Digest, d)
	}
	if bad > 20 {
		t.Errorf("INVARIANT: %s: %d problems in all", prefix, bad)
	}
	return true
}

// mustDone is checkInvariant plus: .done must be there.
func mustDone(t testing.TB, env *clitest.Env, prefix string, records []migrate.Record) {
	t.Helper()
	if !checkInvariant(t, env, prefix, records) {
		t.Errorf("%s: no .done after a run that should have completed", prefix)
	}
}

// ---- processes ----

// killPID sends sig to a process that is not our exec.Cmd (a detached
// worker, re-parented to us by PR_SET_CHILD_SUBREAPER) and reaps it,
// returning its exit code (-signal when killed by one).
func killPID(t testing.TB, pid int, sig syscall.Signal, within time.Duration) int {
	t.Helper()
	if err := syscall.Kill(pid, sig); err != nil {
		t.Fatalf("kill %d: %v", pid, err)
	}
	return clitest.ReapPID(t, pid, within)
}

// workerPID polls the worker's pid file in logDir.
func workerPID(t testing.TB, logDir string, within time.Duration) int {
	t.Helper()
	var pid int
	clitest.Poll(t, within, "worker pid file in "+logDir, func() bool {
		b, err := os.ReadFile(filepath.Join(logDir, "deployhook.pid"))
		if err != nil {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil && pid > 0
	})
	return pid
}

// ---- logs ----

var logTime = regexp.MustCompile(`^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ [+-]\d{4} UTC) \[`)

// lineTime returns the time of the first log line containing s and
// logged at or after since (a log directory holds earlier runs too).
func lineTime(log, s string, since time.Time) (time.Time, bool) {
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if !strings.Contains(sc.Text(), s) {
			continue
		}
		m := logTime.FindStringSubmatch(sc.Text())
		if m == nil {
			return time.Time{}, false
		}
		tm, err := time.Parse("2006-01-02 15:04:05.999999999 -0700 MST", m[1])
		if err != nil || tm.Before(since) {
			continue
		}
		return tm, true
	}
	return time.Time{}, false
}

// readLogDir returns every file of a runit log directory (current and the
// rotated ones), concatenated.
func readLogDir(t testing.TB, dir string) string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		return ""
	}
	var names []string
	for _, e := range ents {
		if e.Name() == "current" || strings.HasPrefix(e.Name(), "@") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		c, err := os.ReadFile(filepath.Join(dir, n))
		if err == nil {
			b.Write(c)
		}
	}
	return b.String()
}

const startingLine = "Starting store2 -> store3 migration..."

// seqRecords are n records of one bucket whose keys sort in index order,
// so that progress shows as "key i exists".
func seqRecords(bucket string, n int) func(i int) migrate.Record {
	return func(i int) migrate.Record {
		return migrate.Record{
			Bucket:  bucket,
			Key:     seqKey(i),
			Version: int64(i%97 + 1),
			Data:    []byte(fmt.Sprintf(`{"i":%d,"pad":"%s"}`, i, strings.Repeat("p", 40+i%60))),
		}
	}
}

func seqKey(i int) string { return fmt.Sprintf("k%07d::/app é", i) }

func genAll(n int, gen func(int) migrate.Record) []migrate.Record {
	out := make([]migrate.Record, n)
	for i := range out {
		out[i] = gen(i)
	}
	return out
}

// seedGen creates db with n records of gen (COPY) and returns them.
func seedGen(t testing.TB, env *clitest.Env, db string, n int, gen func(int) migrate.Record) []migrate.Record {
	t.Helper()
	ctx := context.Background()
	if err := env.PG.CreateComponentDB(ctx, db, "store2_records"); err != nil {
		t.Fatal(err)
	}
	if err := env.PG.SeedFunc(ctx, db, "store2_records", n, gen); err != nil {
		t.Fatal(err)
	}
	return genAll(n, gen)
}

// waitProgress waits until the record of index i (of seqRecords) is in
// store3 under prefix, or stop reports true.
func waitProgress(t testing.TB, addr, token, prefix, bucket string, i int, within time.Duration, stop func() bool) {
	t.Helper()
	key := clitest.ExpectedKey(prefix, bucket, seqKey(i))
	clitest.Poll(t, within, fmt.Sprintf("record %d in store3", i), func() bool {
		return stop() || rawGet(t, addr, token, key) != nil
	})
}

// readProcState returns the state letter of /proc/<pid>/stat.
func readProcState(pid int) (string, error) {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", err
	}
	s := string(st)
	i := strings.LastIndexByte(s, ')')
	f := strings.Fields(s[i+1:])
	if i < 0 || len(f) == 0 {
		return "", fmt.Errorf("pid %d: bad stat %q", pid, s)
	}
	return f[0], nil
}

// tryGet is rawGet for a cluster in trouble: any failure is "not there
// yet" (ok false) rather than a test failure.
func tryGet(addr, key string) (present, ok bool) {
	resp, err := http.Get("http://" + addr + "/v1/kv/" + clitest.PathEscape(key))
	if err != nil {
		return false, false
	}
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		return true, true
	case http.StatusNotFound:
		return false, true
	}
	return false, false
}

// seedJobs seeds jmdb with the scenario-sized run of generated job records
// (50,000 in CI, 100,000 under SOAK) and returns them as store2 holds them.
func seedJobs(t *testing.T, env *clitest.Env) []migrate.Record {
	t.Helper()
	n := count(50000, 100000)
	seedGen(t, env, "jmdb", n, seqRecords("jobs", n))
	return store2(t, env, "jmdb")
}
