package harness

import (
	"os/exec"
	"testing"
)

// A child that touches 64 MiB peaks above that, and one that touches
// nothing stays far below it, whatever the size of this test process.
func TestRunPeakRSS(t *testing.T) {
	big, err := RunPeakRSS(exec.Command("bash", "-c", `x=$(head -c 67108864 /dev/zero | tr '\0' a); echo ${#x} >/dev/null`))
	if err != nil {
		t.Fatal(err)
	}
	small, err := RunPeakRSS(exec.Command("sleep", "0.2"))
	if err != nil {
		t.Fatal(err)
	}
	if big < 64<<10 || small > 16<<10 {
		t.Errorf("peak RSS: %d KiB for a 64 MiB shell string, %d KiB for sleep", big, small)
	}
}
