package migrate

import "context"

// SessionProber is a Locker that can tell, without creating anything,
// whether its token may create the lock's session (Consul's session:write
// on the agent's node). The dry run asks when the Locker has it.
type SessionProber interface {
	// ProbeSession reports whether a session may be created; reason says
	// why not, or what could not be checked.
	ProbeSession(ctx context.Context) (ok bool, reason string, err error)
}

// probeSession asks l, when it can tell, whether the lock's session may be
// created.
func probeSession(ctx context.Context, l Locker) (ok bool, reason string, err error) {
	p, can := l.(SessionProber)
	if !can {
		return true, "not checked (the locker cannot tell without creating a session)", nil
	}
	return p.ProbeSession(ctx)
}
