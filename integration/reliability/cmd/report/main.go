// Command report runs the reliability suite (or reads a saved `go test
// -json` stream of it) and writes docs/RELIABILITY.md: every scenario, how
// many times it ran here and how many times CI and soak run it, its result,
// the date, and the command that reproduces it.
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

const pkg = "./integration/reliability/"

// describe says what each scenario proves, for the report's readers.
var describe = map[string]string{
	"crash-kill9":                "`kill -9` of `migrate` or of the `run` worker during the wipe and at 25/50/90/100 % copied; rerun on the same host reaps the dead holder and starts copying within 4 s (TTL 10 s, lock delay 1 s)",
	"crash-sigterm":              "SIGTERM mid-copy: exit 6, `.status` failed/interrupted, lock released (another host takes it within a 3 s `--lock-timeout`) and completes",
	"consul-failover":            "3-server Consul, conf on a follower, leader SIGKILLed mid-copy: completes (or fails cleanly and a rerun completes) with exact data",
	"lock-loss-fencing":          "the lock session destroyed mid-copy: no key under the prefix changes after the destroy's raft index, exit 5, a second process completes",
	"pg-restart":                 "PostgreSQL restarted mid-read: completes from a new snapshot, or fails cleanly and a rerun completes",
	"pg-terminate-backend":       "`pg_terminate_backend` of the reader mid-read: as above",
	"pg-writes-during-migration": "INSERT/UPDATE/DELETE in store2 mid-copy: store3 equals the snapshot, `verify` exits 5 naming each later write",
	"concurrency-3x3x3":          "3 hosts x 3 components x 3 `run` at once per round, fresh prefixes: each component copied exactly once, `wait` exits 0",
	"hostile-keys":               "keys of every byte 0x01-0x7F, rune ranges up to U+10FFFF, 2,000-byte keys, `.`, `..`, `/x`, `//`, `=`, `%`, hostile buckets, empty values",
	"value-size-limit":           "a value exactly at the largest a fenced transaction carries (derived from consul/api's encoding, proved on the server) migrates; one byte more is a named record failure, no `.done`",
	"hostile-100k-one-bucket":    "100,000 records in one bucket",
	"hostile-validate-inputs":    "`validate` on a 50 MB cluster.conf, one nested 10,000 deep, one with a 1 MB line: exit 0 or 3 within 60 s",
	"secrets":                    "ACL token (token_file), PostgreSQL password via pgpass and in the conf URL, wrong password, wrong token: absent from logs, stdout/stderr, `.status`/`.done`, `/proc/*/cmdline` and `ps`",
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
	scenario, test, result string
	runs, ci, soak         int
	soakMode               bool
	elapsed                float64
	failures               []string
}

var line = regexp.MustCompile(`RELIABILITY scenario="([^"]+)" runs=(\d+) ci_runs=(\d+) soak_runs=(\d+) soak=(true|false) result=(\w+)`)

func main() {
	in := flag.String("in", "", "read this go test -json stream instead of running the suite (\"-\": standard input)")
	out := flag.String("out", "docs/RELIABILITY.md", "write the report here")
	save := flag.String("save", "", "also save the go test -json stream to this file")
	flag.Parse()
	soak := os.Getenv("SOAK") == "1"
	command := "go test -race -count=1 -timeout 30m -json " + pkg
	if soak {
		command = "SOAK=1 go test -race -count=1 -timeout 120m -json " + pkg
	}
	var r io.Reader
	var wait func() error
	switch *in {
	case "":
		cmd := exec.Command("go", "test", "-race", "-count=1", "-timeout", map[bool]string{false: "30m", true: "120m"}[soak], "-json", pkg)
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
	rows, pkgElapsed, pkgResult, date := parse(r)
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
	write(f, rows, pkgElapsed, pkgResult, date, command)
	if err := f.Close(); err != nil {
		fail(err)
	}
	fmt.Fprintf(os.Stderr, "wrote %s: %d scenarios, package %s in %.0fs\n", *out, len(rows), pkgResult, pkgElapsed)
}

func parse(r io.Reader) (rows []*row, pkgElapsed float64, pkgResult string, date time.Time) {
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
		switch {
		case e.Test == "" && (e.Action == "pass" || e.Action == "fail"):
			pkgElapsed, pkgResult = e.Elapsed, e.Action
		case e.Test != "" && (e.Action == "pass" || e.Action == "fail" || e.Action == "skip"):
			elapsed[e.Test] = e.Elapsed
		case e.Action == "output" && e.Test != "":
			outputs[e.Test] = append(outputs[e.Test], e.Output)
			m := line.FindStringSubmatch(e.Output)
			if m == nil || strings.HasPrefix(strings.TrimSpace(e.Output), "SUMMARY") {
				continue
			}
			rw := &row{scenario: m[1], test: e.Test, result: m[6], soakMode: m[5] == "true"}
			rw.runs, _ = strconv.Atoi(m[2])
			rw.ci, _ = strconv.Atoi(m[3])
			rw.soak, _ = strconv.Atoi(m[4])
			byTest[e.Test] = append(byTest[e.Test], rw)
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
	return rows, pkgElapsed, pkgResult, date
}

func order(s string) int {
	for i, k := range []string{"crash-kill9", "crash-sigterm", "consul-failover", "lock-loss-fencing", "pg-restart", "pg-terminate-backend",
		"pg-writes-during-migration", "concurrency-3x3x3", "hostile-keys", "value-size-limit", "hostile-100k-one-bucket", "hostile-validate-inputs", "secrets"} {
		if k == s {
			return i
		}
	}
	return 100
}

func write(w io.Writer, rows []*row, pkgElapsed float64, pkgResult string, date time.Time, command string) {
	mode := "CI"
	if len(rows) > 0 && rows[0].soakMode {
		mode = "soak (SOAK=1)"
	}
	fmt.Fprintf(w, "# Reliability results\n\n")
	fmt.Fprintf(w, "Generated by `go run ./integration/reliability/cmd/report` from a real run of the suite in\n")
	fmt.Fprintf(w, "`integration/reliability/` (real PostgreSQL 15 and Consul 1.16.1 processes on loopback, the real\n")
	fmt.Fprintf(w, "`deployhook` binary; every verdict read back through Consul's raw HTTP API and SQL, not the code under test).\n\n")
	fmt.Fprintf(w, "- date: %s\n- mode: %s\n- command: `%s`\n- package result: **%s** in %.0f s\n- machine: %s/%s, %d CPUs, %s\n\n",
		date.UTC().Format("2006-01-02 15:04 MST"), mode, command, strings.ToUpper(pkgResult), pkgElapsed, runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version())
	fmt.Fprintf(w, "The invariant every scenario ends with (`checkInvariant`): store3 under the prefix equals store2 (or the\n")
	fmt.Fprintf(w, "snapshot the migration took) exactly, with `.done` present and its count and digest right, or `.done` is absent.\n")
	fmt.Fprintf(w, "Never a `.done` over incomplete or wrong data.\n\n")
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
	fmt.Fprintf(w, "```\ngo test -race -count=1 ./integration/reliability/            # CI sizes\nSOAK=1 go test -race -count=1 -timeout 120m ./integration/reliability/   # soak sizes (make soak)\n")
	seen := map[string]bool{}
	for _, r := range rows {
		top := strings.SplitN(r.test, "/", 2)[0]
		if !seen[top] {
			seen[top] = true
			fmt.Fprintf(w, "go test -race -count=1 -v -run '^%s$' ./integration/reliability/\n", top)
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
			fmt.Fprintf(w, "\n### `%s` (%s)\n\n```\n", r.scenario, r.test)
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
