package migrate

import (
	"testing"
	"time"
)

func TestJitter(t *testing.T) {
	const d = 100 * time.Millisecond
	seen := map[time.Duration]bool{}
	for range 1000 {
		j := jitter(d)
		if j < d/2 || j >= d {
			t.Fatalf("jitter(%v) = %v, outside [%v, %v)", d, j, d/2, d)
		}
		seen[j] = true
	}
	if len(seen) < 100 {
		t.Errorf("jitter(%v) took only %d distinct values in 1000 draws", d, len(seen))
	}
	if jitter(0) != 0 || jitter(1) != 1 {
		t.Errorf("jitter of 0 or 1ns: %v, %v", jitter(0), jitter(1))
	}
}
