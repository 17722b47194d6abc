//go:build integration

// Package cli tests the operator's edge of the real binary against real
// PostgreSQL and Consul servers: the configuration errors found in the
// foreground (a Consul with TLS and a CA made in the test), a worker that
// dies under `wait`, and the JSON objects scripts consume.
package cli

import (
	"context"
	"fmt"
	"os"
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
	os.Exit(clitest.RunShared(m, "cli", func(s *clitest.Shared) { shared = s }, harness.WithLogLevel("warn")))
}

// env is a test's view of the servers, with a name that keeps its databases
// and prefixes apart from every other test's.
type env struct {
	*clitest.Env
	name string
}

func newEnv(t *testing.T, consul *harness.Consul) *env {
	t.Helper()
	if consul == nil {
		consul = shared.Consul
	}
	return &env{Env: clitest.New(t, shared.PG, consul), name: clitest.SafeName(t.Name())}
}

// conf seeds n records into the test's own database and writes a job
// manager conf for it, under the test's own prefix.
func (e *env) conf(n int, c clitest.Conf) string {
	e.T.Helper()
	db := "c_" + e.name
	if n > 0 {
		e.SeedDB(db, clitest.Records(n))
	}
	c.Component, c.Database, c.Prefix = "job_manager", db, "t/"+e.name+"/jmdb/"
	return e.WriteConf(c)
}

func (e *env) prefix() string { return "t/" + e.name + "/jmdb/" }

// seedMany seeds n records quickly (COPY), for a migration that lasts.
func (e *env) seedMany(n int) {
	e.T.Helper()
	ctx := context.Background()
	db := "c_" + e.name
	if err := e.PG.CreateComponentDB(ctx, db, "store2_records"); err != nil {
		e.T.Fatal(err)
	}
	err := e.PG.SeedFunc(ctx, db, "store2_records", n, func(i int) migrate.Record {
		return migrate.Record{Bucket: "jobs", Key: fmt.Sprintf("job-%07d", i), Version: 1, Data: []byte(strings.Repeat("d", 200))}
	})
	if err != nil {
		e.T.Fatal(err)
	}
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond) // polling another process's state
	}
}

// alive reports whether pid runs and is not a zombie (the worker's parent,
// run, is gone; whoever adopted it may reap it late).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i > 0 && i+2 < len(b) && b[i+2] != 'Z' && b[i+2] != 'X'
}
