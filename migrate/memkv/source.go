package memkv

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strconv"
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
	// snapshot n, or of the changes Changed returns from it; a non-nil
	// error stops the scan with it.
	ScanErr func(n, i int) error
	// ConsumeErr, when set, is called before Consume of change snapshot
	// n; a non-nil error is returned instead, and nothing is forgotten.
	ConsumeErr func(n int) error

	// FreezeErr, when set, is called before each Freeze with its 1-based
	// number; a non-nil error is returned instead of freezing.
	FreezeErr func(n int) error
	// UnfreezeErr, when set, is called before each Unfreeze; a non-nil
	// error is returned instead.
	UnfreezeErr func() error
	// FreezeMissing is what CanFreeze returns: the grant the role lacks.
	FreezeMissing string
	mu            sync.Mutex
	records       []migrate.Record
	changes       []change // what the capture recorded, oldest first
	seq           int64    // the last change's number
	writes        uint64   // writes so far: where a snapshot stands (Mark)
	capture       string   // the capture's owner, "" when none
	opened        int
	freezes       int
	frozen        bool
	owner         string
	message       string
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
	return s.insert(r, true)
}

// InsertUncaptured is Insert as a write the change capture misses (its
// trigger disabled, or session_replication_role = replica): no change is
// recorded, but the write is one (Unchanged sees it).
func (s *Source) InsertUncaptured(ctx context.Context, r migrate.Record) error {
	return s.insert(r, false)
}

func (s *Source) insert(r migrate.Record, captured bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.frozen {
		return fmt.Errorf("%w: %s", ErrFrozen, s.message)
	}
	// Copy on write: snapshots hold the old slice.
	s.records = slices.Clone(s.records)
	s.insertLocked(r)
	s.writes++
	if captured {
		s.recordLocked(r.Bucket, r.Key, false)
	}
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
		s.writes++
		s.recordLocked(bucket, key, false)
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
	recs, writes := s.records, s.writes
	s.mu.Unlock()
	if s.OpenErr != nil {
		if err := s.OpenErr(n); err != nil {
			return nil, err
		}
	}
	return &snapshot{src: s, n: n, records: recs, writes: writes}, nil
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
	writes  uint64 // the source's writes before the snapshot
	closed  bool
}

func (s *snapshot) Count(ctx context.Context) (int64, error) {
	return int64(len(s.records)), ctx.Err()
}

// StreamByBucket implements migrate.Snapshot: the records of each
// bucket in reverse byte order, the largest bucket first, in one scan.
func (s *snapshot) StreamByBucket(ctx context.Context, fn func(*migrate.Record) error, end func(bucket string) error) error {
	counts := map[string]int{}
	for _, r := range s.records {
		counts[r.Bucket]++
	}
	order := slices.Clone(s.records)
	slices.Reverse(order)
	slices.SortStableFunc(order, func(a, b migrate.Record) int {
		return cmp.Or(cmp.Compare(counts[b.Bucket], counts[a.Bucket]), strings.Compare(a.Bucket, b.Bucket))
	})
	var cur string
	err := s.scan(ctx, slices.All(order), func(rec *migrate.Record) error {
		if rec.Bucket != cur && cur != "" {
			if err := end(cur); err != nil {
				return err
			}
		}
		cur = rec.Bucket
		return fn(rec)
	})
	if err != nil || cur == "" {
		return err
	}
	return end(cur)
}

// Mark implements migrate.Snapshot: the source's writes before the
// snapshot.
func (s *snapshot) Mark(ctx context.Context) (migrate.Mark, error) {
	return migrate.Mark(strconv.FormatUint(s.writes, 10)), ctx.Err()
}

// Unchanged implements migrate.Snapshot: true when no write came between
// the two snapshots, whether the capture recorded it or not. A write that
// leaves the records as they were counts as a change, as it does in
// PostgreSQL (a new row version).
func (s *snapshot) Unchanged(ctx context.Context, m migrate.Mark, n int64) (bool, error) {
	return string(m) == strconv.FormatUint(s.writes, 10) && int64(len(s.records)) == n, ctx.Err()
}

// Scan reuses one buffer for Data and scribbles over it after each
// callback, as a real driver may: a caller that keeps Data sees garbage.
func (s *snapshot) Scan(ctx context.Context, fn func(*migrate.Record) error) error {
	return s.scan(ctx, slices.All(s.records), fn)
}

