//go:build integration

// Package online proves DESIGN.md "Online migration and cutover" against
// real services: the real deployhook binary migrates real PostgreSQL into
// real Consul while writer processes of our own (integration/writer) keep
// inserting, updating and deleting in store2, and log every acknowledged
// and every refused write. Each scenario's verdict comes from that log,
// from SQL through pgx and from Consul's raw HTTP API, never from the code
// under test.
//
// Each scenario logs the reliability suite's machine-readable line
//
//	RELIABILITY scenario="online-writers" runs=1 ci_runs=1 soak_runs=3 soak=false result=pass
//
// so that integration/reliability/cmd/report puts it in docs/RELIABILITY.md.
package online

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/apcera/deployhook/integration/clitest"
	"github.com/apcera/deployhook/integration/harness"
)

// count picks the CI or the SOAK=1 number of runs (clitest.Count).
var count = clitest.Count

var shared *clitest.Shared

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	// The workers `run` detaches are re-parented to us, so that we can
	// reap them and a zombie never looks alive to the dead-holder check.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		fmt.Fprintf(os.Stderr, "prctl(PR_SET_CHILD_SUBREAPER): %v\n", err)
		return 1
	}
	return clitest.RunShared(m, "online", func(s *clitest.Shared) { shared = s }, harness.WithLogLevel("warn"))
}

// scenario logs the RELIABILITY line of a test when it ends (the format
// integration/reliability/cmd/report parses).
func scenario(t *testing.T, name string, ci, long int, runs *int) {
	clitest.Scenario(t, name, ci, long, runs, nil)
}

// ---- the writer process ----

var (
	writerOnce sync.Once
	writerPath string
	writerErr  error
)

func writerBinary(t testing.TB) string {
	t.Helper()
	writerOnce.Do(func() {
		root, err := harness.RepoRoot()
		if err != nil {
			writerErr = err
			return
		}
		dir, err := os.MkdirTemp("", "deployhook-writer-")
		if err != nil {
			writerErr = err
			return
		}
		writerPath = filepath.Join(dir, "writer")
		cmd := exec.Command("go", "build", "-o", writerPath, "./integration/writer")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			writerErr = fmt.Errorf("go build ./integration/writer: %v\n%s", err, out)
		}
	})
	if writerErr != nil {
		t.Fatal(writerErr)
	}
	return writerPath
}

// write is one line of the writer's log (integration/writer), decoded by
// a type of our own.
type write struct {
	Worker   int    `json:"worker"`
	Seq      int    `json:"seq"`
	StartNS  int64  `json:"start"`
	EndNS    int64  `json:"end"`
	Op       string `json:"op"`
	Bucket   string `json:"bucket"`
	Key      string `json:"key"`
	Version  int64  `json:"version"`
	SHA256   string `json:"sha256"`
	Outcome  string `json:"outcome"`
	SQLState string `json:"sqlstate"`
	Message  string `json:"message"`
}

func (w write) start() time.Time { return time.Unix(0, w.StartNS) }
func (w write) end() time.Time   { return time.Unix(0, w.EndNS) }

func (w write) String() string {
	s := fmt.Sprintf("worker %d #%d %s %s/%q v%d %s [%s .. %s]", w.Worker, w.Seq, w.Op, w.Bucket, w.Key, w.Version, w.Outcome,
		w.start().UTC().Format("15:04:05.000000"), w.end().UTC().Format("15:04:05.000000"))
	if w.SQLState != "" || w.Message != "" {
		s += fmt.Sprintf(" %s %q", w.SQLState, w.Message)
	}
	return s
}

// writerProc is a running writer.
type writerProc struct {
	t       testing.TB
	cmd     *exec.Cmd
	logPath string
	stderr  *clitest.SyncBuffer
	done    chan struct{}
	waitErr error

	mu     sync.Mutex
	off    int64
	writes []write
}

