package main

// The worker protocol, all of it: `run` starts `deployhook migrate
// --worker` detached; the worker owns the component's log directory while
// it runs and says what it is doing through three files there:
//
//	deployhook.pid     its pid, written once it holds the directory's lock,
//	                   removed when it exits (a pid file whose process is
//	                   gone is a worker that died: killed, or a crash)
//	deployhook.exit    JSON {pid, code, error, finished}: how the last
//	                   worker ended, written just before it exits; removed
//	                   by the next worker when it starts
//	deployhook.stderr  the worker's standard error (panics and runtime
//	                   crashes included), appended to; `run` opens it
//
// `run` returns once the pid file exists (or the worker already ended), so
// a `wait` that follows tells a live worker from one that ended: see
// readWorker.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/apcera/deployhook/runitlog"
	"github.com/apcera/deployhook/validate"
)

// The worker's files in the component's log directory.
const (
	pidFileName    = "deployhook.pid"
	exitFileName   = "deployhook.exit"
	stderrFileName = "deployhook.stderr"
)

// workerFlag marks the detached background process that `run` starts. It
// logs to the component's runit log directory instead of standard error.
var workerFlag = &cli.BoolFlag{Name: "worker", Hidden: true}

// workerExit is deployhook.exit.
type workerExit struct {
	PID      int       `json:"pid"`
	Code     int       `json:"code"`
	Error    string    `json:"error"`
	Finished time.Time `json:"finished"`
}

// runWorker is the detached process `run` starts: it owns the component's
// log directory for as long as it runs, and records its pid there so that a
// second `run` on this host finds it instead of starting another.
func runWorker(c *cli.Context, comp *validate.Component) (err error) {
	dir, err := runitlog.Open(comp.LogDir, runitlog.Options{})
	if err != nil {
		if errors.Is(err, runitlog.ErrLocked) {
			return withCode(exitInvalid, err)
		}
		return withCode(exitFailure, err)
	}
	defer dir.Close()
	_ = os.Remove(filepath.Join(comp.LogDir, exitFileName)) // the last worker's
	pidFile := filepath.Join(comp.LogDir, pidFileName)
	if err := writeFileAtomic(pidFile, []byte(strconv.Itoa(os.Getpid())+"\n")); err != nil {
		return withCode(exitFailure, fmt.Errorf("write pid file: %w", err))
	}
	defer func() {
		// The exit file before the pid file goes: a reader that finds
		// neither a live pid nor an exit file saw a worker that died.
		ex := workerExit{PID: os.Getpid(), Code: codeOf(err), Finished: time.Now().UTC()}
		if err != nil {
			ex.Error = err.Error()
		}
		p := recover()
		if p != nil {
			// Recorded, then re-raised: the runtime writes the trace to
			// deployhook.stderr and the process dies as it would have.
			ex.Code, ex.Error = exitFailure, fmt.Sprintf("panic: %v (the trace is in %s)", p, stderrFileName)
		}
		b, _ := json.Marshal(ex)
		if werr := writeFileAtomic(filepath.Join(comp.LogDir, exitFileName), append(b, '\n')); werr != nil {
			newLog(dir).Errorf("write %s: %v", exitFileName, werr)
		}
		os.Remove(pidFile)
		if p != nil {
			panic(p)
		}
	}()
	err = migrateComponent(c, comp, dir, nil)
	if err != nil && !errors.Is(err, context.Canceled) {
		// The migrator logged the failure through the platform format;
		// this line names the exit code for whoever reads the log later.
		newLog(dir).Errorf("deployhook worker exiting with code %d: %v", codeOf(err), err)
	}
	return err
}

// writeFileAtomic writes name whole under a temporary name first, so that
// a reader never sees a partial file.
func writeFileAtomic(name string, b []byte) error {
	tmp := name + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, name)
}

// startWorker starts `deployhook migrate --worker` for comp, detached: in a
// session of its own, standard input on /dev/null, standard output and
// error appended to deployhook.stderr in the log directory, no other
// descriptor inherited, working directory /. It returns the worker's pid
// and whether it was started now (false: one was already running on this
// host).
//
// Chef may run `run` several times at once: their looks at the directory's
// lock (which take it for an instant) and their workers race for it. A run
// that finds it locked waits for the holder to record its pid or to let
// go; one whose worker lost the race starts over; for lockWait in all.
func startWorker(c *cli.Context, comp *validate.Component) (int, bool, error) {
	deadline := time.Now().Add(lockWait)
	for {
		pid, started, err := startWorkerOnce(c, comp, deadline)
		if !errors.Is(err, errLostTheDirectory) {
			return pid, started, err
		}
	}
}

