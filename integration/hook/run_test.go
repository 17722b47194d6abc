//go:build integration

package hook

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/apcera/deployhook/integration/clitest"
)

// bigN records take a few seconds to copy into a single Consul server (about
// 25,000 keys/s, DESIGN.md "Performance facts"), long enough to watch the
// migration go on after `run` returned.
const bigN = 200_000

// bigWait bounds a wait for a migration of bigN records: a guard against a
// hang, not a speed target (a shared 2-core machine can take minutes).
const bigWait = "8m"

// `run` returns at once while the worker it started copies in the
// background; a second `run` on the host finds that worker; `wait` then
// sees the migration through.
func TestRunReturnsWhileMigrating(t *testing.T) {
	e := newEnv(t)
	n := e.names("job_manager")
	e.seedBig(n.DB, bigN)
	logDir := filepath.Join(e.Dir, "log", "jm")
	conf := e.conf(clitest.Conf{Database: n.DB, Prefix: n.Prefix, LogDir: logDir})

	r := e.run(0, "-f", conf, "--hostname", "central-1")
	if r.Took >= time.Second {
		t.Errorf("run took %v, want under a second:\n%s", r.Took, r)
	}
	pid, ok := pidIn(startedRE, r.Stderr)
	if !ok {
		t.Fatalf("run did not report a started worker:\n%s", r)
	}

	// The migration goes on after run returned: .status says running.
	var sawRunning bool
	eventually(t, 60*time.Second, ".status running or .done", func() bool {
		st, dn := e.status(n.Prefix)
		if st != nil && st.State == "running" {
			sawRunning = true
			return true
		}
		return dn != nil
	})
	if !sawRunning {
		t.Errorf("never saw .status running: the migration of %d records was over before the first poll after run returned", bigN)
	}
	if !alive(pid) {
		t.Errorf("worker %d is not running while the migration is", pid)
	}

	// A second run on the same host while the worker runs starts no other.
	eventually(t, 10*time.Second, "the worker's pid file", func() bool {
		p, ok := workerPid(logDir)
		return ok && p == pid
	})
	r2 := e.run(0, "-f", conf, "--hostname", "central-1")
	if got, ok := pidIn(runningRE, r2.Stderr); !ok || got != pid {
		t.Errorf("second run: want \"already running (pid %d)\":\n%s", pid, r2)
	}
	if got := workersFor(conf); !slices.Equal(got, []int{pid}) {
		t.Errorf("workers for %s: %v, want only %d", conf, got, pid)
	}

	w := e.MustRun(0, "wait", "-f", conf, "--timeout", bigWait)
	if !strings.Contains(w.Stdout, "job_manager: done: migrated by central-1") {
		t.Errorf("wait output:\n%s", w)
	}
	e.AssertMigrated(n.Prefix, bigRecords(bigN))
	waitWorkerExit(t, logDir)
	starts := 0
	for _, l := range readLog(t, logDir) {
		if strings.HasSuffix(l, "] Starting store2 -> store3 migration...") {
			starts++
		}
	}
	if starts != 1 {
		t.Errorf("%d \"Starting\" lines in %s, want 1:\n%s", starts, logDir, strings.Join(readLog(t, logDir), "\n"))
	}
}

// Chef is killed (SIGKILL to its whole process group) right after `run`
// printed its line: the worker lives on in a session of its own, holds no
// descriptor Chef gave it, and finishes the migration.
func TestChefParentKilled(t *testing.T) {
	e := newEnv(t)
	n := e.names("job_manager")
	e.seedBig(n.DB, bigN)
	logDir := filepath.Join(e.Dir, "log", "jm")
	conf := e.conf(clitest.Conf{Database: n.DB, Prefix: n.Prefix, LogDir: logDir})

	// Chef's extra descriptor: a pipe whose write end the parent hands down
	// (as fd 3). A worker that kept it would keep the read end from EOF.
	extraR, extraW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer extraR.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(extraW.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	extraIno := st.Ino

	cmd := exec.Command("/bin/sh", "-c", shq(e.Bin)+" run -f "+shq(conf)+" --hostname central-1; sleep 600")
	cmd.Env = append(os.Environ(), e.Vars...)
	cmd.ExtraFiles = []*os.File{extraW}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	errR, errW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer errR.Close()
	if err := syscall.Fstat(int(errW.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	stderrIno := st.Ino
	cmd.Stderr = errW
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	extraW.Close()
	errW.Close()
	pgid := cmd.Process.Pid
	t.Cleanup(func() {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		_ = cmd.Wait()
	})

	lines := make(chan string, 16)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(errR)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	var pid int
	var seen []string
	timeout := time.After(30 * time.Second)
	for pid == 0 {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("the parent's stderr closed before run's line:\n%s", strings.Join(seen, "\n"))
			}
			seen = append(seen, l)
			pid, _ = pidIn(startedRE, l)
		case <-timeout:
			t.Fatalf("no \"started\" line from run within 30s:\n%s", strings.Join(seen, "\n"))
		}
	}
	recordLatency(time.Since(start))

	if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill the parent's process group: %v", err)
	}
	_ = cmd.Wait()

	if !alive(pid) {
		t.Fatalf("worker %d died with its Chef-like parent", pid)
	}
	eventually(t, 10*time.Second, "the worker's pid file", func() bool {
		p, ok := workerPid(logDir)
		return ok && p == pid
	})

	// Chef's pipes reach EOF: nobody else holds their write ends.
	extraEOF := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, extraR)
		close(extraEOF)
	}()
	select {
	case <-extraEOF:
	case <-time.After(10 * time.Second):
		t.Errorf("the parent's extra pipe (fd 3) never reached EOF: the worker holds it, and would hang a Chef run")
	}
	stderrEOF := time.After(10 * time.Second)
