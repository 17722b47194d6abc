package memkv

import (
	"context"
	"errors"
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

	mu      sync.Mutex
	records []migrate.Record
	opened  int
}

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

// Insert adds or replaces a record; open snapshots do not see it.
func (s *Source) Insert(ctx context.Context, r migrate.Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	// Copy on write: snapshots hold the old slice.
	s.records = slices.Clone(s.records)
	s.insertLocked(r)
	return nil
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
	recs := s.records
	s.mu.Unlock()
	if s.OpenErr != nil {
		if err := s.OpenErr(n); err != nil {
			return nil, err
		}
	}
	return &snapshot{src: s, n: n, records: recs}, nil
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
	closed  bool
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