// lockWait bounds how long `run` waits for a log directory another process
// holds: a worker writes its pid file right after taking the lock, a look
// at the lock lets go at once.
const lockWait = 2 * time.Second

// errLostTheDirectory: the worker this run started found the log directory
// locked, by another run's worker or look, and exited without running.
var errLostTheDirectory = errors.New("the worker lost the log directory to another process")

// startWorkerOnce starts a worker unless the log directory's lock shows
// one running (awaitDirectory).
func startWorkerOnce(c *cli.Context, comp *validate.Component, deadline time.Time) (int, bool, error) {
	holder, free, err := awaitDirectory(c.Context, comp.LogDir, deadline)
	if err != nil {
		return 0, false, exitf(exitInvalid, "log_dir of %s is unusable (%v): point it at a directory deployhook may create and write", comp.File, err)
	}
	if holder != 0 {
		return holder, false, nil
	}
	if !free {
		return 0, false, exitf(exitInvalid, "log_dir %s is held by another process (an svlogd?): point log_dir of %s elsewhere", comp.LogDir, comp.File)
	}
	exe, err := os.Executable()
	if err != nil {
		return 0, false, withCode(exitFailure, fmt.Errorf("find own executable: %w", err))
	}
	conf, err := filepath.Abs(comp.File)
	if err != nil {
		return 0, false, withCode(exitFailure, err)
	}
	args := []string{"migrate", "-f", conf, "--hostname", hostname(c), "--" + workerFlag.Name}
	if c.IsSet(kindFlag.Name) {
		args = append(args, "-"+kindFlag.Name, c.String(kindFlag.Name))
	}
	if c.IsSet(migrateFlag.Name) {
		args = append(args, "-"+migrateFlag.Name+"="+strconv.FormatBool(c.Bool(migrateFlag.Name)))
	}
	args = append(args, onlineArgs(c)...)
	stderr, err := openWorkerStderr(comp.LogDir)
	if err != nil {
		return 0, false, exitf(exitInvalid, "log_dir of %s is unusable (%v): point it at a directory deployhook may create and write", comp.File, err)
	}
	defer stderr.Close()
	if err := cloexecInherited(); err != nil {
		return 0, false, withCode(exitFailure, err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Dir = "/"
	cmd.Stdout, cmd.Stderr = stderr, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, false, withCode(exitFailure, fmt.Errorf("start worker: %w", err))
	}
	pid := cmd.Process.Pid
	exited := make(chan int, 1)
	go func() {
		_ = cmd.Wait()
		exited <- cmd.ProcessState.ExitCode()
	}()
	// Return once the worker owns its log directory and has written its
	// pid file: a `wait` that follows can then tell a live worker from one
	// that already ended. The worker outlives us; init reaps it.
	started := time.NewTimer(2 * time.Second)
	defer started.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if p, ok := runningWorker(comp.LogDir); ok {
			return p, p == pid, nil
		}
		select {
		case code := <-exited:
			// A worker that ran leaves an exit file; one that could not
			// take the directory leaves none.
			if ex, ok := readExit(comp.LogDir); code == exitInvalid && (!ok || ex.PID != pid) && time.Now().Before(deadline) {
				return 0, false, errLostTheDirectory
			}
			// Finished already (or failed: wait says why, from store3 and
			// deployhook.exit).
			return pid, true, nil
		case <-started.C:
			return pid, true, nil
		case <-c.Context.Done():
			return pid, true, nil
		case <-tick.C:
		}
	}
}

// openWorkerStderr opens deployhook.stderr for appending, creating the log
// directory (0755, as svlogd's) when missing.
func openWorkerStderr(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create log directory: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, stderrFileName), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open worker stderr: %w", err)
	}
	return f, nil
}

// cloexecInherited marks every descriptor above standard error close-on-exec:
// Go opens its own that way, but those Chef handed us are not, and a worker
// that held one would keep the Chef run waiting.
func cloexecInherited() error {
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err == nil {
		return nil
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return fmt.Errorf("list inherited descriptors: %w", err)
	}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd < 3 {
			continue
		}
		unix.CloseOnExec(fd)
	}
	return nil
}

