//go:build integration

package cli

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/apcera/deployhook/integration/clitest"
)

// startSlowMigration seeds enough records for a migration that lasts a few
// seconds, starts it with run, and returns the conf, the log directory and
// the worker's pid once .status shows it copying.
func (e *env) startSlowMigration(t *testing.T) (conf, logDir string, pid int) {
	t.Helper()
	const n = 150_000
	e.seedMany(n)
	logDir = filepath.Join(e.Dir, "log")
	conf = e.conf(0, clitest.Conf{LogDir: logDir})
	e.MustRun(0, "run", "-f", conf)
	b, err := os.ReadFile(filepath.Join(logDir, "deployhook.pid"))
	if err != nil {
		t.Fatalf("run returned without the worker's pid file: %v", err)
	}
	pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	waitFor(t, time.Minute, "the worker to copy", func() bool {
		resp, body := clitest.ConsulRequest(t, "GET", e.Consul.Addr(), e.Token, "/v1/kv/"+e.prefix()+"migration/.status?raw", nil)
		var st struct {
			State       string `json:"state"`
			RecordsDone int64  `json:"records_done"`
		}
		return resp.StatusCode == http.StatusOK && json.Unmarshal(body, &st) == nil && st.State == "running" && st.RecordsDone > 0 && st.RecordsDone < n
	})
	return conf, logDir, pid
}

// A worker killed mid-copy cannot say so; store3 shows it running until its
// session's TTL runs out. wait on its host sees it dead at once: exit 5,
// the reason, and the last lines of its log.
func TestWaitSeesWorkerKilledMidRun(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	conf, _, pid := e.startSlowMigration(t)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the worker to die", func() bool { return !alive(pid) })

	r := e.MustRun(5, "wait", "-f", conf, "--timeout", "5m")
	for _, want := range []string{"job_manager: FAILED on this host: the worker (pid " + strconv.Itoa(pid) + ") died without a result",
		"the last lines of its log:", "current: ", "Starting store2 -> store3 migration..."} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("wait output lacks %q:\n%s", want, r)
		}
	}

	r = e.MustRun(5, "wait", "-f", conf, "--timeout", "5m", "--format", "json")
	var got struct {
		Version   int    `json:"version"`
		Component string `json:"component"`
		Result    string `json:"result"`
		Reason    string `json:"reason"`
		Worker    struct {
			PID   int  `json:"pid"`
			Alive bool `json:"alive"`
			Died  bool `json:"died"`
		} `json:"worker"`
		LogTail []string `json:"log_tail"`
	}
	if err := json.Unmarshal([]byte(r.Stdout), &got); err != nil {
		t.Fatalf("wait json: %v\n%s", err, r)
	}
	if got.Version != 1 || got.Component != "job_manager" || got.Result != "failed" || !got.Worker.Died || got.Worker.PID != pid || len(got.LogTail) == 0 {
		t.Errorf("wait json: %+v\n%s", got, r)
	}
}

// A worker's crash output (here the runtime's dump on SIGQUIT, as a panic
// writes it) lands in its log directory, and wait shows its end.
func TestWorkerCrashOutputInLogDir(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	conf, logDir, pid := e.startSlowMigration(t)
	if err := syscall.Kill(pid, syscall.SIGQUIT); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the worker to die", func() bool { return !alive(pid) })
	b, err := os.ReadFile(filepath.Join(logDir, "deployhook.stderr"))
	if err != nil || !bytes.Contains(b, []byte("SIGQUIT: quit")) || !bytes.Contains(b, []byte("goroutine ")) {
		t.Fatalf("deployhook.stderr lacks the crash output (%v):\n%s", err, b)
	}
	r := e.MustRun(5, "wait", "-f", conf, "--timeout", "5m")
	if !strings.Contains(r.Stdout, "died without a result") || !strings.Contains(r.Stdout, "deployhook.stderr: ") {
		t.Errorf("wait does not show the crash:\n%s", r)
	}
}
