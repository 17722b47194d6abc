// Package clitest drives the real deployhook binary against real PostgreSQL
// and Consul servers (integration/harness), and checks the result through
// Consul's HTTP API with code of its own, independent of the code under test.
package clitest

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apcera/deployhook/integration/harness"
	"github.com/apcera/deployhook/migrate"
)

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// Binary builds cmd/deployhook once per test process and returns its path.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		root, err := harness.RepoRoot()
		if err != nil {
			buildErr = err
			return
		}
		dir, err := os.MkdirTemp("", "deployhook-bin-")
		if err != nil {
			buildErr = err
			return
		}
		buildPath = filepath.Join(dir, "deployhook")
		cmd := exec.Command("go", "build", "-o", buildPath, "./cmd/deployhook")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/deployhook: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildPath
}

// Env is one test's view of the services and the binary.
type Env struct {
	T      testing.TB
	Bin    string
	PG     *harness.Postgres
	Consul *harness.Consul
	Dir    string   // scratch directory of the test
	Vars   []string // environment added to every command (PGPASSFILE, ...)
	Token  string   // Consul token for the raw reads, if ACLs are on
}

// New returns an Env whose commands find PostgreSQL's password through a
// pgpass file, never on a command line.
func New(t testing.TB, pg *harness.Postgres, consul *harness.Consul) *Env {
	e := &Env{T: t, Bin: Binary(t), PG: pg, Consul: consul, Dir: t.TempDir()}
	if pg != nil {
		e.Vars = append(e.Vars, "PGPASSFILE="+pg.PassFile())
	}
	if consul != nil {
		e.Token = consul.ManagementToken()
	}
	return e
}

// Conf is a component conf; zero fields take the defaults noted.
type Conf struct {
	Component string // job_manager (default), package_manager, auth_server
	Kind      string // default store3
	Migrate   *bool  // default true
	Database  string // store2 database in the URL; default the component's
	Table     string // default: not written (store2_records)
	Prefix    string // default: not written (the component's)
	Address   string // default: the Env's Consul; "-" leaves it out
	TokenFile string
	LogDir    string // default: a directory under the test's scratch dir
	URL       string // overrides the PostgreSQL URL built from Database
	Name      string // file name, default <component>.conf
}

// Bool returns a pointer, for Conf.Migrate.
func Bool(b bool) *bool { return &b }

// DatabaseOf returns the store2 database of a component.
func DatabaseOf(component string) string {
	switch component {
	case "package_manager":
		return "pmdb"
	case "auth_server":
		return "asdb"
	}
	return "jmdb"
}

// DefaultPrefix returns the store3 prefix of a component.
func DefaultPrefix(component string) string {
	return "apcera/store3/" + DatabaseOf(component) + "/"
}

// WriteConf renders c as Dconf into the test's directory and returns its path.
func (e *Env) WriteConf(c Conf) string {
	e.T.Helper()
	if c.Component == "" {
		c.Component = "job_manager"
	}
	if c.Kind == "" {
		c.Kind = "store3"
	}
	if c.Migrate == nil {
		c.Migrate = Bool(true)
	}
	if c.Database == "" {
		c.Database = DatabaseOf(c.Component)
	}
	if c.LogDir == "" {
		c.LogDir = filepath.Join(e.Dir, "log", c.Component)
	}
	if c.Name == "" {
		c.Name = c.Component + ".conf"
	}
	url := c.URL
	if url == "" && e.PG != nil {
		url = e.PG.URLWithoutPassword(c.Database)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "component: %s\ndb: {\n  kind: %s\n  migrate_store2_to_store3: %t\n", c.Component, c.Kind, *c.Migrate)
	fmt.Fprintf(&b, "  postgres: {\n")
	if url != "" {
		fmt.Fprintf(&b, "    url: %q\n", url)
	}
	if c.Table != "" {
		fmt.Fprintf(&b, "    table: %s\n", c.Table)
	}
	fmt.Fprintf(&b, "  }\n  consul: {\n")
	switch {
	case c.Address == "-":
	case c.Address != "":
		fmt.Fprintf(&b, "    address: %q\n", c.Address)
	case e.Consul != nil:
		fmt.Fprintf(&b, "    address: %q\n", e.Consul.Addr())
	}
	if c.Prefix != "" {
		fmt.Fprintf(&b, "    prefix: %q\n", c.Prefix)
	}
	if c.TokenFile != "" {
		fmt.Fprintf(&b, "    token_file: %q\n", c.TokenFile)
	}
	fmt.Fprintf(&b, "  }\n}\nlog_dir: %q\n", c.LogDir)
	path := filepath.Join(e.Dir, c.Name)
	if err := os.WriteFile(path, []byte(b.String()), 0o640); err != nil {
		e.T.Fatal(err)
	}
	return path
}

