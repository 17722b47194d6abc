package memkv

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/apcera/deployhook/migrate"
)

// Source is an in-memory store2. Each snapshot sees the records as they were
// when it was opened.
type Source struct {
	// OpenErr, when set, is called before each Snapshot with the 1-based
	// number of the snapshot; a non-nil error is returned instead.
	OpenErr func(n int) error
	// ScanErr, when set, is called before record i (0-based) of a scan of
	// snapshot n; a non-nil error stops the scan with it.
	ScanErr func(n, i int) error

	// FreezeErr, when set, is called before each Freeze with its 1-based
	// number; a non-nil error is returned instead of freezing.
	FreezeErr func(n int) error
	// UnfreezeErr, when set, is called before each Unfreeze; a non-nil
	// error is returned instead.
	UnfreezeErr func() error
	// FreezeMissing is what CanFreeze returns: the grant the role lacks.
	FreezeMissing string
	// NoMarker makes snapshots return no marker: every catch-up round
	// compares in full.
	NoMarker bool

	mu      sync.Mutex
	records []migrate.Record
	gen     int // counts the changes: a snapshot's marker
	opened  int
	freezes int
	frozen  bool
	owner   string
	message string
}

// ErrFrozen is a write refused because the source is frozen; the error's
// text is the freeze's message.
var ErrFrozen = errors.New("read-only transaction (SQLSTATE 25006)")

// NewSource returns a source holding a copy of records.
func NewSource(records []migrate.Record) *Source {
	s := &Source{}
	for _, r := range records {
		s.insertLocked(r)
	}
	return s
}

func compareRecords(a, b migrate.Record) int {
	if c := strings.Compare(a.Bucket, b.Bucket); c != 0 {
		return c
	}
	return strings.Compare(a.Key, b.Key)
}

func (s *Source) insertLocked(r migrate.Record) {
	r.Data = slices.Clone(r.Data)
	if r.Data == nil {
		r.Data = []byte{}
	}
	i, found := slices.BinarySearchFunc(s.records, r, compareRecords)
	if found {
		s.records[i] = r
		return
	}
	s.records = slices.Insert(s.records, i, r)
}

// Insert adds or replaces a record; open snapshots do not see it. A frozen
// source refuses it with ErrFrozen.
func (s *Source) Insert(ctx context.Context, r migrate.Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.frozen {
		return fmt.Errorf("%w: %s", ErrFrozen, s.message)
	}
	// Copy on write: snapshots hold the old slice.
	s.records = slices.Clone(s.records)
	s.insertLocked(r)
	s.gen++
	return nil
}

// Delete removes a record, reporting whether it existed; open snapshots
// still see it. A frozen source refuses it with ErrFrozen.
func (s *Source) Delete(ctx context.Context, bucket, key string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.frozen {
		return false, fmt.Errorf("%w: %s", ErrFrozen, s.message)
	}
	i, found := slices.BinarySearchFunc(s.records, migrate.Record{Bucket: bucket, Key: key}, compareRecords)
	if found {
		s.records = slices.Delete(slices.Clone(s.records), i, i+1)
		s.gen++
	}
	return found, nil
}

// Records returns a copy of the records, in order.
func (s *Source) Records() []migrate.Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := slices.Clone(s.records)
	for i := range out {
		out[i].Data = slices.Clone(out[i].Data)
	}
	return out
}

// Freeze implements migrate.Freezer: writes are refused from now on.
func (s *Source) Freeze(ctx context.Context, owner, message string) error {
	s.mu.Lock()
	s.freezes++
	n := s.freezes
	s.mu.Unlock()
	if s.FreezeErr != nil {
		if err := s.FreezeErr(n); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.frozen, s.owner, s.message = true, owner, message
	return nil
}

// Unfreeze implements migrate.Freezer.
func (s *Source) Unfreeze(ctx context.Context, decide func(owner string) (bool, error)) (bool, error) {
	if s.UnfreezeErr != nil {
		if err := s.UnfreezeErr(); err != nil {
			return false, err
		}
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	// The lock is held while decide runs, as the real freeze holds the
	// table's lock: no freeze can slip in between.
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.frozen {
		return false, nil
	}
	ok, err := decide(s.owner)
	if err != nil || !ok {
		return false, err
	}
	s.frozen, s.owner, s.message = false, "", ""
	return true, nil
}

// Frozen implements migrate.Freezer.
func (s *Source) Frozen(ctx context.Context) (string, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.owner, s.frozen, nil
}

// CanFreeze implements migrate.Freezer: FreezeMissing.
func (s *Source) CanFreeze(ctx context.Context) (string, error) { return s.FreezeMissing, nil }

// FrozenTable implements migrate.Freezer.
func (s *Source) FrozenTable() string { return "store2_records" }

// Freezes returns how many times Freeze was called.
func (s *Source) Freezes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.freezes
}

// Opened returns how many snapshots were opened.
func (s *Source) Opened() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.opened
}

// Snapshot implements migrate.Source.
func (s *Source) Snapshot(ctx context.Context) (migrate.Snapshot, error) {
	s.mu.Lock()
	s.opened++
	n := s.opened
	recs, gen := s.records, s.gen
	s.mu.Unlock()
	if s.OpenErr != nil {
		if err := s.OpenErr(n); err != nil {
			return nil, err
		}
	}
	return &snapshot{src: s, n: n, records: recs, gen: gen}, nil
}

// NeverUsed is a source whose database does not exist.
type NeverUsed struct{}

// Snapshot implements migrate.Source.
func (NeverUsed) Snapshot(ctx context.Context) (migrate.Snapshot, error) {
	return nil, errors.Join(migrate.ErrNeverUsed, errors.New(`database "jmdb" does not exist (SQLSTATE 3D000)`))
}

type snapshot struct {
	src     *Source
	n       int
	records []migrate.Record
	gen     int
	closed  bool
}

// Marker implements migrate.SnapshotMarker, unless the source's NoMarker.
func (s *snapshot) Marker(ctx context.Context) (string, error) {
	if s.src.NoMarker {
		return "", nil
	}
	return fmt.Sprint(s.gen), nil
}

func (s *snapshot) Count(ctx context.Context) (int64, error) {
	return int64(len(s.records)), ctx.Err()
}

// Scan reuses one buffer for Data and scribbles over it after each
// callback, as a real driver may: a caller that keeps Data sees garbage.
func (s *snapshot) Scan(ctx context.Context, fn func(*migrate.Record) error) error {
	if s.closed {
		return errors.New("scan of a closed snapshot")
	}
	var buf []byte
	for i, r := range s.records {
		if err := ctx.Err(); err != nil {
			return err
		}
		if s.src.ScanErr != nil {
			if err := s.src.ScanErr(s.n, i); err != nil {
				return err
			}
		}
		buf = append(buf[:0], r.Data...)
		rec := migrate.Record{Bucket: r.Bucket, Key: r.Key, Version: r.Version, Data: buf}
		if err := fn(&rec); err != nil {
			return err
		}
		for j := range buf {
			buf[j] = 0xEE
		}
	}
	return nil
}

func (s *snapshot) Close(ctx context.Context) error {
	s.closed = true
	return nil
}
