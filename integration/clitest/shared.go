package clitest

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/apcera/deployhook/integration/harness"
)

// RunShared is the body of a TestMain whose package shares one PostgreSQL
// and one Consul: it starts them (StartShared with name and opts), hands
// them to set, runs the tests and stops the servers, printing their log
// tails when a test failed. It returns the exit code for os.Exit; 1 when
// the servers did not start.
func RunShared(m *testing.M, name string, set func(*Shared), opts ...harness.ConsulOption) int {
	s, err := StartShared(name, opts...)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	set(s)
	code := m.Run()
	s.Stop(code != 0)
	return code
}

var unsafeName = regexp.MustCompile(`[^a-z0-9]+`)

// SafeName turns a test's name into one fit for a database or a store3
// prefix segment: lower case, each run of other characters than a-z and
// 0-9 replaced by "_".
func SafeName(s string) string {
	return unsafeName.ReplaceAllString(strings.ToLower(s), "_")
}

// LeaderAndFollower waits (at most a minute) for cl to elect a leader and
// returns it and one of the other servers.
func LeaderAndFollower(t testing.TB, cl *harness.ConsulCluster) (leader, follower *harness.Consul) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	leader, err := cl.WaitLeader(ctx)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range cl.Servers {
		if s != leader {
			follower = s
			break
		}
	}
	return leader, follower
}
