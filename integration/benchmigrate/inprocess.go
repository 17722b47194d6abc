package main

import (
	"context"
	"fmt"
	"os"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
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
func inProcess(ctx context.Context, pg *harness.Postgres, addr string, cl *api.Client, n, inflight int, path string) (phases, error) {
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
	m := &migrate.Migrator{Source: src, KV: kv, Locker: kv, Opts: migrate.Options{
		Component: component, Prefix: prefix, Hostname: "bench-in-process", ToolVersion: "bench",
		InFlight: inflight,
		Progress: func(done, total int64) {
			if first.IsZero() {
				first = time.Now()
			}
			last = time.Now()
		},
	}}
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
	start := time.Now()
	res, err := m.Run(ctx)
	end := time.Now()
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

func (p phases) String() string {
	return fmt.Sprintf("total %v; before the first txn %v; copy %v; after the last txn (verify, .done) %v",
		p.total.Round(time.Millisecond), p.before.Round(time.Millisecond), p.copy.Round(time.Millisecond), p.after.Round(time.Millisecond))
}

// compareInFlight separates what bounds the migration: the copy with the
// migrator's 6 transactions in flight and with 8, beside the ceiling at 6
// and 8, alternated so that a noisy machine weighs on each alike.
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
	var after []float64
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
			ph, err := inProcess(ctx, pg, addr, cl, n, inflight, "")
			if err != nil {
				return err
			}
			logf("compare %d: InFlight %d: ceiling %.0f records/s; migrator %s", i+1, inflight, r, ph)
			k := fmt.Sprintf("migrator copy phase, InFlight %d", inflight)
			rates[k] = append(rates[k], float64(n)/ph.copy.Seconds())
			k = fmt.Sprintf("migrator whole run, InFlight %d", inflight)
			rates[k] = append(rates[k], float64(n)/ph.total.Seconds())
			after = append(after, ph.after.Seconds())
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
	fmt.Printf("| verification and .done after the copy | %.2f s |\n", median(after))
	return nil
}
