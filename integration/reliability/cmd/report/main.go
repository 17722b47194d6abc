// Command report runs the reliability suites (integration/reliability and
// the online migration's integration/online, one package after the other),
// or reads a saved `go test -json` stream of them, and writes
// docs/RELIABILITY.md: every scenario, how many times it ran here and how
// many times CI and soak run it, its result, the date, and the command that
// reproduces it.
//
//	go run ./integration/reliability/cmd/report                  # run the CI-sized suite, write docs/RELIABILITY.md
//	SOAK=1 go run ./integration/reliability/cmd/report           # the soak sizes
//	go run ./integration/reliability/cmd/report -in test.json    # from a saved go test -json stream
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"
)

// pkgs are the suites whose RELIABILITY lines the report collects. They
// run one after the other (-p 1): both are timing-sensitive on two cores.
var pkgs = []string{"./integration/reliability/", "./integration/online/"}

// module is stripped from go test's package paths to name a package as the
// reproduce commands do.
const module = "github.com/apcera/deployhook/"

// describe says what each scenario proves, for the report's readers.
var describe = map[string]string{
	"crash-kill9":                "`kill -9` of `migrate` or of the `run` worker during the wipe and at 25/50/90/100 % copied; rerun on the same host reaps the dead holder and starts copying within 4 s (TTL 10 s, lock delay 1 s)",
	"crash-sigterm":              "SIGTERM mid-copy: exit 6, `.status` failed/interrupted, lock released (another host takes it within a 3 s `--lock-timeout`) and completes",
	"consul-failover":            "3-server Consul, conf on a follower, leader SIGKILLed mid-copy: completes (or fails cleanly and a rerun completes) with exact data",
	"lock-loss-fencing":          "the lock session destroyed mid-copy: no key under the prefix changes after the destroy's raft index, exit 5, a second process completes",
	"pg-restart":                 "PostgreSQL restarted mid-read: completes from a new snapshot, or fails cleanly and a rerun completes",
	"pg-terminate-backend":       "`pg_terminate_backend` of the reader mid-read: as above",
	"pg-writes-during-migration": "INSERT/UPDATE/DELETE in store2 mid-copy: online (the default) every write before the freeze reaches store3, `verify` finds no difference, writes after `.done` are refused (25006); `--offline` exits 5 naming the changed records, no `.done`",
	"concurrency-3x3x3":          "3 hosts x 3 components x 3 `run` at once per round, fresh prefixes: each component copied exactly once, `wait` exits 0",
	"hostile-keys":               "keys of every byte 0x01-0x7F, rune ranges up to U+10FFFF, 2,000-byte keys, `.`, `..`, `/x`, `//`, `=`, `%`, hostile buckets, empty values",
	"value-size-limit":           "a value exactly at the largest a fenced transaction carries (derived from consul/api's encoding, proved on the server) migrates; one byte more is a named record failure, no `.done`",
	"hostile-100k-one-bucket":    "100,000 records in one bucket",
	"hostile-validate-inputs":    "`validate` on a 50 MB cluster.conf, one nested 10,000 deep, one with a 1 MB line: exit 0 or 3 within 60 s",
	"secrets":                    "ACL token (token_file), PostgreSQL password via pgpass and in the conf URL, wrong password, wrong token: absent from logs, stdout/stderr, `.status`/`.done`, `/proc/*/cmdline` and `ps`",

	"online-writers":         "online: a writer process (inserts, updates, deletes, 150/s over 4 connections, 20 % holding their transaction open) running before, during and after `migrate` of 20,000 records: exit 0, store3 equals the frozen store2 exactly, every acked write in store3, every write after the freeze refused with 25006 and the contract's message, none acked after it, the change capture dropped after `.done` (no recording capture trigger, no log table); then `unfreeze` keeps the freeze without `--accept-store2-revert` and drops it with it",
	"online-consul-failover": "online, 3-server Consul, leader SIGKILLed during catch-up (conf on a follower) with the writer running: exit 0 and every check of `online-writers`",
	"online-record-failure-reserved-bucket-in-snapshot":    "online: a record in the reserved bucket, writer running: exit 5, no `.done`, `.status` names it, store2 writable and the change capture dropped right after",
	"online-record-failure-oversize-value-during-catch-up": "online: a value too large for a fenced transaction inserted during catch-up, writer running: exit 5, no `.done`, `.status` names it, store2 writable and the change capture dropped right after",
	"online-kill9-at-freeze":                               "online: `migrate` SIGKILLed the moment its freeze commits (seen by LISTEN on an event trigger), before `.done`: writes refused until the next `run` unfreezes (`store2 unfrozen`) and drops the killed migration's change capture; its worker completes with every check of `online-writers`",
	"online-lock-loss-during-catch-up":                     "online: the lock session destroyed during catch-up: exit 5, no `.done`, no key changed after the destroy, store2 not frozen and writable, the change capture dropped; a rerun completes with every check of `online-writers`",
	"online-lock-loss-at-freeze":                           "online: the lock session destroyed the moment the freeze commits: exit 5, no `.done`, no key changed after the destroy, store2 unfrozen and writable, the change capture dropped; a rerun completes with every check of `online-writers`",
	"online-offline-writers":                               "online: `--offline` with the writer running: exit 5 with `store2 changed during the migration`, no `.done`, no write refused, no change capture left; without writers it completes without freezing",
	"online-trigger-privilege":                             "online: a role without the TRIGGER privilege: the dry run exits 5 naming the grant, `run` refuses before any worker and writes nothing; with TRIGGER and CREATE on the schema, the dry run passes and an online migration with the writer completes",
	"online-long-transaction-at-freeze":                    "online: a write transaction held open across the freeze: the freeze waits for it (its write is in store3) and, by its short lock timeout and retry, lets the writer's other writes through meanwhile; every check of `online-writers`",
	"online-concurrency-together":                          "online: three hosts `run` the same component at once with the writer running: one migration, one freeze, no unfreeze, `.done` written once, every check of `online-writers`",
	"online-concurrency-during-cutover":                    "online: two hosts `run` while the first host's worker is stopped (SIGSTOP) in its cutover: the freeze stays, one migration, one freeze, `.done` written once, every check of `online-writers`",
}

