package main

import (
	"math"
	"os"
	"runtime/debug"
	"testing"
)

// The migration's collector settings apply unless the environment has its
// own: an operator's GOGC or GOMEMLIMIT wins.
func TestTuneGC(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(math.MaxInt64))
	unset := func(name string) {
		if v, ok := os.LookupEnv(name); ok {
			t.Cleanup(func() { os.Setenv(name, v) })
		}
		os.Unsetenv(name)
	}
	read := func() (percent int, limit int64) {
		percent = debug.SetGCPercent(100)
		debug.SetGCPercent(percent)
		return percent, debug.SetMemoryLimit(-1) // a negative limit only reads it
	}

	unset("GOGC")
	unset("GOMEMLIMIT")
	tuneGC()
	if p, l := read(); p != migrationGCPercent || l != migrationMemoryLimit {
		t.Errorf("nothing in the environment: GOGC %d, memory limit %d; want %d and %d", p, l, migrationGCPercent, migrationMemoryLimit)
	}

	debug.SetGCPercent(100)
	debug.SetMemoryLimit(math.MaxInt64)
	t.Setenv("GOGC", "150")
	t.Setenv("GOMEMLIMIT", "1GiB")
	tuneGC()
	if p, l := read(); p != 100 || l != math.MaxInt64 {
		t.Errorf("GOGC and GOMEMLIMIT set: tuneGC changed the collector to GOGC %d, memory limit %d", p, l)
	}
}
