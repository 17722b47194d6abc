package main

import (
	"context"
	"fmt"
	"os"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/apcera/deployhook/integration/harness"
	"github.com/apcera/deployhook/migrate"
	"github.com/apcera/deployhook/migrate/consulkv"
	"github.com/apcera/deployhook/migrate/pgsource"
)

// phases is the timing of one in-process migration: before the first
// transaction (lock, snapshot, wipe), the copy, and after the last
// transaction (verification, .done).
type phases struct {
	before, copy, after, total time.Duration
}

// inProcess migrates once more in this process, with the stores and options
// `deployhook migrate` builds (InFlight aside, 0 is its default), under a
// CPU profile when path is set: the binary cannot be profiled from outside
// without changing it.
//
// With verifyAfter, store3 is not listed while the copy runs: the
// migration's verification then reads it back after the copy, and the
// copy phase is the writes alone (verifyAfterCopy). With tl, the
// timeline records the migration's requests and log lines.
func inProcess(ctx context.Context, pg *harness.Postgres, addr string, cl *api.Client, n, inflight int, path string, verifyAfter bool, tl *timeline) (phases, error) {
	var ph phases
	src, err := pgsource.New(ctx, pgsource.Config{URL: pg.URL(database), Database: database, Table: table})
	if err != nil {
		return ph, err
	}
	kv, err := consulkv.New(consulkv.Config{Address: addr})
	if err != nil {
		return ph, err
	}
	var first, last time.Time
	var store3 migrate.KV = kv
	var after *verifyAfterCopy
	if verifyAfter {
		after = &verifyAfterCopy{KV: kv, copied: make(chan struct{})}
		store3 = after
	}
	m := &migrate.Migrator{Source: src, KV: store3, Locker: kv, Opts: migrate.Options{
		Component: component, Prefix: prefix, Hostname: "bench-in-process", ToolVersion: "bench",
		InFlight: inflight,
		Progress: func(done, total int64) {
			if first.IsZero() {
				first = time.Now()
				after.copying()
			}
			last = time.Now()
			if done >= total {
				after.copyEnded()
			}
		},
	}}
	// What the runs before left on this process's heap (the ceiling's ops,
	// listings) goes back to the system now: otherwise the runtime's
	// scavenger returns it during the migration, on the cores the
	// migration measures (0.16 s of a 0.81 s profile, December 5).
	debug.FreeOSMemory()
	if path != "" {
		f, err := os.Create(path)
		if err != nil {
			return ph, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return ph, err
		}
	}
	if tl != nil {
		tl.wrap(m)
		tl.begin()
	}
	start := time.Now()
	res, err := m.Run(ctx)
	end := time.Now()
	if tl != nil {
		tl.finish()
	}
	if path != "" {
		pprof.StopCPUProfile()
	}
	if err != nil {
		return ph, fmt.Errorf("in-process migrate: %w", err)
	}
	if res.Migrated != int64(n) {
		return ph, fmt.Errorf("in-process migrate: %d records migrated, want %d", res.Migrated, n)
	}
	ph = phases{before: first.Sub(start), copy: last.Sub(first), after: end.Sub(last), total: end.Sub(start)}
	return ph, wipe(cl, prefix)
}

// verifyAfterCopy holds store3's listings back while the copy runs (from
// its first commit to its last), so that the verification the migration
// overlaps with the copy reads store3 after it instead: what the overlap
// costs the writes, measured without changing the migration. Listings
// before and after the copy pass through.
type verifyAfterCopy struct {
	migrate.KV
	started atomic.Bool   // the copy committed its first batch
	once    sync.Once     // closes copied
	copied  chan struct{} // closed when the copy committed its last
}

func (v *verifyAfterCopy) copying() {
	if v != nil {
		v.started.Store(true)
	}
}

func (v *verifyAfterCopy) copyEnded() {
	if v != nil && v.started.Load() {
		v.once.Do(func() { close(v.copied) })
	}
}

func (v *verifyAfterCopy) Scan(ctx context.Context, prefix string, fn func(*migrate.Pair) error) error {
	if v.started.Load() {
		select {
		case <-v.copied:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return v.KV.Scan(ctx, prefix, fn)
}

func (p phases) String() string {
	return fmt.Sprintf("total %v; before the first txn %v; copy %v; after the last txn (verify, .done) %v",
		p.total.Round(time.Millisecond), p.before.Round(time.Millisecond), p.copy.Round(time.Millisecond), p.after.Round(time.Millisecond))
}

// compareInFlight separates what bounds the migration: the copy with the
// migrator's 6 transactions in flight and with 8, beside the ceiling at 6
// and 8, alternated so that a noisy machine weighs on each alike. With
// -compare-verify-after, each is run again with store3 read back after the
// copy instead of while it runs (verifyAfterCopy): what the overlapped
// verification costs the writes, and what it saves the whole run.
func compareInFlight(ctx context.Context, pg *harness.Postgres, addr string, cl *api.Client, n int) error {
	var compareSet []int
	for _, f := range strings.Split(*flagCompareSet, ",") {
		k, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || k < 1 {
			return fmt.Errorf("-compare-set %q: want transactions in flight, comma-separated", *flagCompareSet)
		}
		compareSet = append(compareSet, k)
	}
	rates := map[string][]float64{}
	after := map[string][]float64{}
	for i := 0; i < *flagCompare; i++ {
		for _, inflight := range compareSet {
			// consul/api keeps 3 idle connections by default: beyond 8 in
			// flight the ceiling's loop opens connections faster than the
			// server lets one client (http_max_conns_per_client), and fails.
			var r float64
			if inflight <= 8 {
				var err error
				if r, err = ceiling(ctx, cl, n, inflight, ceilRecords); err != nil {
					return err
				}
				if err := wipe(cl, ceilPre); err != nil {
					return err
				}
				k := fmt.Sprintf("ceiling, %d in flight", inflight)
				rates[k] = append(rates[k], r)
			}
			modes := []bool{false}
			if *flagCompareAfter {
				modes = append(modes, true)
			}
			for _, verifyAfter := range modes {
				ph, err := inProcess(ctx, pg, addr, cl, n, inflight, "", verifyAfter, nil)
				if err != nil {
					return err
				}
				how := ""
				if verifyAfter {
					how = ", store3 read back after the copy"
				}
				logf("compare %d: InFlight %d%s: ceiling %.0f records/s; migrator %s", i+1, inflight, how, r, ph)
				k := fmt.Sprintf("migrator copy phase, InFlight %d%s", inflight, how)
				rates[k] = append(rates[k], float64(n)/ph.copy.Seconds())
				k = fmt.Sprintf("migrator whole run, InFlight %d%s", inflight, how)
				rates[k] = append(rates[k], float64(n)/ph.total.Seconds())
				k = fmt.Sprintf("after the last txn (verification, .done), seconds, InFlight %d%s", inflight, how)
				after[k] = append(after[k], ph.after.Seconds())
			}
		}
	}
	fmt.Printf("\nIn-process comparison, median of %d alternations:\n\n| measure | records/s |\n| --- | ---: |\n", *flagCompare)
	keys := make([]string, 0, len(rates))
	for k := range rates {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Printf("| %s | %.0f |\n", k, median(rates[k]))
	}
	fmt.Printf("\n| measure | seconds |\n| --- | ---: |\n")
	keys = keys[:0]
	for k := range after {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Printf("| %s | %.2f |\n", k, median(after[k]))
	}
	return nil
}
