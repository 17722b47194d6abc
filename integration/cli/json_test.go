//go:build integration

package cli

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/apcera/deployhook/integration/clitest"
	"github.com/apcera/deployhook/integration/harness"
)

// decodeLines decodes one JSON object per line of out.
func decodeLines(t *testing.T, r clitest.Result) []map[string]any {
	t.Helper()
	var objs []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(r.Stdout), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line %q is not a JSON object: %v\n%s", l, err, r)
		}
		if m["version"] != float64(1) {
			t.Errorf("object without version 1: %s", l)
		}
		objs = append(objs, m)
	}
	return objs
}

// path reads a nested field: path(m, "session", "ok").
func path(m map[string]any, keys ...string) any {
	var v any = m
	for _, k := range keys {
		o, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = o[k]
	}
	return v
}

func keysOf(v any) []string {
	m, _ := v.(map[string]any)
	return slices.Sorted(maps.Keys(m))
}

// --format json on the dry run, status, wait and verify: one object per
// component per line, each with version 1; status and wait carry every
// field of .status and .done.
func TestJSONOutputs(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	conf := e.conf(30, clitest.Conf{})
	// A leftover of an earlier attempt, for the wipe.
	clitest.ConsulRequest(t, "PUT", e.Consul.Addr(), e.Token, "/v1/kv/"+e.prefix()+"jobs/leftover", strings.NewReader("x"))

	r := e.MustRun(0, "migrate", "-f", conf, "-dry_run_store_migration", "--format", "json")
	dry := decodeLines(t, r)
	if len(dry) != 1 {
		t.Fatalf("dry run: %d objects", len(dry))
	}
	d := dry[0]
	for k, want := range map[string]any{"component": "job_manager", "result": "would succeed", "records": float64(30),
		"prefix": e.prefix(), "error": ""} {
		if d[k] != want {
			t.Errorf("dry run %s = %v, want %v\n%s", k, d[k], want, r.Stdout)
		}
	}
	if path(d, "permission", "ok") != true || path(d, "session", "ok") != true || path(d, "wipe", "keys") != float64(1) ||
		fmt.Sprint(path(d, "wipe", "first")) != "["+e.prefix()+"jobs/leftover]" || path(d, "limits", "max_ops") != float64(128) {
		t.Errorf("dry run checks:\n%s", r.Stdout)
	}
	if txt := e.MustRun(0, "migrate", "-f", conf, "-dry_run_store_migration"); !strings.Contains(txt.Stdout, "1 keys under") || !strings.Contains(txt.Stdout, "jobs/leftover") {
		t.Errorf("text dry run does not report the wipe:\n%s", txt)
	}

	r = e.MustRun(0, "migrate", "-f", conf)
	if !strings.Contains(r.Stderr, fmt.Sprintf("Wiped 1 keys under %q left by an earlier attempt", e.prefix())) {
		t.Errorf("no Wiped line:\n%s", r)
	}

	st := decodeLines(t, e.MustRun(0, "status", "-f", conf, "--format", "json"))
	wantStatus := []string{"component", "error", "failed_records", "finished", "host", "pid", "records_done", "records_total", "session", "started", "state", "updated"}
	wantDone := []string{"component", "digest", "finished", "host", "pid", "records_failed", "records_migrated", "started", "took", "tool_version"}
	if len(st) != 1 || st[0]["state"] != "done" || path(st[0], "done", "records_migrated") != float64(30) {
		t.Errorf("status: %v", st)
	}
	for _, o := range st {
		if got := keysOf(o["status"]); !isSuperset(got, wantStatus) {
			t.Errorf("status.status keys %v lack some of %v", got, wantStatus)
		}
		if got := keysOf(o["done"]); !isSuperset(got, wantDone) {
			t.Errorf("status.done keys %v lack some of %v", got, wantDone)
		}
		if v, _ := path(o, "done", "tool_version").(string); !strings.Contains(v, "go1.") {
			t.Errorf(".done tool_version %q is not from the build info", v)
		}
	}

	w := decodeLines(t, e.MustRun(0, "wait", "-f", conf, "--format", "json", "--timeout", "1m"))
	if len(w) != 1 || w[0]["result"] != "done" || w[0]["state"] != "done" || !isSuperset(keysOf(w[0]["status"]), wantStatus) {
		t.Errorf("wait: %v", w)
	}

	v := decodeLines(t, e.MustRun(0, "verify", "-f", conf, "--format", "json"))
	if len(v) != 1 || v[0]["equal"] != true || path(v[0], "store2", "records") != float64(30) || path(v[0], "store3", "records") != float64(30) {
		t.Errorf("verify: %v", v)
	}
	clitest.ConsulRequest(t, "PUT", e.Consul.Addr(), e.Token, "/v1/kv/"+e.prefix()+"jobs/extra1", strings.NewReader("x"))
	clitest.ConsulRequest(t, "PUT", e.Consul.Addr(), e.Token, "/v1/kv/"+e.prefix()+"jobs/extra2", strings.NewReader("x"))
	v = decodeLines(t, e.MustRun(5, "verify", "-f", conf, "--format", "json", "--max", "1"))
	diffs, _ := v[0]["differences"].([]any)
	if v[0]["equal"] != false || len(diffs) != 1 || path(diffs[0].(map[string]any), "kind") != "extra" || v[0]["omitted"] != float64(1) {
		t.Errorf("verify with differences: %v", v)
	}

	dry = decodeLines(t, e.MustRun(0, "migrate", "-f", conf, "-dry_run_store_migration", "--format", "json"))
	if dry[0]["result"] != "already migrated" || path(dry[0], "done", "host") == nil {
		t.Errorf("dry run after the migration: %v", dry[0])
	}
}

