//go:build integration

// Package migratecli tests `deployhook migrate`, `status` and `verify`, the
// real binary, against real PostgreSQL and Consul servers. Every check of
// store3 goes through clitest's raw HTTP reads and this package's raw HTTP
// writes, never through the code under test.
//
// One PostgreSQL and one Consul serve the whole package: each test takes its
// own databases and its own store3 prefixes. Tests that need a Consul
// configured otherwise (ACLs, limits) or that could harm others' data start
// their own.
package migratecli

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apcera/deployhook/integration/clitest"
	"github.com/apcera/deployhook/integration/harness"
	"github.com/apcera/deployhook/migrate"
)

// shared is the PostgreSQL and the Consul every test of the package shares.
var shared *clitest.Shared

func TestMain(m *testing.M) {
	os.Exit(clitest.RunShared(m, "migratecli", func(s *clitest.Shared) { shared = s }, harness.WithLogLevel("warn")))
}

// env is a test's view of the shared servers, with a name that keeps its
// databases and prefixes apart from every other test's.
type env struct {
	*clitest.Env
	name string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return &env{Env: clitest.New(t, shared.PG, shared.Consul), name: clitest.SafeName(t.Name())}
}

// ownEnv is an env on servers of the test's own.
func ownEnv(t *testing.T, pg *harness.Postgres, c *harness.Consul) *env {
	t.Helper()
	return &env{Env: clitest.New(t, pg, c), name: clitest.SafeName(t.Name())}
}

// db is the test's store2 database for a component ("jm", "pm", "as").
func (e *env) db(short string) string { return "t_" + e.name + "_" + short }

// prefix is the test's store3 prefix for a component.
func (e *env) prefix(short string) string { return "t/" + e.name + "/" + short + "db/" }

var components = []struct{ name, short string }{
	{"job_manager", "jm"}, {"package_manager", "pm"}, {"auth_server", "as"},
}

// conf seeds records into the test's database for short and writes a conf
// for it pointing at the test's prefix.
func (e *env) conf(component, short string, recs []migrate.Record, c clitest.Conf) string {
	e.T.Helper()
	if recs != nil {
		e.SeedDB(e.db(short), recs)
	}
	c.Component = component
	if c.Database == "" {
		c.Database = e.db(short)
	}
	if c.Prefix == "" {
		c.Prefix = e.prefix(short)
	}
	if c.Name == "" {
		c.Name = short + ".conf"
	}
	return e.WriteConf(c)
}

