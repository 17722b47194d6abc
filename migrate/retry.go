package migrate

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Backoff is a capped exponential backoff.
type Backoff struct {
	Min, Max time.Duration
	GiveUp   time.Duration // stop retrying after this long
}

// retry calls fn until it succeeds, fails for good, or transient errors
// have lasted b.GiveUp, with capped exponential backoff. A lost lock is
// never retried: no write can succeed after it.
func retry(ctx context.Context, b Backoff, log Logger, what string, fn func() error) error {
	delay, start := b.Min, time.Now()
	for {
		err := fn()
		switch {
		case err == nil:
			return nil
		case errors.Is(err, ErrLockLost):
			return fmt.Errorf("%s: %w", what, err)
		case ctx.Err() != nil:
			return context.Cause(ctx)
		case !IsTransient(err):
			return fmt.Errorf("%s: %w", what, err)
		case time.Since(start) > b.GiveUp:
			return fmt.Errorf("%s: gave up after %s: %w", what, b.GiveUp, err)
		}
		wait := jitter(delay)
		log.Warnf("%s: %v (retrying in %s)", what, err, wait)
		if err := Sleep(ctx, wait); err != nil {
			return err
		}
		delay = min(2*delay, b.Max)
	}
}

// Sleep waits d, or until ctx is done: then it returns ctx's cause.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// cleanupTimeout bounds what runs after the work stopped, detached from its
// cancellation: closing a snapshot, the last .status, releasing the lock,
// unfreezing store2.
const cleanupTimeout = 10 * time.Second

// detached returns a context that outlives ctx's cancellation, bounded by
// cleanupTimeout.
func detached(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
}
