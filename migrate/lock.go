package migrate

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// acquire is step 2: wait for the lock, reaping a dead holder on this host.
func (r *run) acquire(ctx context.Context) (Lock, error) {
	o, key := r.o, LockKey(r.o.Prefix)
	var deadline time.Time
	if o.LockTimeout > 0 {
		deadline = r.clock.Add(o.LockTimeout)
	}
	var transientSince time.Time
	holder := ""
	r.wait.start = time.Now()
	for {
		wait := o.LockWait
		if !deadline.IsZero() {
			wait = max(min(wait, time.Until(deadline)), 10*time.Millisecond)
		}
		l, err := r.m.Locker.TryLock(ctx, key, wait)
		switch {
		case err == nil:
			return l, nil
		case ctx.Err() != nil:
			return nil, fmt.Errorf("%w: waiting for lock %q", ErrInterrupted, key)
		case errors.Is(err, ErrLockBusy):
			transientSince = time.Time{}
			prev := holder
			holder = r.reapDeadHolder(ctx)
			if holder != prev && holder != "" {
				// Once per holder: the operator reading this host's log
				// learns why nothing happens here, and where to look.
				o.Log.Infof("Waiting for lock %q, held%s", key, holder)
			}
		case IsTransient(err):
			if transientSince.IsZero() {
				transientSince = time.Now()
			} else if time.Since(transientSince) > o.Retry.GiveUp {
				return nil, fmt.Errorf("take lock %q: %w", key, err)
			}
			o.Log.Warnf("take lock %q: %v (retrying)", key, err)
			if err := Sleep(ctx, jitter(o.Retry.Min)); err != nil {
				return nil, fmt.Errorf("%w: waiting for lock %q", ErrInterrupted, key)
			}
		default:
			return nil, fmt.Errorf("take lock %q: %w", key, err)
		}
		if !deadline.IsZero() && !time.Now().Before(deadline) {
			return nil, fmt.Errorf("%w: %q still held after %s%s", ErrLockBusy, key, o.LockTimeout, holder)
		}
	}
}

// reapDeadHolder destroys the session of a holder that .status names on
// this host with a pid that no longer exists. It returns a description of
// the holder for errors.
func (r *run) reapDeadHolder(ctx context.Context) string {
	o := r.o
	st, err := ReadState(ctx, r.m.KV, o.Prefix)
	r.wait.busy = true
	if err == nil {
		r.wait.saw(st)
	}
	if err != nil || st.Status == nil || st.LockSession == "" {
		return ""
	}
	s := st.Status
	desc := fmt.Sprintf(" by host %s pid %d (session %s, state %s)", s.Host, s.PID, st.LockSession, s.State)
	if s.Session != st.LockSession {
		return fmt.Sprintf(" by session %s", st.LockSession)
	}
	if s.Host != o.Hostname || s.PID == o.PID || o.PIDAlive(s.PID) {
		return desc
	}
	o.Log.Warnf("Lock %q is held by pid %d on this host (%s), which no longer exists: destroying its session %s",
		LockKey(o.Prefix), s.PID, s.Host, s.Session)
	if err := r.m.Locker.DestroySession(ctx, s.Session); err != nil {
		o.Log.Warnf("destroy session %s: %v", s.Session, err)
	}
	return desc
}

// release is step 9: release the lock, even when interrupted.
func (r *run) release(ctx context.Context, lock Lock) {
	uctx, cancel := detached(ctx)
	defer cancel()
	if err := lock.Unlock(uctx); err != nil {
		r.o.Log.Warnf("release lock %q: %v", r.fence.LockKey, err)
	}
}
