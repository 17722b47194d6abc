//go:build integration

package hook

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// pidFile is the worker's pid file in its log directory (DESIGN.md, cmd/deployhook/migrate.go).
const pidFile = "deployhook.pid"

// workerPid reads the pid file of the worker of a log directory.
func workerPid(logDir string) (int, bool) {
	b, err := os.ReadFile(filepath.Join(logDir, pidFile))
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid, err == nil && pid > 0
}

// alive reports whether pid is a process that has not exited: the reaper
// of orphans here may leave zombies, which do not count.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return false
	}
	return b[i+2] != 'Z' && b[i+2] != 'X'
}

func killPid(pid int) { _ = syscall.Kill(pid, syscall.SIGKILL) }

// workersFor lists the live deployhook workers whose command line names conf.
func workersFor(conf string) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, ent := range ents {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		var isWorker, names bool
		for _, a := range args {
			isWorker = isWorker || a == "--worker"
			names = names || a == conf
		}
		if isWorker && names && alive(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// eventually polls cond every 20 ms until it holds or d passes.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitWorkerExit waits until the worker of logDir has removed its pid file
// and exited.
func waitWorkerExit(t testing.TB, logDir string) {
	t.Helper()
	eventually(t, 90*time.Second, "the worker of "+logDir+" to exit", func() bool {
		pid, ok := workerPid(logDir)
		return !ok || !alive(pid)
	})
}

// readLog returns the lines of a runit log directory, oldest first: the
// rotated files by name (their TAI64N names sort by time), then current.
func readLog(t testing.TB, dir string) []string {
	t.Helper()
	old, _ := filepath.Glob(filepath.Join(dir, "@*"))
	sort.Strings(old)
	var lines []string
	for _, f := range append(old, filepath.Join(dir, "current")) {
		b, err := os.ReadFile(f)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(b), "\n") {
			if l != "" {
				lines = append(lines, l)
			}
		}
	}
	return lines
}

// logLine is DESIGN.md "Logs": Go's time.Time.String() in UTC, the level
// padded to five characters, the pid, an empty request id and the caller.
var logLine = regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{1,9})? \+0000 UTC ` +
	`\[(PANIC|FATAL|ERROR|WARN |INFO |DEBUG|TRACE) pid=(\d+) requestid='' source='([A-Za-z0-9_]+\.go:\d+)'\] (.*)$`)

type parsedLine struct {
	Level, Source, Msg string
	Pid                int
}

func parseLine(l string) (parsedLine, bool) {
	m := logLine.FindStringSubmatch(l)
	if m == nil {
		return parsedLine{}, false
	}
	pid, _ := strconv.Atoi(m[3])
	return parsedLine{Level: strings.TrimSpace(m[2]), Pid: pid, Source: m[4], Msg: m[5]}, true
}

// startedPid finds the worker pid in run's "started ... (pid N)" line.
var startedRE = regexp.MustCompile(`started the store2 -> store3 migration in the background \(pid (\d+)\)`)
var runningRE = regexp.MustCompile(`migration already running on this host \(pid (\d+)\)`)

func pidIn(re *regexp.Regexp, s string) (int, bool) {
	m := re.FindStringSubmatch(s)
	if m == nil {
		return 0, false
	}
	pid, err := strconv.Atoi(m[1])
	return pid, err == nil
}

// migrationKeys reads .status and .done under prefix through the raw HTTP
// reads of clitest.
type statusDoc struct {
	State         string `json:"state"`
	Host          string `json:"host"`
	PID           int    `json:"pid"`
	RecordsDone   int    `json:"records_done"`
	RecordsTotal  int    `json:"records_total"`
	Error         string `json:"error"`
	FailedRecords []struct {
		Bucket, Key, Reason string
	} `json:"failed_records"`
}

type doneDoc struct {
	Component       string `json:"component"`
	Host            string `json:"host"`
	PID             int    `json:"pid"`
	RecordsMigrated int    `json:"records_migrated"`
	RecordsFailed   int    `json:"records_failed"`
}

func (e *env) status(prefix string) (*statusDoc, *doneDoc) {
	e.t.Helper()
	kv, _ := e.RawKV(prefix + "migration/")
	var st *statusDoc
	var dn *doneDoc
	if p, ok := kv[prefix+"migration/.status"]; ok {
		st = new(statusDoc)
		if err := json.Unmarshal(p.Value, st); err != nil {
			e.t.Fatalf(".status: %v: %s", err, p.Value)
		}
	}
	if p, ok := kv[prefix+"migration/.done"]; ok {
		dn = new(doneDoc)
		if err := json.Unmarshal(p.Value, dn); err != nil {
			e.t.Fatalf(".done: %v: %s", err, p.Value)
		}
	}
	return st, dn
}

// shq quotes s for /bin/sh.
func shq(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func itoa(i int) string    { return strconv.Itoa(i) }
func utoa(u uint64) string { return strconv.FormatUint(u, 10) }
