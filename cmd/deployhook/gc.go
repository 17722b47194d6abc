package main

import (
	"os"
	"runtime/debug"
)

// The migration's garbage collector runs less often than Go's default.
// Its live heap is small and nearly constant (a few MiB: the batches in
// flight, one chunk of a listing, the tallies), while it allocates tens of
// bytes for every byte it moves; at GOGC=100 it collected every few MiB,
// and on the two cores Consul keeps busy that CPU is Consul's. A heap
// goal of five times the live heap, capped by a soft memory limit well
// under the 64 MiB the migration is held to, takes most of that away
// (README, Performance). GOGC and GOMEMLIMIT set in the environment win.
const (
	migrationGCPercent   = 400
	migrationMemoryLimit = 40 << 20 // bytes
)

// tuneGC applies the migration's collector settings, each unless the
// environment sets its own.
func tuneGC() {
	if _, ok := os.LookupEnv("GOGC"); !ok {
		debug.SetGCPercent(migrationGCPercent)
	}
	if _, ok := os.LookupEnv("GOMEMLIMIT"); !ok {
		debug.SetMemoryLimit(migrationMemoryLimit)
	}
}
