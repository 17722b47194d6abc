package migrate

import (
	"math/rand/v2"
	"time"
)

// jitter spreads a retry delay over [d/2, d): processes on several hosts
// that failed together (a leader election, a restarted PostgreSQL) then do
// not retry in lockstep.
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	half := d / 2
	return half + rand.N(d-half)
}