// pkgResult is one package's verdict and wall time.
type pkgResult struct {
	pkg, result string
	elapsed     float64
}

type event struct {
	Time    time.Time
	Action  string
	Package string
	Test    string
	Output  string
	Elapsed float64
}

type row struct {
	pkg, scenario, test, result string
	runs, ci, soak              int
	soakMode                    bool
	elapsed                     float64
	failures                    []string
}

var line = regexp.MustCompile(`RELIABILITY scenario="([^"]+)" runs=(\d+) ci_runs=(\d+) soak_runs=(\d+) soak=(true|false) result=(\w+)`)

func main() {
	in := flag.String("in", "", "read this go test -json stream instead of running the suite (\"-\": standard input)")
	out := flag.String("out", "docs/RELIABILITY.md", "write the report here")
	save := flag.String("save", "", "also save the go test -json stream to this file")
	flag.Parse()
	soak := os.Getenv("SOAK") == "1"
	timeout := map[bool]string{false: "30m", true: "120m"}[soak]
	args := append([]string{"test", "-race", "-tags", "integration", "-count=1", "-p", "1", "-timeout", timeout, "-json"}, pkgs...)
	command := "go " + strings.Join(args, " ")
	if soak {
		command = "SOAK=1 " + command
	}
	var r io.Reader
	var wait func() error
	switch *in {
	case "":
		cmd := exec.Command("go", args...)
		cmd.Stderr = os.Stderr
		pipe, err := cmd.StdoutPipe()
		if err != nil {
			fail(err)
		}
		if err := cmd.Start(); err != nil {
			fail(err)
		}
		r, wait = pipe, cmd.Wait
	case "-":
		r = os.Stdin
	default:
		f, err := os.Open(*in)
		if err != nil {
			fail(err)
		}
		defer f.Close()
		r = f
		command = "(from " + *in + ")"
	}
	if *save != "" {
		f, err := os.Create(*save)
		if err != nil {
			fail(err)
		}
		defer f.Close()
		r = io.TeeReader(r, f)
	}
	rows, results, date := parse(r)
	if wait != nil {
		wait() // a failing suite still gets its report
	}
	if len(rows) == 0 {
		fail(fmt.Errorf("no RELIABILITY lines in the test output"))
	}
	if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
		fail(err)
	}
	f, err := os.Create(*out)
	if err != nil {
		fail(err)
	}
	write(f, rows, results, date, command)
	if err := f.Close(); err != nil {
		fail(err)
	}
	for _, p := range results {
		fmt.Fprintf(os.Stderr, "%s: %s in %.0fs\n", p.pkg, p.result, p.elapsed)
	}
	fmt.Fprintf(os.Stderr, "wrote %s: %d scenarios\n", *out, len(rows))
}