// Result is what one command did.
type Result struct {
	Args           []string
	Stdout, Stderr string
	Code           int
	Took           time.Duration
}

// String shows the command and its output, for failure messages.
func (r Result) String() string {
	return fmt.Sprintf("deployhook %s\nexit %d after %v\n--- stdout\n%s--- stderr\n%s", strings.Join(r.Args, " "), r.Code, r.Took, r.Stdout, r.Stderr)
}

// Command returns the command, with the Env's environment, not started.
func (e *Env) Command(args ...string) *exec.Cmd {
	cmd := exec.Command(e.Bin, args...)
	cmd.Env = append(os.Environ(), e.Vars...)
	return cmd
}

// Run runs deployhook with args and waits for it, for at most 5 minutes.
func (e *Env) Run(args ...string) Result {
	e.T.Helper()
	r, err := e.Try(args...)
	if err != nil {
		e.T.Fatal(err)
	}
	return r
}

// Try is Run without calling the test: a command that cannot be started is
// returned as an error, so that Try may be called from any goroutine.
func (e *Env) Try(args ...string) (Result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.Bin, args...)
	cmd.Env = append(os.Environ(), e.Vars...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	r := Result{Args: args, Stdout: out.String(), Stderr: errb.String(), Took: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.Code = ee.ExitCode()
	case err != nil:
		return r, fmt.Errorf("deployhook %s: %w", strings.Join(args, " "), err)
	}
	return r, nil
}

// MustRun runs deployhook and fails the test unless it exits with want.
func (e *Env) MustRun(want int, args ...string) Result {
	e.T.Helper()
	r := e.Run(args...)
	if r.Code != want {
		e.T.Fatalf("want exit %d, got:\n%s", want, r)
	}
	return r
}

// RawPair is a key as Consul's HTTP API returns it.
type RawPair struct {
	Key         string
	Value       []byte
	Flags       uint64
	ModifyIndex uint64
	Session     string
}

// RawKV reads every key under prefix with a plain HTTP GET, decoding the
// JSON itself, and returns the pairs by key and the X-Consul-Index.
func (e *Env) RawKV(prefix string) (map[string]RawPair, uint64) {
	e.T.Helper()
	return RawKVAt(e.T, e.Consul.Addr(), e.Token, prefix)
}

// RawKVAt is RawKV against any Consul address.
func RawKVAt(t testing.TB, addr, token, prefix string) (map[string]RawPair, uint64) {
	t.Helper()
	resp, body := ConsulRequest(t, "GET", addr, token, "/v1/kv/"+PathEscape(prefix)+"?recurse=true", nil)
	index, _ := strconv.ParseUint(resp.Header.Get("X-Consul-Index"), 10, 64)
	out := map[string]RawPair{}
	if resp.StatusCode == http.StatusNotFound {
		return out, index
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", prefix, resp.Status, body)
	}
	var pairs []struct {
		Key         string
		Value       *string
		Flags       uint64
		ModifyIndex uint64
		Session     string
	}
	if err := json.Unmarshal(body, &pairs); err != nil {
		t.Fatalf("decode listing of %s: %v", prefix, err)
	}
	for _, p := range pairs {
		var v []byte
		if p.Value != nil {
			var err error
			if v, err = base64.StdEncoding.DecodeString(*p.Value); err != nil {
				t.Fatalf("key %q: %v", p.Key, err)
			}
		}
		out[p.Key] = RawPair{Key: p.Key, Value: v, Flags: p.Flags, ModifyIndex: p.ModifyIndex, Session: p.Session}
	}
	return out, index
}

// ExpectedKey is DESIGN.md's key escaping, written again here so that the
// tests do not trust the code they test.
func ExpectedKey(prefix, bucket, key string) string {
	esc := func(s string) string {
		if s == "." {
			return "=2E"
		}
		if s == ".." {
			return "=2E=2E"
		}
		var b strings.Builder
		for i := 0; i < len(s); i++ {
			c := s[i]
			if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-' {
				b.WriteByte(c)
			} else {
				fmt.Fprintf(&b, "=%02X", c)
			}
		}
		return b.String()
	}
	return prefix + esc(bucket) + "/" + esc(key)
}

