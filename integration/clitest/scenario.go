package clitest

import (
	"fmt"
	"os"
	"testing"
)

// Soak is true under SOAK=1 (make soak): the scenario suites run their
// long variants, more runs of each scenario.
var Soak = os.Getenv("SOAK") == "1"

// Count picks the number of runs of a scenario: ci, or long under Soak.
func Count(ci, long int) int {
	if Soak {
		return long
	}
	return ci
}

// Scenario registers the RELIABILITY line of a scenario test, built when
// the test ends, with its result (pass, fail or skip) and *runs, the
// number of runs that actually ran; ci and long are the runs of CI and of
// SOAK=1 (Count); soak= is Soak. The line goes to the test's log
// and, when record is not nil, to record. Its format is what
// integration/reliability/cmd/report parses:
//
//	RELIABILITY scenario="crash-kill9" runs=5 ci_runs=5 soak_runs=20 soak=false result=pass
//
// Scenario and its cleanup are test helpers, so that the line is logged
// at the caller's place in its _test.go file, as before it moved here.
func Scenario(t *testing.T, name string, ci, long int, runs *int, record func(line string)) {
	t.Helper()
	t.Cleanup(func() {
		t.Helper()
		result := "pass"
		switch {
		case t.Failed():
			result = "fail"
		case t.Skipped():
			result = "skip"
		}
		line := fmt.Sprintf("RELIABILITY scenario=%q runs=%d ci_runs=%d soak_runs=%d soak=%t result=%s", name, *runs, ci, long, Soak, result)
		t.Log(line)
		if record != nil {
			record(line)
		}
	})
}
