package consulkv

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/apcera/deployhook/migrate"
)

// Session settings of the migration lock (DESIGN.md, step 2): fencing, not
// lock-delay, keeps a late writer out.
const (
	SessionTTL  = "10s"
	LockDelay   = time.Second
	SessionName = "deployhook migration"
)

// TryLock implements migrate.Locker with consul/api's Lock in one-shot mode.
// It creates the session itself, so that a failed attempt destroys it at
// once rather than leaving it to expire. A wait of zero or less makes a
// single attempt.
func (s *Store) TryLock(ctx context.Context, key string, wait time.Duration) (migrate.Lock, error) {
	if wait <= 0 {
		wait = time.Millisecond
	}
	sessions := s.c.Session()
	id, _, err := sessions.Create(&api.SessionEntry{
		Name:      SessionName,
		TTL:       SessionTTL,
		LockDelay: LockDelay,
		Behavior:  api.SessionBehaviorRelease,
	}, (&api.WriteOptions{}).WithContext(ctx))
	if err != nil {
		return nil, s.classify(ctx, "create lock session", err)
	}
	l, err := s.c.LockOpts(&api.LockOptions{
		Key:            key,
		Session:        id,
		SessionName:    SessionName,
		SessionTTL:     SessionTTL,
		LockTryOnce:    true,
		LockWaitTime:   wait,
		LockDelay:      LockDelay,
		MonitorRetries: 4,
	})
	if err != nil {
		s.destroy(id)
		return nil, fmt.Errorf("lock %q: %w", key, err)
	}

	// The session lives while we renew it; closing renewDone destroys it.
	renewDone := make(chan struct{})
	go sessions.RenewPeriodic(SessionTTL, id, nil, renewDone)

	// Lock blocks in queries that take no context: run it aside, so that
	// ctx stops us at once, and clean up behind us.
	type result struct {
		lost <-chan struct{}
		err  error
	}
	stop := make(chan struct{})
	var stopOnce sync.Once
	halt := func() { stopOnce.Do(func() { close(stop) }) }
	// consul/api sleeps a fixed 5 s, whatever LockWaitTime, when a lock
	// delay is in effect (right after a dead holder's session is
	// destroyed): bound the whole attempt by wait, so the caller tries
	// again as soon as the delay is over.
	timer := time.AfterFunc(wait+100*time.Millisecond, halt)
	defer timer.Stop()
	res := make(chan result, 1)
	go func() {
		lost, err := l.Lock(stop)
		res <- result{lost, err}
	}()
	var r result
	select {
	case r = <-res:
	case <-ctx.Done():
		halt()
		go func() {
			if r := <-res; r.lost != nil {
				l.Unlock()
			}
			close(renewDone)
		}()
		return nil, fmt.Errorf("lock %q: %w", key, ctx.Err())
	}
	if r.err != nil || r.lost == nil {
		close(renewDone) // RenewPeriodic destroys the session as it stops
		if r.err != nil {
			return nil, s.classify(ctx, fmt.Sprintf("lock %q", key), r.err)
		}
		return nil, fmt.Errorf("lock %q: %w", key, migrate.ErrLockBusy)
	}
	return &lock{s: s, key: key, session: id, lost: r.lost, renewDone: renewDone}, nil
}

type lock struct {
	s         *Store
	key       string
	session   string
	lost      <-chan struct{}
	renewDone chan struct{}
	once      sync.Once
}

func (l *lock) Session() string       { return l.session }
func (l *lock) Lost() <-chan struct{} { return l.lost }

// Unlock releases the key and destroys the session. A lock already lost
// is not an error to release.
func (l *lock) Unlock(ctx context.Context) error {
	var err error
	l.once.Do(func() {
		// Release before destroying: a release does not start the lock
		// delay that a session invalidation does. Both within ctx (the
		// api.Lock's Unlock takes none), and the destroy here rather than
		// RenewPeriodic's, which has no deadline.
		rctx, cancel := context.WithTimeout(ctx, l.s.timeout)
		defer cancel()
		_, _, rerr := l.s.c.KV().Release(&api.KVPair{Key: l.key, Session: l.session, Flags: api.LockFlagValue},
			(&api.WriteOptions{}).WithContext(rctx))
		close(l.renewDone)
		derr := l.s.DestroySession(ctx, l.session)
		select {
		case <-l.lost:
			rerr = nil // the release could only fail
		default:
		}
		if rerr != nil {
			err = l.s.classify(rctx, fmt.Sprintf("unlock %q", l.key), rerr)
		}
		err = errors.Join(err, derr)
	})
	return err
}

// DestroySession implements migrate.Locker. A session that no longer exists
// is not an error.
func (s *Store) DestroySession(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if _, err := s.c.Session().Destroy(id, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
		return s.classify(ctx, fmt.Sprintf("destroy session %s", id), err)
	}
	return nil
}

func (s *Store) destroy(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.DestroySession(ctx, id)
}