// AssertMigrated checks, through the raw HTTP API, that store3 holds under
// prefix exactly records (value byte for byte, version in Flags) plus the
// migration keys, and that .done exists.
func (e *Env) AssertMigrated(prefix string, records []migrate.Record) {
	e.T.Helper()
	got, _ := e.RawKV(prefix)
	if _, ok := got[prefix+"migration/.done"]; !ok {
		e.T.Errorf("%s: no .done key", prefix)
	}
	want := map[string]bool{}
	for _, r := range records {
		k := ExpectedKey(prefix, r.Bucket, r.Key)
		want[k] = true
		p, ok := got[k]
		switch {
		case !ok:
			e.T.Errorf("%s: record bucket %q key %q missing (want key %q)", prefix, r.Bucket, r.Key, k)
		case !bytes.Equal(p.Value, r.Data):
			e.T.Errorf("%s: record %q: value differs: %d bytes in store3, %d in store2", prefix, k, len(p.Value), len(r.Data))
		case p.Flags != uint64(r.Version):
			e.T.Errorf("%s: record %q: flags %d, want version %d", prefix, k, p.Flags, r.Version)
		}
	}
	for k := range got {
		if !want[k] && !strings.HasPrefix(k, prefix+"migration/") {
			e.T.Errorf("%s: unexpected key %q in store3", prefix, k)
		}
	}
}

// Records makes n records spread over a few buckets, with awkward keys.
func Records(n int) []migrate.Record {
	buckets := []string{"jobs", "routes", "packages", "policies"}
	recs := make([]migrate.Record, n)
	for i := range recs {
		recs[i] = migrate.Record{
			Bucket:  buckets[i%len(buckets)],
			Key:     fmt.Sprintf("job::/sandbox/user %d::app-%d é", i%7, i),
			Version: int64(i%13 + 1),
			Data:    []byte(fmt.Sprintf(`{"n":%d,"pad":"%s"}`, i, strings.Repeat("x", i%50))),
		}
	}
	return recs
}

// Seed creates the component's store2 database and table and loads records.
func (e *Env) Seed(component string, records []migrate.Record) {
	e.T.Helper()
	e.SeedDB(DatabaseOf(component), records)
}

// SeedDB creates a store2 database with the record table and loads records.
func (e *Env) SeedDB(db string, records []migrate.Record) {
	e.T.Helper()
	ctx := context.Background()
	if err := e.PG.CreateComponentDB(ctx, db, "store2_records"); err != nil {
		e.T.Fatal(err)
	}
	if err := e.PG.Seed(ctx, db, "store2_records", records); err != nil {
		e.T.Fatal(err)
	}
}

// ConsulRequest sends one request to Consul's HTTP API with plain net/http,
// independent of the code under test, and returns the response (body
// closed) and its body. Only a request that cannot be sent fails the test.
func ConsulRequest(t testing.TB, method, addr, token, path string, body io.Reader) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+addr+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("X-Consul-Token", token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp, b
}

// Shared is one PostgreSQL and one Consul that a whole test package shares,
// each test keeping to databases and prefixes of its own.
type Shared struct {
	PG        *harness.Postgres
	Consul    *harness.Consul
	dir       string
	consulLog *os.File
}

// StartShared starts the shared servers from TestMain, which has no
// *testing.T: the caller stops them with Stop.
func StartShared(name string, opts ...harness.ConsulOption) (*Shared, error) {
	dir, err := os.MkdirTemp("", "deployhook-"+name+"-")
	if err != nil {
		return nil, err
	}
	s := &Shared{dir: dir}
	if s.consulLog, err = os.Create(filepath.Join(dir, "consul.log")); err != nil {
		s.Stop(false)
		return nil, err
	}
	if s.PG, err = harness.StartPostgresDir(filepath.Join(dir, "pg"), nil); err != nil {
		s.Stop(true)
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if s.Consul, err = harness.StartConsulDir(filepath.Join(dir, "consul"), s.consulLog, opts...); err != nil {
		s.Stop(true)
		return nil, fmt.Errorf("consul: %w", err)
	}
	return s, nil
}

// Stop stops the servers and removes their files, first printing the tails
// of their logs when the tests failed.
func (s *Shared) Stop(failed bool) {
	if failed {
		if s.PG != nil {
			fmt.Fprintf(os.Stderr, "--- shared postgres log (tail)\n%s\n", harness.Tail(s.PG.Log(), 60))
		}
		if b, err := os.ReadFile(filepath.Join(s.dir, "consul.log")); err == nil {
			fmt.Fprintf(os.Stderr, "--- shared consul log (tail)\n%s\n", harness.Tail(string(b), 60))
		}
	}
	if s.Consul != nil {
		s.Consul.Kill()
	}
	if s.PG != nil {
		s.PG.Stop()
	}
	if s.consulLog != nil {
		s.consulLog.Close()
	}
	os.RemoveAll(s.dir)
}

// PathEscape escapes each segment of a key for a URL path, keeping the
// slashes between them.
func PathEscape(key string) string {
	segs := strings.Split(key, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}
