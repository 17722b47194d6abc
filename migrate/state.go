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

// ReadState reads .done, .status and the lock holder under prefix, as
// store3 held them at one moment (readStateKeys).
func ReadState(ctx context.Context, kv KV, prefix string) (*State, error) {
	keys, err := readStateKeys(ctx, kv, prefix)
	if err != nil {
		return nil, err
	}
	st := &State{Prefix: prefix}
	if st.Done, err = decodeJSON[Done](keys.done); err != nil {
		return nil, err
	}
	if st.Status, err = decodeJSON[Status](keys.status); err != nil {
		return nil, err
	}
	if keys.lock != nil {
		st.LockSession = keys.lock.Session
	}
	return st, nil
}

// stateKeys are .done, .status and the lock key of one migration
// directory, each nil when absent.
type stateKeys struct{ done, status, lock *Pair }

// readStateKeys reads .done, .status and the lock key in one listing of
// the migration directory: one snapshot of the store, where three reads
// are three. A worker that wrote .done, then .status, then released the
// lock between three reads was read as one that stopped without finishing
// (running, lock free, no .done), and an unfreeze between its reads of
// .done and of the lock thawed the store2 of a finished migration.
func readStateKeys(ctx context.Context, kv KV, prefix string) (stateKeys, error) {
	var keys stateKeys
	slots := map[string]**Pair{DoneKey(prefix): &keys.done, StatusKey(prefix): &keys.status, LockKey(prefix): &keys.lock}
	err := kv.Scan(ctx, migrationDir(prefix), func(p *Pair) error {
		if slot := slots[p.Key]; slot != nil {
			c := *p
			c.Value = bytes.Clone(p.Value) // p is only valid during the call
			*slot = &c
		}
		return nil
	})
	return keys, err
}

// decodeJSON decodes the value of p; nil when p is nil (absent).
func decodeJSON[T any](p *Pair) (*T, error) {
	if p == nil {
		return nil, nil
	}
	var v T
	if err := json.Unmarshal(p.Value, &v); err != nil {
		return nil, fmt.Errorf("decode %q: %w", p.Key, err)
	}
	return &v, nil
}

// readStatus reads .status alone; nil when absent.
func readStatus(ctx context.Context, kv KV, prefix string) (*Status, error) {
	p, err := kv.Get(ctx, StatusKey(prefix))
	if err != nil {
		return nil, fmt.Errorf("read %q: %w", StatusKey(prefix), err)
	}
	return decodeJSON[Status](p)
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
