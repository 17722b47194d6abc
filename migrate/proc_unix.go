//go:build unix

package migrate

import (
	"errors"
	"syscall"
)

// pidAlive reports whether a process with pid exists on this host: kill(pid, 0).
func pidAlive(pid int) bool {
	if pid <= 0 {
		return true // unknown: never declare it dead
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
