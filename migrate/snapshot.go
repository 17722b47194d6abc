package migrate

import (
	"context"
	"errors"
	"fmt"
)

// openSnapshot opens a store2 snapshot, retrying transient failures. A
// store2 that was never used fails at once with ErrNeverUsed.
func openSnapshot(ctx context.Context, src Source, b Backoff, log Logger) (Snapshot, error) {
	var snap Snapshot
	err := retry(ctx, b, log, "open store2 snapshot", func() error {
		var err error
		snap, err = src.Snapshot(ctx)
		return err
	})
	if err != nil {
		return nil, err
	}
	return snap, nil
}

// closeSnapshot ends a snapshot, even after an interrupt, within
// cleanupTimeout. A snapshot is read only: closing it loses nothing, so
// its error is only worth a warning.
func closeSnapshot(ctx context.Context, snap Snapshot, log Logger) {
	cctx, cancel := detached(ctx)
	defer cancel()
	if err := snap.Close(cctx); err != nil {
		log.Warnf("close store2 snapshot: %v", err)
	}
}

// sourceError is a store2 failure mid-stream: a transient one starts the
// work over from a new snapshot.
type sourceError struct{ err error }

func (e *sourceError) Error() string { return e.err.Error() }
func (e *sourceError) Unwrap() error { return e.err }

func readError(err error) error {
	return &sourceError{fmt.Errorf("read store2: %w", err)}
}

// withFreshSnapshots runs attempt, which opens a snapshot of its own,
// again after a transient store2 failure mid-stream (a sourceError), at
// most Attempts times in all. what completes the warning logged before a
// new attempt.
func (r *run) withFreshSnapshots(ctx context.Context, what string, attempt func() error) error {
	for n := 1; ; n++ {
		err := attempt()
		var se *sourceError
		if err == nil || !errors.As(err, &se) || !IsTransient(err) || n >= r.o.Attempts || ctx.Err() != nil {
			return err
		}
		r.o.Log.Warnf("store2 failed mid-stream%s (attempt %d of %d): %v", what, n+1, r.o.Attempts, err)
		if err := Sleep(ctx, r.o.Retry.Max); err != nil {
			return err
		}
	}
}
