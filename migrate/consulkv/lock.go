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
	sessionTTL  = "10s"
	lockDelay   = time.Second
	sessionName = "deployhook migration"
	// monitorRetries is how many failed reads in a row of the lock key the
	// monitor rides out, monitorRetryWait apart, before it reports the
	// lock lost.
	monitorRetries   = 4
	monitorRetryWait = time.Second
	// delayPoll is how often an attempt retries a free key during its lock
	// delay, when acquisitions fail although nobody holds it.
	delayPoll = 100 * time.Millisecond
)

// TryLock implements migrate.Locker: a session, then acquisitions of key
// with it until one succeeds or wait runs out, waiting in blocking reads
// of the key for its holder to let go. Every request goes through the
// Store's classification, so errors are typed. A failed attempt destroys
// its session at once rather than leaving it to expire. A wait of zero or
// less makes a single attempt.
func (s *Store) TryLock(ctx context.Context, key string, wait time.Duration) (migrate.Lock, error) {
	if err := addressable(key); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(wait)
	cctx, cancel := context.WithTimeout(ctx, s.timeout)
	id, _, err := s.c.Session().Create(&api.SessionEntry{
		Name:      sessionName,
		TTL:       sessionTTL,
		LockDelay: lockDelay,
		Behavior:  api.SessionBehaviorRelease,
	}, (&api.WriteOptions{}).WithContext(cctx))
	cancel()
	if err != nil {
		return nil, s.classify(cctx, "create lock session", err)
	}
	if err := s.acquire(ctx, key, id, deadline); err != nil {
		s.destroy(id)
		return nil, err
	}
	// The session lives while we renew it; closing renewDone destroys it.
	renewDone := make(chan struct{})
	go s.c.Session().RenewPeriodic(sessionTTL, id, nil, renewDone)
	mctx, stop := context.WithCancel(context.Background())
	l := &lock{s: s, key: key, session: id, lost: make(chan struct{}), stop: stop, renewDone: renewDone}
	go l.monitor(mctx)
	return l, nil
}

// acquire takes key for session id, trying until deadline.
func (s *Store) acquire(ctx context.Context, key, id string, deadline time.Time) error {
	what := fmt.Sprintf("lock %q", key)
	kv := s.c.KV()
	var index uint64
	for {
		actx, cancel := context.WithTimeout(ctx, s.timeout)
		ok, _, err := kv.Acquire(&api.KVPair{Key: key, Session: id, Flags: api.LockFlagValue}, (&api.WriteOptions{}).WithContext(actx))
		cancel()
		if err != nil {
			return s.classify(actx, what, err)
		}
		if ok {
			return nil
		}
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("%s: %w", what, migrate.ErrLockBusy)
		}
		// Held: wait for a change. With index 0 the read answers at once.
		q := &api.QueryOptions{WaitIndex: index, WaitTime: left, RequireConsistent: true}
		gctx, cancel := context.WithTimeout(ctx, left+s.timeout)
		cur, meta, err := kv.Get(key, q.WithContext(gctx))
		cancel()
		if err != nil {
			return s.classify(gctx, what, err)
		}
		index = meta.LastIndex
		if cur == nil || cur.Session == "" {
			// Free, yet refused: the lock delay after its holder's
			// session was invalidated. Poll until it is over.
			index = 0
			if err := migrate.Sleep(ctx, min(left, delayPoll)); err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
		}
	}
}

type lock struct {
	s         *Store
	key       string
	session   string
	lost      chan struct{} // closed when monitor returns
	stop      context.CancelFunc
	renewDone chan struct{}
	once      sync.Once
}

func (l *lock) Session() string       { return l.session }
func (l *lock) Lost() <-chan struct{} { return l.lost }

// monitor watches the lock key in blocking reads until the session no
// longer holds it, the reads fail more than monitorRetries times in a row,
// or Unlock stops it; then it closes lost.
func (l *lock) monitor(ctx context.Context) {
	defer close(l.lost)
	var index uint64
	for failures := 0; ; {
		q := (&api.QueryOptions{WaitIndex: index, RequireConsistent: true}).WithContext(ctx)
		cur, meta, err := l.s.c.KV().Get(l.key, q)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			if failures++; failures > monitorRetries || migrate.Sleep(ctx, monitorRetryWait) != nil {
				return
			}
			index = 0
		case cur == nil || cur.Session != l.session:
			return
		default:
			failures, index = 0, meta.LastIndex
		}
	}
}

// Unlock releases the key and destroys the session. A lock already lost
// is not an error to release.
func (l *lock) Unlock(ctx context.Context) error {
	var err error
	l.once.Do(func() {
		// Release before destroying: a release does not start the lock
		// delay that a session invalidation does.
		rctx, cancel := context.WithTimeout(ctx, l.s.timeout)
		defer cancel()
		_, _, rerr := l.s.c.KV().Release(&api.KVPair{Key: l.key, Session: l.session, Flags: api.LockFlagValue},
			(&api.WriteOptions{}).WithContext(rctx))
		select {
		case <-l.lost:
			rerr = nil // the release could only fail
		default:
		}
		l.stop()
		close(l.renewDone)
		if rerr != nil {
			err = l.s.classify(rctx, fmt.Sprintf("unlock %q", l.key), rerr)
		}
		err = errors.Join(err, l.s.DestroySession(ctx, l.session))
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
