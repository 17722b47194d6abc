package harness

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"time"
)

// RunPeakRSS runs cmd and returns its peak resident set size in KiB.
//
// It does not use the rusage of wait4: Go starts children with vfork
// semantics, and Linux folds the high-water RSS of the address space the
// child had before exec (the parent's, here) into ru_maxrss, so a child of
// a large test process reports the test's RSS. The child's own address
// space keeps its high-water mark in /proc/<pid>/status (VmHWM); it only
// grows, so sampling it until exit misses at most the last interval.
func RunPeakRSS(cmd *exec.Cmd) (int64, error) {
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	status := fmt.Sprintf("/proc/%d/status", cmd.Process.Pid)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var peak int64
	for {
		if kib, ok := vmHWM(status); ok && kib > peak {
			peak = kib
		}
		select {
		case err := <-done:
			return peak, err
		case <-tick.C:
		}
	}
}

// vmHWM reads the VmHWM line of a /proc status file, in KiB.
func vmHWM(path string) (int64, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := bytes.CutPrefix(sc.Bytes(), []byte("VmHWM:")); ok {
			n, err := strconv.ParseInt(string(bytes.Fields(v)[0]), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}