// Stream returns the records in reverse byte order: a caller that needs
// an order must use Scan.
func (s *snapshot) Stream(ctx context.Context, fn func(*migrate.Record) error) error {
	return s.scan(ctx, slices.Backward(s.records), fn)
}

func (s *snapshot) scan(ctx context.Context, records iter.Seq2[int, migrate.Record], fn func(*migrate.Record) error) error {
	if s.closed {
		return errors.New("scan of a closed snapshot")
	}
	var buf []byte
	i := 0
	for _, r := range records {
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
		i++
	}
	return nil
}

func (s *snapshot) Close(ctx context.Context) error {
	s.closed = true
	return nil
}

// change is one write the capture recorded: a key, or a truncate.
type change struct {
	seq      int64
	bucket   string
	key      string
	truncate bool
}

func (s *Source) recordLocked(bucket, key string, truncate bool) {
	if s.capture == "" {
		return
	}
	s.seq++
	s.changes = append(s.changes, change{seq: s.seq, bucket: bucket, key: key, truncate: truncate})
}

// Truncate deletes every record, as TRUNCATE does: the capture records it
// without the records. A frozen source refuses it with ErrFrozen.
func (s *Source) Truncate(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.frozen {
		return fmt.Errorf("%w: %s", ErrFrozen, s.message)
	}
	s.records = nil
	s.writes++
	s.recordLocked("", "", true)
	return nil
}

// Capture implements migrate.Freezer.
func (s *Source) Capture(ctx context.Context, owner string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.capture, s.changes = owner, nil
	return nil
}

// Capturing implements migrate.Freezer.
func (s *Source) Capturing(ctx context.Context) (string, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.capture, s.capture != "", nil
}

// EndCapture implements migrate.Freezer.
func (s *Source) EndCapture(ctx context.Context, decide func(owner string) (bool, error)) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.capture == "" {
		return false, nil
	}
	ok, err := decide(s.capture)
	if err != nil || !ok {
		return false, err
	}
	s.capture, s.changes = "", nil
	return true, nil
}

// Changes implements migrate.Freezer: a snapshot, and the changes recorded
// before it. OpenErr applies to it as to Snapshot.
func (s *Source) Changes(ctx context.Context) (migrate.ChangeSnapshot, error) {
	s.mu.Lock()
	s.opened++
	n := s.opened
	s.mu.Unlock()
	if s.OpenErr != nil {
		if err := s.OpenErr(n); err != nil {
			return nil, err
		}
	}
	// The records and the changes in one critical section: a change the
	// snapshot sees is a record it sees, as in one transaction.
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.capture == "" {
		return nil, errors.New("no change capture")
	}
	snap := &snapshot{src: s, n: n, records: s.records, writes: s.writes}
	return &changeSnapshot{snapshot: snap, changes: slices.Clone(s.changes), seq: s.seq}, nil
}

type changeSnapshot struct {
	*snapshot
	changes []change
	seq     int64 // the last change the snapshot sees
}

// Changed implements migrate.ChangeSnapshot.
func (c *changeSnapshot) Changed(ctx context.Context, fn func(rec *migrate.Record, present bool) error) (bool, error) {
	type id struct{ bucket, key string }
	keys := map[id]bool{}
	for _, ch := range c.changes {
		if ch.truncate {
			return true, nil
		}
		keys[id{ch.bucket, ch.key}] = true
	}
	sorted := make([]migrate.Record, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, migrate.Record{Bucket: k.bucket, Key: k.key})
	}
	slices.SortFunc(sorted, compareRecords)
	for i, k := range sorted {
		if err := ctx.Err(); err != nil {
			return false, err
		}
		if c.src.ScanErr != nil {
			if err := c.src.ScanErr(c.n, i); err != nil {
				return false, err
			}
		}
		i, found := slices.BinarySearchFunc(c.records, k, compareRecords)
		rec := k
		if found {
			rec = c.records[i]
			rec.Data = slices.Clone(rec.Data)
		}
		if err := fn(&rec, found); err != nil {
			return false, err
		}
	}
	return false, nil
}

// Consume implements migrate.ChangeSnapshot.
func (c *changeSnapshot) Consume(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s := c.src
	if s.ConsumeErr != nil {
		if err := s.ConsumeErr(c.n); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.changes = slices.DeleteFunc(s.changes, func(ch change) bool { return ch.seq <= c.seq })
	return nil
}
