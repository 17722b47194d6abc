//go:build integration

package harness

import (
	"net"
	"testing"
	"time"
)

// A server of a cluster that finds a port it was given taken exits; the
// others then never elect a leader. The cluster is started again on new
// ports at once, not after the others waited out readyTimeout: seen in CI
// as a three-server test failing with "no leader" after 60 s. Not
// parallel: it swaps freePorts, which parallel tests use after it ends.
func TestClusterStartsAgainWhenAPortWasTaken(t *testing.T) {
	if testing.Short() {
		t.Skip("three servers")
	}
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	calls := 0
	freePorts = func(n int) ([]int, error) {
		calls++
		p, err := FreePorts(n)
		if err == nil && calls == 1 {
			p[portsPerServer+1] = taken.Addr().(*net.TCPAddr).Port // server-2's server (RPC) port
		}
		return p, err
	}
	t.Cleanup(func() { freePorts = FreePorts })
	start := time.Now()
	cl, err := StartConsulClusterDir(t.TempDir(), 3, nil)
	t.Cleanup(func() { cl.Kill() })
	if err != nil {
		t.Fatal(err)
	}
	if calls != 2 {
		t.Errorf("ports picked %d times, want 2: once, then again after server-2 found its port taken", calls)
	}
	// Not a speed claim: a first attempt that waited for a leader until
	// its readiness wait ran out would take at least readyTimeout.
	if took := time.Since(start); took >= readyTimeout {
		t.Errorf("the cluster took %v: the first attempt waited out readyTimeout (%v) instead of ending when server-2 exited", took, readyTimeout)
	}
}
