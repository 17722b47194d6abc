// Package migrate copies a component's records from store2 (PostgreSQL) to
// store3 (Consul KV) under a lock, with fenced writes and a done marker.
//
// The steps of the migration, and the log lines operators grep for, live in
// migrator.go. This file holds the interfaces the migration is written
// against; migrate/pgsource and migrate/consulkv implement them on the real
// services, migrate/memkv in memory for unit tests, and migrate/migratetest
// holds the conformance suite that every implementation passes.
package migrate

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Record is one store2 row. Data is only valid during the callback that
// received it: sources reuse buffers to keep memory constant.
type Record struct {
	Bucket  string
	Key     string
	Version int64
	Data    []byte
}

// Source is store2.
type Source interface {
	// Snapshot opens one consistent, read-only view of the component's
	// records. It returns an error wrapping ErrNeverUsed when the database
	// or the table does not exist.
	Snapshot(ctx context.Context) (Snapshot, error)
}

// Snapshot is one REPEATABLE READ, READ ONLY view of store2.
type Snapshot interface {
	// Count returns the number of records in the snapshot.
	Count(ctx context.Context) (int64, error)
	// Scan calls fn for every record in (bucket, key) byte order. A non-nil
	// error from fn stops the scan and is returned.
	Scan(ctx context.Context, fn func(*Record) error) error
	// Stream is Scan in no particular order: what the copy and the
	// comparisons read, which need no order. PostgreSQL then sorts nothing
	// (a sort of the whole table, on disk past work_mem, that cost the
	// copy a quarter of its time at 1,000,000 records).
	Stream(ctx context.Context, fn func(*Record) error) error
	// StreamByBucket is Stream, one bucket after the other, the largest
	// first, calling end after the last record of each: then the copy
	// knows when a bucket is complete, and verification lists it while the
	// copy goes on (early.go). A source that cannot do so cheaply (too many
	// buckets) streams as Stream does and calls end for none.
	StreamByBucket(ctx context.Context, fn func(*Record) error, end func(bucket string) error) error
	// Mark returns where this snapshot stands in the source's history,
	// for Unchanged.
	Mark(ctx context.Context) (Mark, error)
	// Unchanged reports whether this snapshot holds exactly the records
	// of an earlier one, which returned m and held n records: nothing was
	// inserted, updated or deleted in between, whether a change capture
	// recorded it or not. It answers without reading the records out
	// (PostgreSQL: one scan of the table's row versions, on the server),
	// and answers false whenever it cannot tell; never true wrongly.
	Unchanged(ctx context.Context, m Mark, n int64) (bool, error)
	// Close ends the snapshot.
	Close(ctx context.Context) error
}

// Mark is where a snapshot stands in its source's history
// (Snapshot.Mark): for PostgreSQL, the snapshot itself (which transactions
// it sees, as txid_current_snapshot writes it). Only the source that
// returned it can read it.
type Mark string

// Pair is one store3 key.
type Pair struct {
	Key         string
	Value       []byte
	Flags       uint64
	ModifyIndex uint64
	Session     string // the session holding the key, for a lock key
}

// Verb is a KV transaction verb, spelled as Consul spells it.
type Verb string

// The verbs the migration uses.
const (
	VerbSet            Verb = "set"
	VerbDelete         Verb = "delete"
	VerbDeleteTree     Verb = "delete-tree"
	VerbCheckNotExists Verb = "check-not-exists"
	VerbCheckIndex     Verb = "check-index"

	// verbCheckSession is the fence's op, which the KV prepends (Fence).
	verbCheckSession Verb = "check-session"
)

// Op is one operation of a KV transaction.
type Op struct {
	Verb  Verb
	Key   string
	Value []byte
	Flags uint64
	Index uint64 // for VerbCheckIndex
}

// Fence guards a write transaction: when Session is not empty, the KV
// prepends a check-session op on LockKey, so that a process that lost its
// lock cannot write a single key.
type Fence struct {
	LockKey string
	Session string
}

// Limits are the server's transaction limits.
type Limits struct {
	MaxOps       int  // operations per transaction, 128 on Consul 1.16
	MaxBody      int  // request body bytes: max(txn_max_req_len, kv_max_value_size)
	MaxValue     int  // kv_max_value_size
	FromServer   bool // false when the defaults were assumed
	ServerReason string
}

// DefaultLimits are Consul 1.16's defaults.
var DefaultLimits = Limits{MaxOps: 128, MaxBody: 512 * 1024, MaxValue: 512 * 1024}

