package clitest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// SyncBuffer is a bytes.Buffer safe for a process writing and a test
// reading at the same time.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Proc is a foreground deployhook process a test started and may signal.
// Ended and Code are set once Done is closed.
type Proc struct {
	Cmd            *exec.Cmd
	Stdout, Stderr *SyncBuffer
	Started        time.Time // just before the process started
	Ended          time.Time // when Wait returned
	Code           int       // exit code; -signal when killed by one, -1000 when Wait failed otherwise
	done           chan struct{}
}

// StartProc starts deployhook with args in env, collecting its output. The
// test's cleanup kills it if it is still running.
func StartProc(t testing.TB, env *Env, args ...string) *Proc {
	t.Helper()
	p := &Proc{Cmd: env.Command(args...), Stdout: &SyncBuffer{}, Stderr: &SyncBuffer{}, done: make(chan struct{})}
	p.Cmd.Stdout, p.Cmd.Stderr = p.Stdout, p.Stderr
	p.Started = time.Now()
	if err := p.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		err := p.Cmd.Wait()
		p.Ended = time.Now()
		if ee, ok := err.(*exec.ExitError); ok {
			p.Code = ee.ExitCode()
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				p.Code = -int(ws.Signal())
			}
		} else if err != nil {
			p.Code = -1000
		}
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.Cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Wait waits for the process to exit, at most d, and returns its exit code
// (-signal when killed). After d it kills the process and fails the test.
func (p *Proc) Wait(t testing.TB, d time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.Code
	case <-time.After(d):
		p.Cmd.Process.Kill()
		<-p.done
		t.Fatalf("deployhook %v did not exit within %v\nstderr:\n%s", p.Cmd.Args[1:], d, p.Stderr)
		return 0
	}
}

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// String is the command line, the exit code and both outputs, for a
// failure message.
func (p *Proc) String() string {
	return fmt.Sprintf("deployhook %s (exit %d)\n--- stdout\n%s--- stderr\n%s", strings.Join(p.Cmd.Args[1:], " "), p.Code, p.Stdout, p.Stderr)
}

// WaitLog waits until the process's standard error holds s, or it exits,
// failing the test after within. It reports whether s was logged.
func (p *Proc) WaitLog(t testing.TB, within time.Duration, s string) bool {
	t.Helper()
	Poll(t, within, fmt.Sprintf("%q in the log of deployhook %s", s, strings.Join(p.Cmd.Args[1:], " ")), func() bool {
		return strings.Contains(p.Stderr.String(), s) || p.Exited()
	})
	return strings.Contains(p.Stderr.String(), s)
}

// Poll calls cond until it returns true, failing the test after within.
func Poll(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// ReapPID waits for a detached worker re-parented to the test process
// (PR_SET_CHILD_SUBREAPER) to exit and reaps it, returning its exit code
// (-signal when killed by one). After within it kills the worker and fails
// the test.
func ReapPID(t testing.TB, pid int, within time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		var ws unix.WaitStatus
		got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil)
		switch {
		case err != nil:
			t.Fatalf("wait4(%d): %v (not re-parented to the test?)", pid, err)
		case got == pid && ws.Signaled():
			return -int(ws.Signal())
		case got == pid:
			return ws.ExitStatus()
		}
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("worker %d did not exit within %v", pid, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// childWorkers lists the deployhook processes whose parent is the test
// process (workers re-parented to it by PR_SET_CHILD_SUBREAPER), with the
// state letter of /proc/<pid>/stat ("Z" for one that exited unreaped).
func childWorkers() map[int]string {
	out := make(map[int]string)
	me := strconv.Itoa(os.Getpid())
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 || !strings.Contains(s[:i], "(deployhook") {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 2 || f[1] != me {
			continue
		}
		out[pid] = f[0]
	}
	return out
}

// ReapWorkers reaps every exited (zombie) deployhook worker re-parented to
// the test process and reports whether any other is still alive. Call it
// only while no exec.Cmd of the test is running: it would steal their exit
// status.
func ReapWorkers() (alive bool) {
	for pid, state := range childWorkers() {
		if state != "Z" {
			alive = true
			continue
		}
		var ws unix.WaitStatus
		unix.Wait4(pid, &ws, unix.WNOHANG, nil)
	}
	return alive
}

// WaitWorkersGone waits until no deployhook worker re-parented to the test
// process is alive, reaping those that exited, and fails the test after
// within.
func WaitWorkersGone(t testing.TB, within time.Duration) {
	t.Helper()
	Poll(t, within, "the workers to exit", func() bool { return !ReapWorkers() })
}