// awaitDirectory waits, until deadline, for the process that holds dir's
// lock to show itself as a worker (it takes the lock first and writes its
// pid file right after) or to let go: it returns the worker's pid, or free
// when the directory is not locked (any more), or neither at the deadline.
func awaitDirectory(ctx context.Context, dir string, deadline time.Time) (pid int, free bool, err error) {
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond) // polling a file another process writes
	defer tick.Stop()
	for {
		locked, err := runitlog.Locked(dir)
		if err != nil || !locked {
			return 0, err == nil, err
		}
		if pid, ok := runningWorker(dir); ok {
			return pid, false, nil
		}
		select {
		case <-ctx.Done():
			return 0, false, nil
		case <-tick.C:
		}
	}
}

// runningWorker returns the pid recorded in dir's pid file when that process
// is alive and is a deployhook worker.
func runningWorker(dir string) (int, bool) {
	pid, ok := recordedPID(dir)
	return pid, ok && isWorker(pid)
}

func recordedPID(dir string) (int, bool) {
	b, err := os.ReadFile(filepath.Join(dir, pidFileName))
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid, err == nil && pid > 0
}

func isWorker(pid int) bool {
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return err == nil && strings.Contains(string(cmdline), "\x00--"+workerFlag.Name)
}

// localWorker is what this host's log directory says about its worker.
type localWorker struct {
	Ran   bool        `json:"ran"`   // the directory exists: a worker ran here
	PID   int         `json:"pid"`   // the last worker's pid
	Alive bool        `json:"alive"` // it is running now
	Exit  *workerExit `json:"exit"`  // how it ended, when it said so
	// Died: it ended without a result, killed or crashed, or it exited
	// with a failure code; Why says which.
	Died bool   `json:"died"`
	Why  string `json:"why"`
}

// readWorker reads the worker protocol's files in dir.
func readWorker(dir string) localWorker {
	var w localWorker
	if _, err := os.Stat(dir); err != nil {
		return w
	}
	w.Ran = true
	if pid, ok := recordedPID(dir); ok {
		w.PID = pid
		if isWorker(pid) {
			w.Alive = true
			return w
		}
		// A pid file outlives its worker only when the worker could not
		// remove it: killed, or crashed. Read the exit file too: it may
		// have ended in the instant between the two reads.
	}
	if ex, ok := readExit(dir); ok {
		w.Exit, w.PID = &ex, ex.PID
		if ex.Code != exitOK {
			w.Died, w.Why = true, fmt.Sprintf("the worker (pid %d) exited with code %d: %s", ex.PID, ex.Code, ex.Error)
		}
		return w
	}
	if w.PID != 0 {
		w.Died, w.Why = true, fmt.Sprintf("the worker (pid %d) died without a result (killed, or crashed: see %s)", w.PID, filepath.Join(dir, stderrFileName))
	}
	return w
}

// readExit reads the exit file the last worker in dir wrote.
func readExit(dir string) (workerExit, bool) {
	var ex workerExit
	b, err := os.ReadFile(filepath.Join(dir, exitFileName))
	return ex, err == nil && json.Unmarshal(b, &ex) == nil
}

// logTail returns the last n lines of the worker's log (current) and of its
// standard error, for a report on a worker that died.
func logTail(dir string, n int) []string {
	var out []string
	for _, name := range []string{"current", stderrFileName} {
		for _, l := range tailLines(filepath.Join(dir, name), n) {
			out = append(out, name+": "+l)
		}
	}
	return out
}

// tailLines returns the last n lines of the file, reading at most 64 KiB
// of its end.
func tailLines(name string, n int) []string {
	f, err := os.Open(name)
	if err != nil {
		return nil
	}
	defer f.Close()
	const window = 64 << 10
	st, err := f.Stat()
	if err != nil {
		return nil
	}
	off := max(st.Size()-window, 0)
	b, err := io.ReadAll(io.NewSectionReader(f, off, st.Size()-off))
	if err != nil {
		return nil
	}
	lines := strings.Split(string(bytes.TrimRight(b, "\n")), "\n")
	if off > 0 && len(lines) > 1 {
		lines = lines[1:] // cut mid-line
	}
	if len(lines) == 1 && lines[0] == "" {
		return nil
	}
	return lines[max(len(lines)-n, 0):]
}