// startWriter starts a writer on db at rate writes/s over 4 connections
// and waits until it has acked 20 writes.
func startWriter(t testing.TB, env *clitest.Env, db string, rate int) *writerProc {
	t.Helper()
	w := &writerProc{t: t, logPath: filepath.Join(env.Dir, "writer-"+db+".jsonl"), stderr: &clitest.SyncBuffer{}, done: make(chan struct{})}
	w.cmd = exec.Command(writerBinary(t), "-url", env.PG.URLWithoutPassword(db), "-log", w.logPath,
		"-rate", strconv.Itoa(rate), "-conns", "4")
	w.cmd.Env = append(os.Environ(), env.Vars...)
	w.cmd.Stdout, w.cmd.Stderr = w.stderr, w.stderr
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { w.waitErr = w.cmd.Wait(); close(w.done) }()
	t.Cleanup(func() {
		select {
		case <-w.done:
		default:
			w.cmd.Process.Kill()
			<-w.done
		}
	})
	w.waitFor(30*time.Second, "the writer's first 20 acked writes", func(ws []write) bool {
		return countWrites(ws, func(x write) bool { return x.Outcome == "acked" }) >= 20
	})
	return w
}

// read returns every write logged so far.
func (w *writerProc) read() []write {
	w.t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	f, err := os.Open(w.logPath)
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		w.t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Seek(w.off, 0); err != nil {
		w.t.Fatal(err)
	}
	r := bufio.NewReader(f)
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			break // a partial last line is read again next time
		}
		w.off += int64(len(line))
		var x write
		if err := jsonUnmarshal(line, &x); err != nil {
			w.t.Fatalf("writer log %s: bad line %q: %v", w.logPath, line, err)
		}
		w.writes = append(w.writes, x)
	}
	return append([]write(nil), w.writes...)
}

// waitFor polls the writer's log until cond holds.
func (w *writerProc) waitFor(within time.Duration, what string, cond func([]write) bool) []write {
	w.t.Helper()
	var ws []write
	clitest.Poll(w.t, within, what, func() bool {
		select {
		case <-w.done:
			w.t.Fatalf("the writer exited (%v) while waiting for %s:\n%s", w.waitErr, what, w.stderr)
		default:
		}
		ws = w.read()
		return cond(ws)
	})
	return ws
}

// waitWritesAfter waits until n writes that started after tm have an
// outcome, and returns the whole log.
func (w *writerProc) waitWritesAfter(tm time.Time, n int, what string) []write {
	w.t.Helper()
	return w.waitFor(60*time.Second, fmt.Sprintf("%d writes started after %s (%s)", n, tm.UTC().Format("15:04:05.000"), what), func(ws []write) bool {
		return countWrites(ws, func(x write) bool { return x.start().After(tm) }) >= n
	})
}

// stop ends the writer with SIGTERM, as a component is stopped, and
// returns its whole log. It must exit 0: it never stopped on its own.
func (w *writerProc) stop() []write {
	w.t.Helper()
	select {
	case <-w.done:
		w.t.Fatalf("the writer stopped on its own (%v):\n%s", w.waitErr, w.stderr)
	default:
	}
	w.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-w.done:
	case <-time.After(60 * time.Second):
		w.cmd.Process.Kill()
		<-w.done
		w.t.Fatalf("the writer did not stop within 60 s of SIGTERM")
	}
	if w.waitErr != nil {
		w.t.Errorf("writer exit: %v\n%s", w.waitErr, w.stderr)
	}
	return w.read()
}

func countWrites(ws []write, f func(write) bool) int {
	n := 0
	for _, x := range ws {
		if f(x) {
			n++
		}
	}
	return n
}

// ---- deployhook processes ----

// ---- detached workers (run) ----

// workerPID polls the worker's pid file in logDir for a pid other than old.
func workerPID(t testing.TB, logDir string, old int) int {
	t.Helper()
	var pid int
	clitest.Poll(t, 20*time.Second, "the worker's pid file in "+logDir, func() bool {
		b, err := os.ReadFile(filepath.Join(logDir, "deployhook.pid"))
		if err != nil {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil && pid > 0 && pid != old
	})
	return pid
}

// readLogDir returns every file of a runit log directory, oldest first.
func readLogDir(dir string) string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return ""
	}
	var names []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "@") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	names = append(names, "current")
	var b strings.Builder
	for _, n := range names {
		if c, err := os.ReadFile(filepath.Join(dir, n)); err == nil {
			b.Write(c)
		}
	}
	return b.String()
}
