package migrate

import (
	"context"
	"fmt"
	"strings"
)

// WipeReport is what step 5 deletes, or would: every key under the prefix
// outside migration/, left by an earlier attempt.
type WipeReport struct {
	Keys  int64    // how many
	First []string // the first of them, in key order
}

// wipeFirst is how many keys a dry run names.
const wipeFirst = 10

// leftovers counts the keys under prefix outside migration/ that step 5
// deletes, and names the first max of them. top is the prefix's listing
// rolled up at "/" (what wipe deletes, tree by tree). Memory is bounded by
// the largest bucket's key names.
func leftovers(ctx context.Context, kv KV, prefix string, top []string, max int) (WipeReport, error) {
	var w WipeReport
	for _, k := range top {
		if k == migrationDir(prefix) {
			continue
		}
		keys := []string{k}
		if strings.HasSuffix(k, "/") && k != prefix {
			var err error
			if keys, err = kv.Keys(ctx, k, ""); err != nil {
				return w, fmt.Errorf("list %q: %w", k, err)
			}
		}
		w.Keys += int64(len(keys))
		for _, key := range keys {
			if len(w.First) >= max {
				break
			}
			w.First = append(w.First, key)
		}
	}
	return w, nil
}

// wipePreview is the dry run's view of step 5.
func (r *run) wipePreview(ctx context.Context) (WipeReport, error) {
	var w WipeReport
	err := r.retry(ctx, "list store3 keys", func() error {
		top, err := r.m.KV.Keys(ctx, r.o.Prefix, "/")
		if err == nil {
			w, err = leftovers(ctx, r.m.KV, r.o.Prefix, top, wipeFirst)
		}
		return err
	})
	return w, err
}
