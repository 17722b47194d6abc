//go:build unix

package migrate

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

// A child that exited but was not reaped is a zombie: kill(pid, 0) still
// finds it, yet it must count as dead, or its lock is never reaped.
func TestPIDAliveZombie(t *testing.T) {
	if !pidAlive(os.Getpid()) {
		t.Fatal("this process is not alive")
	}
	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	defer cmd.Wait()
	// Not reaped yet: poll until the child has exited and become a zombie.
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc here")
	}
	for deadline := time.Now().Add(10 * time.Second); !zombie(pid); {
		if time.Now().After(deadline) {
			t.Fatalf("pid %d never became a zombie", pid)
		}
	}
	if pidAlive(pid) {
		t.Fatalf("zombie pid %d counts as alive", pid)
	}
	cmd.Wait()
	if pidAlive(pid) {
		t.Fatalf("reaped pid %d counts as alive", pid)
	}
}
