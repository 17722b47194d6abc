// Package memkv holds in-memory fakes of store3 (a Consul-like KV with
// transactions, sessions and locks) and of store2, for unit tests of the
// migration. They implement the interfaces of package migrate faithfully
// enough to pass migratetest, and carry hooks to inject failures.
package memkv

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/apcera/deployhook/migrate"
)

// Store is an in-memory store3: a migrate.KV and a migrate.Locker.
type Store struct {
	// BeforeTxn, when set, runs before every Txn (without the store's
	// lock held, so it may call DestroySession); seq counts Txn calls from
	// 1. A non-nil error is returned instead of applying the transaction.
	BeforeTxn func(seq int64, fence migrate.Fence, ops []migrate.Op) error
	// DenyWrite, when set, makes writes of the keys it returns true for
	// fail as Consul's ACLs do: the transaction is rolled back, and its
	// error matches migrate.ErrPermissionDenied.
	DenyWrite func(key string) bool
	// Limits is what Limits returns; the zero value means the defaults.
	// The op count and value size are enforced.
	TxnLimits migrate.Limits

	mu       sync.Mutex
	pairs    map[string]*migrate.Pair
	graves   map[string]uint64 // tombstones: the index of each delete, by key
	index    uint64
	seq      int64
	sessions map[string]*lock // session id -> its lock
	nextID   int
	changed  chan struct{} // closed and replaced on every change
	writes   []Write
}

// Write is one applied write transaction, for tests that check what was
// written when.
type Write struct {
	Index   uint64
	Session string // the fence, "" for an unfenced write
	Ops     []migrate.Op
}

type lock struct {
	s       *Store
	key     string
	session string
	lost    chan struct{}
	once    sync.Once
}

// New returns an empty store.
func New() *Store {
	return &Store{pairs: map[string]*migrate.Pair{}, graves: map[string]uint64{}, sessions: map[string]*lock{}, changed: make(chan struct{}), index: 1}
}

var (
	_ migrate.KV     = (*Store)(nil)
	_ migrate.Locker = (*Store)(nil)
)

// notifyLocked wakes waiters and reports lost locks; s.mu is held.
func (s *Store) notifyLocked() {
	for id, l := range s.sessions {
		p := s.pairs[l.key]
		if p == nil || p.Session != id {
			l.markLost()
			delete(s.sessions, id)
		}
	}
	close(s.changed)
	s.changed = make(chan struct{})
}

func (l *lock) markLost() { l.once.Do(func() { close(l.lost) }) }

// Put writes a pair directly, unfenced (to seed a test).
func (s *Store) Put(key string, value []byte, flags uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.index++
	s.pairs[key] = &migrate.Pair{Key: key, Value: slices.Clone(value), Flags: flags, ModifyIndex: s.index}
	s.writes = append(s.writes, Write{Index: s.index, Ops: []migrate.Op{{Verb: migrate.VerbSet, Key: key, Value: value, Flags: flags}}})
	s.notifyLocked()
}

// Writes returns the write transactions applied so far.
func (s *Store) Writes() []Write {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.writes)
}

// Dump returns a copy of every pair, sorted by key.
func (s *Store) Dump() []migrate.Pair {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.listLocked("")
}

func clonePair(p *migrate.Pair) *migrate.Pair {
	c := *p
	c.Value = slices.Clone(p.Value)
	return &c
}

func (s *Store) listLocked(prefix string) []migrate.Pair {
	var out []migrate.Pair
	for k, p := range s.pairs {
		if strings.HasPrefix(k, prefix) {
			out = append(out, *clonePair(p))
		}
	}
	slices.SortFunc(out, func(a, b migrate.Pair) int { return strings.Compare(a.Key, b.Key) })
	return out
}

// Get implements migrate.KV.
func (s *Store) Get(ctx context.Context, key string) (*migrate.Pair, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.pairs[key]; p != nil {
		return clonePair(p), nil
	}
	return nil, nil
}

