//go:build unix

package migrate

import (
	"bytes"
	"errors"
	"os"
	"strconv"
	"syscall"
)

// pidAlive reports whether a process with pid runs on this host: kill(pid,
// 0) finds it, and /proc, where there is one, does not show it a zombie. A
// killed worker whose parent never reaps it stays a zombie for good (a
// container whose pid 1 is not an init), and must count as dead.
func pidAlive(pid int) bool {
	if pid <= 0 {
		return true // unknown: never declare it dead
	}
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	return !zombie(pid)
}

// zombie reads the process state from /proc/<pid>/stat: "pid (comm) S ...",
// where comm may itself hold spaces and parentheses.
func zombie(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return false
	}
	state := b[i+2]
	return state == 'Z' || state == 'X'
}