// logRE matches one line of the platform's log format (DESIGN.md "Logs").
var logRE = regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ \+0000 UTC \[(INFO |WARN |ERROR|DEBUG) pid=(\d+) requestid='' source='([a-z_]+\.go):\d+'\] (.*)$`)

// logLines returns the messages of the platform-format lines of out at
// level ("INFO", "ERROR", ...), and fails the test on lines that are not
// in the format.
func logLines(t *testing.T, out, level string) []string {
	t.Helper()
	var msgs []string
	for _, l := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		m := logRE.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		if strings.TrimSpace(m[1]) == level {
			msgs = append(msgs, m[4])
		}
	}
	return msgs
}

// hasLog reports whether out has a platform-format line at level whose
// message matches re entirely, written from migrator.go.
func hasLog(t *testing.T, out, level, re string) bool {
	t.Helper()
	full := regexp.MustCompile("^" + re + "$")
	for _, l := range strings.Split(out, "\n") {
		m := logRE.FindStringSubmatch(l)
		if m != nil && strings.TrimSpace(m[1]) == level && m[3] == "migrator.go" && full.MatchString(m[4]) {
			return true
		}
	}
	return false
}

// countLog counts the platform-format lines of out whose message is msg.
func countLog(out, msg string) int {
	n := 0
	for _, l := range strings.Split(out, "\n") {
		if m := logRE.FindStringSubmatch(l); m != nil && m[4] == msg {
			n++
		}
	}
	return n
}

func mustLog(t *testing.T, r clitest.Result, level, re string) {
	t.Helper()
	if !hasLog(t, r.Stderr, level, re) {
		t.Errorf("no %s log line matching %q from migrator.go in:\n%s", level, re, r)
	}
}

func alreadyDoneMsg(prefix string) string {
	return fmt.Sprintf(`Migration has already been performed (key "%smigration/.done" exists)`, prefix)
}

const durRE = `[0-9.]+(ns|µs|us|ms|s|m[0-9.]+s|h[0-9.m]+s)`

func migratedRE(n, failed int) string {
	return fmt.Sprintf(`Migrated store2 -> store3 \(took: %s, records migrated: %d, records failed: %d\)`, durRE, n, failed)
}

// --- raw store3 access, independent of the code under test

func rawRequest(t *testing.T, addr, token, method, path string, body []byte) []byte {
	t.Helper()
	resp, b := clitest.ConsulRequest(t, method, addr, token, path, bytes.NewReader(body))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: %s: %s", method, path, resp.Status, b)
	}
	return b
}

// put writes key through the plain HTTP API, with flags.
func (e *env) put(key string, value []byte, flags uint64) {
	e.T.Helper()
	b := rawRequest(e.T.(*testing.T), e.Consul.Addr(), e.Token, "PUT", "/v1/kv/"+key+"?flags="+strconv.FormatUint(flags, 10), value)
	if strings.TrimSpace(string(b)) != "true" {
		e.T.Fatalf("PUT %q: %s", key, b)
	}
}

// del deletes one key through the plain HTTP API.
func (e *env) del(key string) {
	e.T.Helper()
	rawRequest(e.T.(*testing.T), e.Consul.Addr(), e.Token, "DELETE", "/v1/kv/"+key, nil)
}

// rawTxn runs a transaction of raw ops (Consul's JSON) and fails on
// rollback.
func (e *env) rawTxn(ops []map[string]any) {
	e.T.Helper()
	body, _ := json.Marshal(ops)
	rawRequest(e.T.(*testing.T), e.Consul.Addr(), e.Token, "PUT", "/v1/txn", body)
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// getJSON decodes the raw value of key into v; false when it is absent.
func getJSON(t *testing.T, kv map[string]clitest.RawPair, key string, v any) bool {
	t.Helper()
	p, ok := kv[key]
	if !ok {
		return false
	}
	if err := json.Unmarshal(p.Value, v); err != nil {
		t.Fatalf("%s: %v: %q", key, err, p.Value)
	}
	return true
}

// doneJSON is .done as DESIGN.md defines it, decoded with our own struct.
type doneJSON struct {
	Component       string `json:"component"`
	Host            string `json:"host"`
	PID             int    `json:"pid"`
	Started         string `json:"started"`
	Finished        string `json:"finished"`
	Took            string `json:"took"`
	RecordsMigrated int64  `json:"records_migrated"`
	RecordsFailed   int64  `json:"records_failed"`
	Digest          string `json:"digest"`
	ToolVersion     string `json:"tool_version"`
}

type failedJSON struct {
	Bucket string `json:"bucket"`
	Key    string `json:"key"`
	Reason string `json:"reason"`
}

type statusJSON struct {
	State         string       `json:"state"`
	Component     string       `json:"component"`
	Host          string       `json:"host"`
	PID           int          `json:"pid"`
	Finished      string       `json:"finished"`
	RecordsDone   int64        `json:"records_done"`
	RecordsTotal  int64        `json:"records_total"`
	Error         string       `json:"error"`
	FailedRecords []failedJSON `json:"failed_records"`
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out after %v waiting for %s", d, what)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// keysOf lists the keys of a raw read, for messages.
func keysOf(kv map[string]clitest.RawPair) []string {
	var ks []string
	for k := range kv {
		ks = append(ks, k)
	}
	return ks
}