drain:
	for {
		select {
		case _, ok := <-lines:
			if !ok {
				break drain
			}
		case <-stderrEOF:
			t.Errorf("the parent's stderr never reached EOF: the worker holds it, and would hang a Chef run")
			break drain
		}
	}

	fds, err := os.ReadDir("/proc/" + itoa(pid) + "/fd")
	if err != nil {
		t.Fatalf("worker %d fds: %v", pid, err)
	}
	var got []string
	for _, fd := range fds {
		target, err := os.Readlink("/proc/" + itoa(pid) + "/fd/" + fd.Name())
		if err != nil {
			continue // closed meanwhile
		}
		got = append(got, fd.Name()+" -> "+target)
		switch {
		case fd.Name() == "0":
			if target != "/dev/null" {
				t.Errorf("worker fd %s -> %s, want /dev/null", fd.Name(), target)
			}
		case fd.Name() == "1" || fd.Name() == "2":
			// Its crash output (a panic) must land in its log directory.
			if want := filepath.Join(logDir, "deployhook.stderr"); target != want {
				t.Errorf("worker fd %s -> %s, want %s", fd.Name(), target, want)
			}
		case target == "pipe:["+utoa(extraIno)+"]":
			t.Errorf("worker fd %s is the parent's extra pipe %s", fd.Name(), target)
		case target == "pipe:["+utoa(stderrIno)+"]":
			t.Errorf("worker fd %s is the parent's stderr pipe %s", fd.Name(), target)
		case strings.HasPrefix(target, "anon_inode:"), strings.HasPrefix(target, "socket:"),
			strings.HasPrefix(target, "pipe:"), strings.HasPrefix(target, logDir+"/"),
			strings.HasPrefix(target, "/sys/fs/cgroup/"), resolverFiles[target]:
			// the Go runtime's (netpoll; the cgroup CPU limit behind
			// GOMAXPROCS), its connections, its own log directory, and
			// the files Go's resolver reads for a moment while it dials
		default:
			t.Errorf("worker fd %s -> %s: not a descriptor the worker opened itself", fd.Name(), target)
		}
	}
	t.Logf("worker %d descriptors: %s", pid, strings.Join(got, ", "))

	e.MustRun(0, "wait", "-f", conf, "--timeout", bigWait)
	e.AssertMigrated(n.Prefix, bigRecords(bigN))
	waitWorkerExit(t, logDir)
}

// resolverFiles are the files Go's net package opens, briefly, to resolve a
// host name: the worker opens them itself while it dials store2 or store3.
var resolverFiles = map[string]bool{
	"/etc/nsswitch.conf": true, "/etc/hosts": true, "/etc/resolv.conf": true,
	"/etc/host.conf": true, "/etc/services": true, "/etc/gai.conf": true,
}

// The worker dies mid-copy (a host crash, an OOM kill): the next deploy's
// run on the same host starts a new worker, which takes the lock over and
// completes the migration.
func TestWorkerKilledThenRedeploy(t *testing.T) {
	e := newEnv(t)
	n := e.names("auth_server")
	const count = 100_000
	e.seedBig(n.DB, count)
	logDir := filepath.Join(e.Dir, "log", "as")
	conf := e.conf(clitest.Conf{Component: "auth_server", Database: n.DB, Prefix: n.Prefix, LogDir: logDir})

	r := e.run(0, "-f", conf, "--hostname", "central-1")
	pid, ok := pidIn(startedRE, r.Stderr)
	if !ok {
		t.Fatalf("no worker started:\n%s", r)
	}
	eventually(t, 60*time.Second, ".status running with records copied", func() bool {
		st, _ := e.status(n.Prefix)
		return st != nil && st.State == "running" && st.RecordsDone > 0
	})
	killPid(pid)
	eventually(t, 10*time.Second, "the killed worker to die", func() bool { return !alive(pid) })

	start := time.Now()
	r = e.run(0, "-f", conf, "--hostname", "central-1")
	pid2, ok := pidIn(startedRE, r.Stderr)
	if !ok || pid2 == pid {
		t.Fatalf("the redeploy did not start a new worker:\n%s", r)
	}
	e.MustRun(0, "wait", "-f", conf, "--timeout", bigWait)
	t.Logf("redeploy to done: %v", time.Since(start))
	e.AssertMigrated(n.Prefix, bigRecords(count))
	waitWorkerExit(t, logDir)
	var reaped bool
	for _, l := range readLog(t, logDir) {
		reaped = reaped || strings.Contains(l, "which no longer exists: destroying its session")
	}
	t.Logf("new worker destroyed the dead holder's session (rather than waiting out its TTL): %t", reaped)
}