// Scan implements migrate.KV. It hands fn a copy of each pair whose Value
// is one reused buffer, scribbled over after fn returns, as a streaming
// driver may reuse it: a caller that keeps Value sees garbage.
func (s *Store) Scan(ctx context.Context, prefix string, fn func(*migrate.Pair) error) error {
	s.mu.Lock()
	pairs := s.listLocked(prefix)
	s.mu.Unlock()
	var buf []byte
	for _, p := range pairs {
		if err := ctx.Err(); err != nil {
			return err
		}
		if p.Value != nil {
			buf = append(buf[:0], p.Value...)
			p.Value = buf
		}
		if err := fn(&p); err != nil {
			return err
		}
		for i := range buf {
			buf[i] = 0xEE
		}
	}
	return nil
}

// Keys implements migrate.KV.
func (s *Store) Keys(ctx context.Context, prefix, separator string) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[string]bool{}
	var out []string
	for k := range s.pairs {
		if !strings.HasPrefix(k, prefix) {
			continue
		}
		if separator != "" {
			if i := strings.Index(k[len(prefix):], separator); i >= 0 {
				k = k[:len(prefix)+i+len(separator)]
			}
		}
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out, nil
}

// Limits implements migrate.KV.
func (s *Store) Limits(ctx context.Context) migrate.Limits {
	if s.TxnLimits.MaxOps == 0 {
		return migrate.DefaultLimits
	}
	return s.TxnLimits
}

// Index implements migrate.KV as Consul does, tombstones included (never
// reaped here).
func (s *Store) Index(ctx context.Context, prefix string) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if prefix == "" {
		return s.index, nil
	}
	var idx uint64
	for k, p := range s.pairs {
		if strings.HasPrefix(k, prefix) {
			idx = max(idx, p.ModifyIndex)
		}
	}
	for k, i := range s.graves {
		if strings.HasPrefix(k, prefix) {
			idx = max(idx, i)
		}
	}
	if idx == 0 {
		return s.index, nil
	}
	return idx, nil
}

