package main

import (
	"bytes"
	"regexp"
	"testing"

	"github.com/apcera/deployhook/migrate"
)

func TestStatusTableShowsPhase(t *testing.T) {
	for _, tc := range []struct {
		status migrate.Status
		want   string
	}{
		{migrate.Status{State: migrate.StateRunning, Phase: migrate.PhaseCopying}, `running \(copying\)`},
		{migrate.Status{State: migrate.StateRunning, Phase: migrate.PhaseCatchingUp}, `running \(catching-up\)`},
		{migrate.Status{State: migrate.StateRunning, Phase: migrate.PhaseCatchingUp, Round: 2, Delta: 37}, `running \(catching-up, round 2: 37 changed\)`},
		{migrate.Status{State: migrate.StateRunning, Phase: migrate.PhaseCutover, Round: 3}, `running \(cutover, store2 frozen\)`},
		{migrate.Status{State: migrate.StateRunning}, `running  `},
	} {
		var b bytes.Buffer
		s := tc.status
		s.Host, s.PID, s.Session = "central-1", 42, "sid"
		writeStatusTable(&b, []componentState{{Component: "job_manager", State: "running", Phase: s.Phase,
			Lock: lockState{Held: true, Session: "sid"}, Status: &s}})
		if !regexp.MustCompile(`(?m)^job_manager\s+` + tc.want).MatchString(b.String()) {
			t.Errorf("status %+v: table\n%s\nlacks %q", tc.status, b.String(), tc.want)
		}
	}
}