// parse reads a go test -json stream. Tests are keyed by package and name:
// two packages may have tests of the same name.
func parse(r io.Reader) (rows []*row, results []pkgResult, date time.Time) {
	byTest := map[string][]*row{}
	elapsed := map[string]float64{}
	outputs := map[string][]string{}
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var e event
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			continue
		}
		if date.IsZero() && !e.Time.IsZero() {
			date = e.Time
		}
		pkg := "./" + strings.TrimPrefix(e.Package, module) + "/"
		key := pkg + " " + e.Test
		switch {
		case e.Test == "" && (e.Action == "pass" || e.Action == "fail"):
			results = append(results, pkgResult{pkg: pkg, result: e.Action, elapsed: e.Elapsed})
		case e.Test != "" && (e.Action == "pass" || e.Action == "fail" || e.Action == "skip"):
			elapsed[key] = e.Elapsed
		case e.Action == "output" && e.Test != "":
			outputs[key] = append(outputs[key], e.Output)
			m := line.FindStringSubmatch(e.Output)
			if m == nil || strings.HasPrefix(strings.TrimSpace(e.Output), "SUMMARY") {
				continue
			}
			rw := &row{pkg: pkg, scenario: m[1], test: e.Test, result: m[6], soakMode: m[5] == "true"}
			rw.runs, _ = strconv.Atoi(m[2])
			rw.ci, _ = strconv.Atoi(m[3])
			rw.soak, _ = strconv.Atoi(m[4])
			byTest[key] = append(byTest[key], rw)
			rows = append(rows, rw)
		}
	}
	for test, rs := range byTest {
		for _, rw := range rs {
			rw.elapsed = elapsed[test]
			if rw.result != "fail" {
				continue
			}
			for _, o := range outputs[test] {
				t := strings.TrimSpace(o)
				if strings.Contains(t, "_test.go:") && !strings.Contains(t, "RELIABILITY") && !strings.Contains(t, "harness.go") {
					rw.failures = append(rw.failures, t)
				}
			}
		}
	}
	sort.SliceStable(rows, func(i, j int) bool { return order(rows[i].scenario) < order(rows[j].scenario) })
	sort.SliceStable(results, func(i, j int) bool { return pkgOrder(results[i].pkg) < pkgOrder(results[j].pkg) })
	return rows, results, date
}

func pkgOrder(p string) int {
	for i, k := range pkgs {
		if k == p {
			return i
		}
	}
	return len(pkgs)
}

func order(s string) int {
	for i, k := range []string{"crash-kill9", "crash-sigterm", "consul-failover", "lock-loss-fencing", "pg-restart", "pg-terminate-backend",
		"pg-writes-during-migration", "concurrency-3x3x3", "hostile-keys", "value-size-limit", "hostile-100k-one-bucket", "hostile-validate-inputs", "secrets",
		"online-writers", "online-consul-failover", "online-record-failure-reserved-bucket-in-snapshot", "online-record-failure-oversize-value-during-catch-up",
		"online-kill9-at-freeze", "online-lock-loss-during-catch-up", "online-lock-loss-at-freeze", "online-offline-writers", "online-long-transaction-at-freeze", "online-trigger-privilege",
		"online-concurrency-together", "online-concurrency-during-cutover"} {
		if k == s {
			return i
		}
	}
	return 100
}

