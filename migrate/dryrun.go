package migrate

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"
)

// DryRunReport is what a dry run found.
type DryRunReport struct {
	Prefix           string
	DoneExists       bool
	Done             *Done
	Limits           Limits
	PermissionOK     bool
	PermissionReason string
	SessionOK        bool   // the token may create the lock's session
	SessionReason    string // why not, or what was not checked
	Wipe             WipeReport
	// Online is whether a real run would migrate online; FreezeOK whether
	// the store2 role may then freeze the table, FreezeReason what to grant
	// when it may not.
	Online       bool
	FreezeOK     bool
	FreezeReason string
	Buckets      []BucketReport // in byte order
	Records      int64
	Failed       []FailedRecord // every one
	Took         time.Duration
}

// BucketReport counts one bucket's records.
type BucketReport struct {
	Bucket  string
	Records int64
	Bytes   int64
}

// DryRun checks, without a lock and without writing, what a real run
// would: steps 1 and 4, and every check of 5 to 8 that needs no write,
// and, online, whether store2 can be frozen. Its error wraps
// ErrDryRunFailed when a real run would fail.
func (m *Migrator) DryRun(ctx context.Context) (*DryRunReport, error) {
	o := m.Opts.withDefaults()
	r := newRun(m, o)
	rep := &DryRunReport{Prefix: o.Prefix, Online: !o.Offline}
	if err := CheckPrefix(o.Prefix); err != nil {
		return rep, err
	}
	logDryRunStart(o.Log)
	d, present, err := r.readDone(ctx)
	if err != nil {
		return rep, err
	}
	rep.DoneExists, rep.Done = present, d
	if present {
		logAlreadyDone(o.Log, o.Prefix)
	}
	rep.Limits = m.KV.Limits(ctx)
	if rep.PermissionOK, rep.PermissionReason, err = probeWrite(ctx, m.KV, o.Prefix); err != nil {
		return rep, err
	}
	if rep.SessionOK, rep.SessionReason, err = probeSession(ctx, m.Locker); err != nil {
		return rep, err
	}
	if rep.Wipe, err = r.wipePreview(ctx); err != nil {
		return rep, err
	}
	if rep.Online {
		if rep.FreezeReason, err = r.canFreeze(ctx); err != nil {
			return rep, err
		}
		rep.FreezeOK = rep.FreezeReason == ""
	}

	snap, err := openSnapshot(ctx, m.Source, o.Retry, o.Log)
	if err != nil {
		return rep, err
	}
	defer closeSnapshot(ctx, snap, o.Log)
	r.limits = rep.Limits
	b := SizingBatcher(rep.Limits, o.Prefix)
	err = r.retry(ctx, "read store2", func() error {
		rep.Buckets, rep.Records, rep.Failed = nil, 0, nil
		return snap.Scan(ctx, func(rec *Record) error {
			rep.Records++
			if n := len(rep.Buckets); n == 0 || rep.Buckets[n-1].Bucket != rec.Bucket {
				rep.Buckets = append(rep.Buckets, BucketReport{Bucket: rec.Bucket})
			}
			br := &rep.Buckets[len(rep.Buckets)-1]
			br.Records++
			br.Bytes += int64(len(rec.Data))
			if _, reason := CheckRecord(r.o.Prefix, rec, b); reason != "" {
				logRecordFailure(o.Log, rec, reason)
				rep.Failed = append(rep.Failed, FailedRecord{Bucket: rec.Bucket, Key: rec.Key, Reason: reason})
			}
			return nil
		})
	})
	if err != nil {
		return rep, err
	}
	rep.Took = time.Since(r.clock)
	logDryRun(o.Log, rep.Took, rep.Records, len(rep.Failed))
	switch {
	case rep.DoneExists:
		return rep, nil // a real run would stop at step 1
	case !rep.PermissionOK:
		return rep, fmt.Errorf("%w: %w: %s", ErrDryRunFailed, ErrPermissionDenied, rep.PermissionReason)
	case !rep.SessionOK:
		return rep, fmt.Errorf("%w: %w: %s", ErrDryRunFailed, ErrPermissionDenied, rep.SessionReason)
	case rep.Online && !rep.FreezeOK:
		return rep, fmt.Errorf("%w: %w: %s", ErrDryRunFailed, ErrCannotFreeze, rep.FreezeReason)
	case len(rep.Failed) > 0:
		f := rep.Failed[0]
		return rep, fmt.Errorf("%w: %w: %d of %d records (first: bucket %q key %q: %s)",
			ErrDryRunFailed, ErrRecordFailures, len(rep.Failed), rep.Records, f.Bucket, f.Key, f.Reason)
	}
	return rep, nil
}

// probeWrite asks whether the token may write under prefix without
// writing: a transaction whose first op, a check-index no key can pass,
// rolls back the set that follows it. Consul checks ACLs of every op before
// applying any, so a token that may not write is refused for that instead.
func probeWrite(ctx context.Context, kv KV, prefix string) (ok bool, reason string, err error) {
	key := migrationDir(prefix) + ".dry-run-probe"
	err = kv.Txn(ctx, Fence{}, []Op{
		{Verb: VerbCheckIndex, Key: key, Index: math.MaxUint64},
		{Verb: VerbSet, Key: key, Value: []byte("dry run")},
	})
	if err == nil {
		return true, fmt.Sprintf("probe %q was not rolled back: delete it", key), nil
	}
	if errors.Is(err, ErrPermissionDenied) {
		return false, fmt.Sprintf("write under %q refused: %v", prefix, err), nil
	}
	var te *TxnError
	if errors.As(err, &te) {
		return true, "write permitted (probe rolled back by its check-index)", nil
	}
	return false, "", fmt.Errorf("probe write permission under %q: %w", prefix, err)
}