// Txn implements migrate.KV.
func (s *Store) Txn(ctx context.Context, fence migrate.Fence, ops []migrate.Op) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	s.seq++
	seq := s.seq
	s.mu.Unlock()
	if s.BeforeTxn != nil {
		if err := s.BeforeTxn(seq, fence, ops); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.Limits(ctx)
	n := len(ops)
	if fence.Session != "" {
		n++
	}
	if n > l.MaxOps {
		return fmt.Errorf("txn: %w: transaction contains too many operations (%d > %d)", migrate.ErrTooLarge, n, l.MaxOps)
	}
	if fence.Session != "" {
		if p := s.pairs[fence.LockKey]; p == nil || p.Session != fence.Session {
			return fmt.Errorf("%w: %w", migrate.ErrLockLost, &migrate.TxnError{Errors: []string{fmt.Sprintf("op 0: key %q is not currently locked by session %q", fence.LockKey, fence.Session)}})
		}
	}
	var denied []string
	for i, op := range ops {
		if len(op.Value) > l.MaxValue {
			return fmt.Errorf("txn: %w: value for key %q is too large (%d > %d bytes)", migrate.ErrTooLarge, op.Key, len(op.Value), l.MaxValue)
		}
		if s.DenyWrite != nil && op.Verb != migrate.VerbCheckIndex && op.Verb != migrate.VerbCheckNotExists && s.DenyWrite(op.Key) {
			denied = append(denied, fmt.Sprintf("op %d: write of %q denied", i, op.Key))
		}
	}
	if denied != nil {
		return fmt.Errorf("txn: %w: %w", migrate.ErrPermissionDenied, &migrate.TxnError{Errors: denied})
	}
	// Apply with an undo log, so that a failing op rolls everything back.
	type undo struct {
		key string
		old *migrate.Pair
	}
	var log []undo
	set := func(k string, p *migrate.Pair) {
		log = append(log, undo{k, s.pairs[k]})
		if p == nil {
			delete(s.pairs, k)
		} else {
			s.pairs[k] = p
		}
	}
	idx := s.index + 1
	var graves []string
	for i, op := range ops {
		var err string
		switch op.Verb {
		case migrate.VerbSet:
			old := s.pairs[op.Key]
			if old != nil && old.Flags == op.Flags && slices.Equal(old.Value, op.Value) {
				break // as Consul: an unchanged key keeps its ModifyIndex
			}
			p := &migrate.Pair{Key: op.Key, Value: slices.Clone(op.Value), Flags: op.Flags, ModifyIndex: idx}
			if old != nil {
				p.Session = old.Session
			}
			set(op.Key, p)
		case migrate.VerbDelete:
			if s.pairs[op.Key] != nil {
				set(op.Key, nil)
				graves = append(graves, op.Key)
			}
		case migrate.VerbDeleteTree:
			deleted := false
			for k := range s.pairs {
				if strings.HasPrefix(k, op.Key) {
					set(k, nil)
					deleted = true
				}
			}
			if deleted && op.Key != "" {
				graves = append(graves, op.Key)
			}
		case migrate.VerbCheckNotExists:
			if s.pairs[op.Key] != nil {
				err = fmt.Sprintf("op %d: key %q exists", i, op.Key)
			}
		case migrate.VerbCheckIndex:
			if p := s.pairs[op.Key]; p == nil {
				err = fmt.Sprintf("op %d: key %q doesn't exist", i, op.Key)
			} else if p.ModifyIndex != op.Index {
				err = fmt.Sprintf("op %d: current modify index %d != %d", i, p.ModifyIndex, op.Index)
			}
		default:
			err = fmt.Sprintf("op %d: unknown verb %q", i, op.Verb)
		}
		if err != "" {
			for j := len(log) - 1; j >= 0; j-- {
				if log[j].old == nil {
					delete(s.pairs, log[j].key)
				} else {
					s.pairs[log[j].key] = log[j].old
				}
			}
			return &migrate.TxnError{Errors: []string{err}}
		}
	}
	s.index = idx
	for _, k := range graves {
		s.graves[k] = idx
	}
	s.writes = append(s.writes, Write{Index: idx, Session: fence.Session, Ops: cloneOps(ops)})
	s.notifyLocked()
	return nil
}

func cloneOps(ops []migrate.Op) []migrate.Op {
	out := slices.Clone(ops)
	for i := range out {
		out[i].Value = nil // keep the log small: keys and verbs are what tests check
	}
	return out
}

// TryLock implements migrate.Locker.
func (s *Store) TryLock(ctx context.Context, key string, wait time.Duration) (migrate.Lock, error) {
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		s.mu.Lock()
		p := s.pairs[key]
		if p == nil || p.Session == "" {
			s.nextID++
			id := fmt.Sprintf("00000000-0000-4000-8000-%012d", s.nextID)
			l := &lock{s: s, key: key, session: id, lost: make(chan struct{})}
			s.sessions[id] = l
			s.index++
			np := &migrate.Pair{Key: key, Session: id, ModifyIndex: s.index}
			s.pairs[key] = np
			s.notifyLocked()
			s.mu.Unlock()
			return l, nil
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-timer.C:
			return nil, fmt.Errorf("lock %q: %w", key, migrate.ErrLockBusy)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// DestroySession implements migrate.Locker: the session's lock is
// released (the key stays, without a session) and reported lost.
func (s *Store) DestroySession(ctx context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.sessions[id]
	if l == nil {
		return nil
	}
	if p := s.pairs[l.key]; p != nil && p.Session == id {
		s.index++
		np := *p
		np.Session, np.ModifyIndex = "", s.index
		s.pairs[l.key] = &np
	}
	s.notifyLocked()
	return nil
}

// Holder returns the session holding key, "" when none.
func (s *Store) Holder(key string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.pairs[key]; p != nil {
		return p.Session
	}
	return ""
}

func (l *lock) Session() string       { return l.session }
func (l *lock) Lost() <-chan struct{} { return l.lost }

func (l *lock) Unlock(ctx context.Context) error {
	return l.s.DestroySession(ctx, l.session)
}
