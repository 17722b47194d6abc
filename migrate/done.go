package migrate

import (
	"context"
	"fmt"
)

// writeDone writes .done behind the fence and check-not-exists. When that
// fails (a rolled-back retry after a leader change), a .done naming this
// process is success.
func (r *run) writeDone(ctx context.Context, d *Done) error {
	key := DoneKey(r.o.Prefix)
	ops := []Op{{Verb: VerbCheckNotExists, Key: key}, {Verb: VerbSet, Key: key, Value: encodeJSON(d)}}
	err := r.txn(ctx, fmt.Sprintf("write %q", key), ops)
	if err == nil || ctx.Err() != nil {
		return err
	}
	got, present, rerr := r.readDone(ctx)
	if rerr == nil && present && got != nil && got.Host == d.Host && got.PID == d.PID && got.Started.Equal(d.Started.Time) {
		r.o.Log.Warnf("%v; %q names this process: it was written", err, key)
		*d = *got
		return nil
	}
	return err
}

// readDone reads .done; present is true for any value there, even one that
// does not decode: its presence is what means "migrated".
func (r *run) readDone(ctx context.Context) (d *Done, present bool, err error) {
	err = r.retry(ctx, "read .done", func() error {
		p, err := r.m.KV.Get(ctx, DoneKey(r.o.Prefix))
		if err != nil || p == nil {
			return err
		}
		present = true
		if d, err = decodeJSON[Done](p); err != nil {
			r.o.Log.Warnf("%v: it exists, which is what counts", err)
		}
		return nil
	})
	return d, present, err
}
