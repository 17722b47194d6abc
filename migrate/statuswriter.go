package migrate

import (
	"context"
	"sync"
	"time"
)

// The phases of a migration, as .status records them.
const (
	PhaseCopying    = "copying"
	PhaseCatchingUp = "catching-up"
	PhaseCutover    = "cutover"
	PhaseDone       = "done"
	PhaseFailed     = "failed"
)

// statusWriter keeps <prefix>migration/.status current: written at start,
// on each change of phase, every few seconds while the work goes on, and at
// the end. It builds the status from what the run reports to it.
type statusWriter struct {
	kv    KV
	key   string
	fence Fence
	every time.Duration
	log   Logger
	retry Backoff
	base  Status // the fields fixed for the run
	count func() (done, total int64, failed []FailedRecord)

	mu           sync.Mutex
	phase        string
	round        int
	delta        int64
	started      bool
	stop, exited chan struct{}
}

// build returns .status as of now.
func (w *statusWriter) build(state, errText string, now Time) Status {
	s := w.base
	s.State, s.Updated, s.Error = state, now, errText
	if state != StateRunning {
		s.Finished = now
	}
	s.RecordsDone, s.RecordsTotal, s.FailedRecords = w.count()
	w.mu.Lock()
	s.Phase, s.Round, s.Delta = w.phase, w.round, w.delta
	w.mu.Unlock()
	switch state {
	case StateDone:
		s.Phase = PhaseDone
	case StateFailed:
		s.Phase = PhaseFailed
	}
	return s
}

func (w *statusWriter) put(ctx context.Context, s Status) error {
	return w.kv.Txn(ctx, w.fence, []Op{{Verb: VerbSet, Key: w.key, Value: encodeJSON(s)}})
}

// start writes the running status, then rewrites it every w.every until
// finish. Calling it again (a new attempt) only rewrites it.
func (w *statusWriter) start(ctx context.Context, now func() Time) error {
	if err := retry(ctx, w.retry, w.log, "write .status", func() error {
		return w.put(ctx, w.build(StateRunning, "", now()))
	}); err != nil {
		return err
	}
	if w.started {
		return nil
	}
	w.started = true
	w.stop, w.exited = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(w.exited)
		t := time.NewTicker(w.every)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				if err := w.put(ctx, w.build(StateRunning, "", now())); err != nil && ctx.Err() == nil {
					w.log.Warnf("write .status: %v", err)
				}
			case <-w.stop:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	return nil
}

// setPhase records a new phase (and the last catch-up round with its
// delta), written at once when the writer runs; a failed write waits for the
// next tick.
func (w *statusWriter) setPhase(ctx context.Context, phase string, round int, delta int64, now Time) {
	w.mu.Lock()
	w.phase, w.round, w.delta = phase, round, delta
	started := w.started
	w.mu.Unlock()
	if !started {
		return
	}
	if err := w.put(ctx, w.build(StateRunning, "", now)); err != nil && ctx.Err() == nil {
		w.log.Warnf("write .status: %v", err)
	}
}

// finish stops the periodic writes and, when the writer ever ran, writes
// the last status, even after an interrupt; it cannot once the lock is
// lost, and says so.
func (w *statusWriter) finish(ctx context.Context, state, errText string, now Time) {
	if w == nil || !w.started {
		return
	}
	close(w.stop)
	<-w.exited
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*cleanupTimeout)
	defer cancel()
	if err := retry(fctx, w.retry, w.log, "write .status", func() error {
		return w.put(fctx, w.build(state, errText, now))
	}); err != nil {
		w.log.Warnf("cannot record %q in %q: %v", state, w.key, err)
	}
}
