package main

import (
	"os"
	"testing"
)

// TestMain lets the test binary stand in for deployhook where `run` starts
// a worker (os.Executable is the test binary): invoked as `migrate ...`,
// it is deployhook.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "migrate" {
		os.Exit(runMain(os.Args, os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}
