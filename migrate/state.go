package migrate

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// The states of .status, and StateNotMigrated, which State.Current
// (rules.go) adds: neither .done nor .status, no migration ever started.
const (
	StateRunning     = "running"
	StateFailed      = "failed"
	StateDone        = "done"
	StateNotMigrated = "not migrated"
)

// MaxFailedRecords is how many failed records .status lists.
const MaxFailedRecords = 100

// The keys under <prefix>migration/, the reserved bucket's directory.
func migrationDir(prefix string) string { return prefix + ReservedBucket + "/" }

// LockKey is the key of the migration lock.
func LockKey(prefix string) string { return migrationDir(prefix) + ".lock" }

// StatusKey is the key of .status.
func StatusKey(prefix string) string { return migrationDir(prefix) + ".status" }

// DoneKey is the key of .done.
func DoneKey(prefix string) string { return migrationDir(prefix) + ".done" }

// Time is a time in .status and .done: RFC 3339 with nanoseconds in UTC,
// "" when zero.
type Time struct{ time.Time }

// MarshalJSON implements json.Marshaler.
func (t Time) MarshalJSON() ([]byte, error) {
	if t.IsZero() {
		return []byte(`""`), nil
	}
	return json.Marshal(t.UTC().Format(time.RFC3339Nano))
}

// UnmarshalJSON implements json.Unmarshaler.
func (t *Time) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	if s == "" {
		t.Time = time.Time{}
		return nil
	}
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return err
	}
	t.Time = v.UTC()
	return nil
}

// FailedRecord is a record that could not be stored.
type FailedRecord struct {
	Bucket string `json:"bucket"`
	Key    string `json:"key"`
	Reason string `json:"reason"`
}

// Status is the content of <prefix>migration/.status.
type Status struct {
	State         string         `json:"state"`
	Phase         string         `json:"phase"` // PhaseCopying, PhaseCatchingUp, PhaseCutover, PhaseDone, PhaseFailed
	Round         int            `json:"round"` // the last catch-up round that finished, 0 before the first
	Delta         int64          `json:"delta"` // the records that round changed
	Component     string         `json:"component"`
	Host          string         `json:"host"`
	PID           int            `json:"pid"`
	Session       string         `json:"session"`
	Started       Time           `json:"started"`
	Updated       Time           `json:"updated"`
	Finished      Time           `json:"finished"`
	RecordsDone   int64          `json:"records_done"`
	RecordsTotal  int64          `json:"records_total"`
	Error         string         `json:"error"`
	FailedRecords []FailedRecord `json:"failed_records"`
}

// MarshalJSON writes failed_records as [] rather than null, and caps it.
func (s Status) MarshalJSON() ([]byte, error) {
	type plain Status
	if s.FailedRecords == nil {
		s.FailedRecords = []FailedRecord{}
	}
	if len(s.FailedRecords) > MaxFailedRecords {
		s.FailedRecords = s.FailedRecords[:MaxFailedRecords]
	}
	return json.Marshal(plain(s))
}

// Done is the content of <prefix>migration/.done.
type Done struct {
	Component       string `json:"component"`
	Host            string `json:"host"`
	PID             int    `json:"pid"`
	Started         Time   `json:"started"`
	Finished        Time   `json:"finished"`
	Took            string `json:"took"`
	RecordsMigrated int64  `json:"records_migrated"`
	RecordsFailed   int64  `json:"records_failed"`
	Digest          string `json:"digest"`
	ToolVersion     string `json:"tool_version"`
	// FrozenFor is how long store2 refused writes, freeze to .done (a Go
	// duration); empty for an offline migration, which froze nothing.
	FrozenFor string `json:"frozen_for,omitempty"`
}

// State is what store3 says about a component's migration.
type State struct {
	Prefix string
	Done   *Done   // nil when not migrated
	Status *Status // nil when no migration ever started
	// LockSession is the session holding the lock, "" when free.
	LockSession string
}

// ReadState reads .done, .status and the lock holder under prefix.
func ReadState(ctx context.Context, kv KV, prefix string) (*State, error) {
	st := &State{Prefix: prefix}
	var err error
	if st.Done, err = readDone(ctx, kv, prefix); err != nil {
		return nil, err
	}
	if st.Status, err = readStatus(ctx, kv, prefix); err != nil {
		return nil, err
	}
	p, err := kv.Get(ctx, LockKey(prefix))
	if err != nil {
		return nil, fmt.Errorf("read %q: %w", LockKey(prefix), err)
	}
	if p != nil {
		st.LockSession = p.Session
	}
	return st, nil
}

func readDone(ctx context.Context, kv KV, prefix string) (*Done, error) {
	var d Done
	ok, err := readJSON(ctx, kv, DoneKey(prefix), &d)
	if !ok {
		return nil, err
	}
	return &d, err
}

func readStatus(ctx context.Context, kv KV, prefix string) (*Status, error) {
	var s Status
	ok, err := readJSON(ctx, kv, StatusKey(prefix), &s)
	if !ok {
		return nil, err
	}
	return &s, err
}

// readJSON reads key into v; ok is false when the key is absent. A present
// key that is not valid JSON returns ok and an error: for .done, presence
// is what counts.
func readJSON(ctx context.Context, kv KV, key string, v any) (ok bool, err error) {
	p, err := kv.Get(ctx, key)
	if err != nil {
		return false, fmt.Errorf("read %q: %w", key, err)
	}
	if p == nil {
		return false, nil
	}
	if err := json.Unmarshal(p.Value, v); err != nil {
		return true, fmt.Errorf("decode %q: %w", key, err)
	}
	return true, nil
}

// encodeJSON is json.Marshal without HTML escaping, as the operator reads it.
func encodeJSON(v any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(err) // only our own structs are encoded
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

func decodeDone(b []byte) (*Done, error) {
	var d Done
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, err
	}
	return &d, nil
}