func write(w io.Writer, rows []*row, results []pkgResult, date time.Time, command string) {
	mode := "CI"
	if len(rows) > 0 && rows[0].soakMode {
		mode = "soak (SOAK=1)"
	}
	fmt.Fprintf(w, "# Reliability results\n\n")
	fmt.Fprintf(w, "Generated by `go run ./integration/reliability/cmd/report` from a real run of the suites in\n")
	fmt.Fprintf(w, "`integration/reliability/` and `integration/online/` (real PostgreSQL 15 and Consul 1.16.1 processes on loopback, the real\n")
	fmt.Fprintf(w, "`deployhook` binary; every verdict read back through Consul's raw HTTP API and SQL, not the code under test;\n")
	fmt.Fprintf(w, "the `online-*` scenarios with a writer process of their own, `integration/writer`, logging every acked and refused write).\n\n")
	fmt.Fprintf(w, "- date: %s\n- mode: %s\n- command: `%s`\n", date.UTC().Format("2006-01-02 15:04 MST"), mode, command)
	for _, p := range results {
		fmt.Fprintf(w, "- package `%s`: **%s** in %.0f s\n", p.pkg, strings.ToUpper(p.result), p.elapsed)
	}
	fmt.Fprintf(w, "- machine: %s/%s, %d CPUs, %s\n\n", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version())
	fmt.Fprintf(w, "The invariant every scenario ends with (`checkInvariant`): store3 under the prefix equals store2 (or the\n")
	fmt.Fprintf(w, "snapshot the migration took) exactly, with `.done` present and its count and digest right, or `.done` is absent.\n")
	fmt.Fprintf(w, "Never a `.done` over incomplete or wrong data. The `online-*` scenarios end with `checkMigrated`: store3 equals\n")
	fmt.Fprintf(w, "the final, frozen store2 exactly, the last acked write of every key the writer touched is in store3, every\n")
	fmt.Fprintf(w, "refusal is SQLSTATE 25006 with the contract's message, and no write that started after the first refusal (or\n")
	fmt.Fprintf(w, "after `.done`) was acked.\n\n")
	fmt.Fprintf(w, "| scenario | what it proves | runs here | CI runs | soak runs | result | test time |\n")
	fmt.Fprintf(w, "| --- | --- | ---: | ---: | ---: | --- | ---: |\n")
	for _, r := range rows {
		res := r.result
		if res == "fail" {
			res = "**FAIL**"
		}
		fmt.Fprintf(w, "| `%s` | %s | %d | %d | %d | %s | %.0f s |\n", r.scenario, describe[r.scenario], r.runs, r.ci, r.soak, res, r.elapsed)
	}
	fmt.Fprintf(w, "\n## Reproduce\n\n")
	all := strings.Join(pkgs, " ")
	fmt.Fprintf(w, "```\ngo test -race -tags integration -count=1 -p 1 %s            # CI sizes\n", all)
	fmt.Fprintf(w, "SOAK=1 go test -race -tags integration -count=1 -p 1 -timeout 120m %s   # soak sizes (make soak)\n", all)
	seen := map[string]bool{}
	for _, r := range rows {
		top := r.pkg + " " + strings.SplitN(r.test, "/", 2)[0]
		if !seen[top] {
			seen[top] = true
			fmt.Fprintf(w, "go test -race -tags integration -count=1 -v -run '^%s$' %s\n", strings.SplitN(r.test, "/", 2)[0], r.pkg)
		}
	}
	fmt.Fprintf(w, "```\n")
	var failed []*row
	for _, r := range rows {
		if r.result == "fail" {
			failed = append(failed, r)
		}
	}
	if len(failed) > 0 {
		fmt.Fprintf(w, "\n## Failures\n")
		for _, r := range failed {
			fmt.Fprintf(w, "\n### `%s` (%s %s)\n\n```\n", r.scenario, r.pkg, r.test)
			for i, l := range r.failures {
				if i == 12 {
					fmt.Fprintf(w, "... %d more lines\n", len(r.failures)-i)
					break
				}
				if len(l) > 400 {
					l = l[:400] + "..."
				}
				fmt.Fprintln(w, l)
			}
			fmt.Fprintf(w, "```\n")
		}
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "report:", err)
	os.Exit(1)
}