func isSuperset(have, want []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

// The dry run probes session:write, which the lock needs, without creating
// a session.
func TestDryRunProbesSessionWrite(t *testing.T) {
	t.Parallel()
	consul := harness.StartConsul(t, harness.WithACL(), harness.WithLogLevel("warn"))
	e := newEnv(t, consul)
	conf0 := e.conf(10, clitest.Conf{})
	prefix := e.prefix()
	for _, tc := range []struct {
		name, rules string
		code        int
		ok          bool
		reason      string
	}{
		{"key write only", fmt.Sprintf(`key_prefix %q { policy = "write" }
agent_prefix "" { policy = "read" }`, prefix), 5, false, "session:write"},
		{"key and session write", fmt.Sprintf(`key_prefix %q { policy = "write" }
agent_prefix "" { policy = "read" }
session_prefix "" { policy = "write" }`, prefix), 0, true, "may create sessions"},
		{"no agent read", fmt.Sprintf(`key_prefix %q { policy = "write" }
session_prefix "" { policy = "write" }`, prefix), 0, true, "not checked"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			token, err := consul.CreateToken(tc.rules)
			if err != nil {
				t.Fatal(err)
			}
			te := *e.Env
			te.Vars = append(slices.Clone(e.Vars), "CONSUL_HTTP_TOKEN="+token)
			r := te.MustRun(tc.code, "migrate", "-f", conf0, "-dry_run_store_migration", "--format", "json")
			d := decodeLines(t, r)[0]
			reason, _ := path(d, "session", "reason").(string)
			if path(d, "session", "ok") != tc.ok || !strings.Contains(reason, tc.reason) {
				t.Errorf("session %v, want ok %t and %q\n%s", d["session"], tc.ok, tc.reason, r)
			}
			sessions, body := clitest.ConsulRequest(t, "GET", consul.Addr(), consul.ManagementToken(), "/v1/session/list", nil)
			if sessions.StatusCode != 200 || strings.TrimSpace(string(body)) != "[]" {
				t.Errorf("the dry run left sessions: %s", body)
			}
			if strings.Contains(r.Stdout+r.Stderr, token) {
				t.Error("the token was printed")
			}
		})
	}
}