// KV is store3.
type KV interface {
	// Get returns the pair at key, or nil and no error when it is absent.
	Get(ctx context.Context, key string) (*Pair, error)
	// Keys returns the keys under prefix, sorted, rolled up at the first
	// separator after the prefix when separator is not empty (as Consul's
	// ?keys&separator= does).
	Keys(ctx context.Context, prefix, separator string) ([]string, error)
	// Scan calls fn for every pair under prefix in key (byte) order,
	// streamed: memory stays constant however many keys the prefix holds.
	// The pair, its Value included, is only valid during fn. A non-nil
	// error from fn stops the scan and is returned as is. An empty prefix
	// is not an error.
	Scan(ctx context.Context, prefix string, fn func(*Pair) error) error
	// Txn applies ops atomically, behind the fence. A transaction the
	// server rolled back returns a *TxnError; one rolled back because the
	// fence failed also matches ErrLockLost, one the token may not make
	// ErrPermissionDenied. A transaction over the server's limits matches
	// ErrTooLarge.
	Txn(ctx context.Context, fence Fence, ops []Op) error
	// Limits reads the server's limits where the token may, else returns
	// DefaultLimits with FromServer false.
	Limits(ctx context.Context) Limits
	// Index returns the index of prefix, as Consul's X-Consul-Index of a
	// listing reports it: the highest ModifyIndex of the keys under prefix
	// and of their tombstones (a deleted key's, kept 15 minutes; a deleted
	// tree's, at the tree's prefix), or, when there are neither, the
	// index of the last write anywhere. Setting or deleting a key under
	// prefix raises it. The answer is small when the keys under prefix
	// continue with a "/", as a bucket's do after its name (it rolls them
	// up there), but Consul still walks every key under prefix to compute
	// it.
	Index(ctx context.Context, prefix string) (uint64, error)
}

// Locker takes the migration lock.
type Locker interface {
	// TryLock tries to take the lock at key for up to wait. It returns
	// ErrLockBusy when another session holds it at the end of wait.
	TryLock(ctx context.Context, key string, wait time.Duration) (Lock, error)
	// DestroySession destroys a session, releasing the locks it holds.
	DestroySession(ctx context.Context, id string) error
}

// Lock is a held lock.
type Lock interface {
	// Session is the session that holds the lock: the fence of every write.
	Session() string
	// Lost is closed when the lock is lost (session invalidated, key taken).
	Lost() <-chan struct{}
	// Unlock releases the lock and destroys its session.
	Unlock(ctx context.Context) error
}

// Logger is what the migration logs through; *logrus.Entry satisfies it.
type Logger interface {
	Infof(format string, args ...interface{})
	Warnf(format string, args ...interface{})
	Errorf(format string, args ...interface{})
}

// Sentinels callers branch on.
var (
	ErrNeverUsed       = errors.New("store2 was never used")
	ErrLockBusy        = errors.New("lock held by another process")
	ErrLockLost        = errors.New("lock lost")
	ErrDangerousPrefix = errors.New("dangerous store3 prefix")
	ErrFailedElsewhere = errors.New("migration failed on another host")
	ErrRecordFailures  = errors.New("records could not be stored")
	ErrMismatch        = errors.New("verification mismatch")
	ErrInterrupted     = errors.New("interrupted")
	// ErrPermissionDenied is a request the token may not make: every KV
	// and Locker wraps it, whatever form the store reports it in.
	ErrPermissionDenied = errors.New("permission denied")
	// ErrTooLarge is a transaction the store refused for its size: too
	// many operations, a body or a value over the server's limits.
	ErrTooLarge = errors.New("request too large")
)

// TxnError is a transaction the server rolled back.
type TxnError struct {
	Errors []string // the server's per-op reasons
}

func (e *TxnError) Error() string {
	return fmt.Sprintf("transaction rolled back: %v", e.Errors)
}

// transientError marks an error worth retrying: a connection failure, a
// leader election, a timeout.
type transientError struct{ err error }

func (e transientError) Error() string { return e.err.Error() }
func (e transientError) Unwrap() error { return e.err }

// Transient marks err as worth retrying. Implementations of Source, KV and
// Locker wrap connection failures, leader elections and timeouts with it.
func Transient(err error) error {
	if err == nil {
		return nil
	}
	return transientError{err}
}

// IsTransient reports whether err, or an error it wraps, was marked Transient.
func IsTransient(err error) bool {
	var t transientError
	return errors.As(err, &t)
}

// Errors added with the migration core.
var (
	// ErrDryRunFailed wraps every problem a dry run finds that a real run
	// would fail on.
	ErrDryRunFailed = errors.New("dry run found problems")
)
