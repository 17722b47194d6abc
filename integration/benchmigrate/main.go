// Command benchmigrate measures `deployhook migrate` against the ceiling of
// the Consul server it writes to, in one run, on one fresh disk-backed
// server (DESIGN.md "Performance facts"):
//
//   - the ceiling: fenced transactions of 128 ops (a check-session op and
//     127 sets of 200-byte values) from a minimal consul/api loop, with 1
//     and with 8 transactions in flight;
//   - the real bin/deployhook migrating the same number of records from
//     PostgreSQL, its wall time and its peak RSS;
//   - `consul kv import` (one PUT per key) of a sample of the records.
//
// The ceiling and the migration are repeated -runs times, store3 wiped
// between runs, and the medians printed as a markdown table.
//
// Run it with `make bench-migrate` (BENCH_ARGS="-n 1000000 -runs 1" for the
// memory check), which builds bin/deployhook and bin/consul first.
package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"slices"
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

var (
	flagN        = flag.Int("n", 100_000, "records to seed into store2 and migrate")
	flagRuns     = flag.Int("runs", 3, "repetitions of the ceiling and the migration")
	flagSample   = flag.Int("import-sample", 10_000, "records `consul kv import` writes (one PUT per key; about 800/s)")
	flagMillion  = flag.Bool("million", false, "shorthand for -n 1000000 -runs 1: the memory check (peak RSS < -rss-limit)")
	flagRSSLimit = flag.Int("rss-limit", 64, "peak RSS of deployhook migrate to check against, `MiB`")
	flagValue    = flag.Int("value-size", 200, "bytes per record")
	flagKeep     = flag.Bool("keep", false, "keep the servers' directory (printed) after the run")
	flagInFlight = flag.Int("profile-inflight", 0, "Options.InFlight of the -cpuprofile run (0: the migrator's default, as the binary)")
	flagCompare  = flag.Int("compare-inflight", 0, "after the runs, alternate `N` times: ceiling with 6 and 8 in flight, in-process migrations with InFlight 6 and 8, and print the phases")
	flagProfile  = flag.String("cpuprofile", "", "after the runs, migrate once more in this process (the migrator the binary runs, same options) with a CPU profile written to `FILE`")
)

const (
	component = "job_manager"
	database  = "jmdb"
	table     = "store2_records"
	prefix    = "apcera/store3/jmdb/"
	ceilPre   = "bench/ceiling/"
	importPre = "bench/import/"
	opsPerTxn = 128
)

func main() {
	flag.Parse()
	if *flagMillion {
		*flagN, *flagRuns = 1_000_000, 1
	}
	if err := bench(); err != nil {
		fmt.Fprintf(os.Stderr, "benchmigrate: %v\n", err)
		os.Exit(1)
	}
}

// record i of the data set: four buckets, keys that need escaping, a
// version, and value-size bytes.
func record(i int, value []byte) migrate.Record {
	buckets := [...]string{"jobs", "routes", "packages", "policies"}
	return migrate.Record{
		Bucket:  buckets[i%len(buckets)],
		Key:     fmt.Sprintf("job::/sandbox/team-%d::app-%08d", i%97, i),
		Version: int64(i%1000 + 1),
		Data:    value,
	}
}

func value(i, size int) []byte {
	b := make([]byte, size)
	for j := range b {
		b[j] = byte('a' + (i+j)%26)
	}
	return b
}

type sample struct {
	ceil1, ceil8 []float64 // records/s
	migWall      []float64 // records/s, process start to exit
	migTook      []float64 // records/s, the migrator's own "took"
	rssKiB       []int64
	cpu          []time.Duration // user+sys of the migrate process
}

func bench() error {
	root, err := harness.RepoRoot()
	if err != nil {
		return err
	}
	bin := filepath.Join(root, "bin", "deployhook")
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("%s missing: run make build (make bench-migrate does)", bin)
	}
	consulBin, err := harness.ConsulBinary()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "benchmigrate-")
	if err != nil {
		return err
	}
	if *flagKeep {
		fmt.Fprintf(os.Stderr, "servers' directory: %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	var svcLog bytes.Buffer
	pg, err := harness.StartPostgresDir(filepath.Join(dir, "pg"), &svcLog)
	if pg != nil {
		defer pg.Stop()
	}
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	consul, err := harness.StartConsulDir(filepath.Join(dir, "consul"), &svcLog, harness.WithLogLevel("warn"))
	if consul != nil {
		defer consul.Stop()
	}
	if err != nil {
		return fmt.Errorf("consul: %w\n%s", err, svcLog.String())
	}
	ctx := context.Background()
	n := *flagN
	logf("PostgreSQL 127.0.0.1:%d, Consul %s (fresh data directory, raft on disk)", pg.Port, consul.Addr())

	t0 := time.Now()
	if err := pg.CreateComponentDB(ctx, database, table); err != nil {
		return err
	}
	vals := make([][]byte, 26)
	for i := range vals {
		vals[i] = value(i, *flagValue)
	}
	if err := pg.SeedFunc(ctx, database, table, n, func(i int) migrate.Record { return record(i, vals[i%26]) }); err != nil {
		return err
	}
	logf("seeded %d records of %d bytes into store2 with COPY in %v", n, *flagValue, time.Since(t0).Round(time.Millisecond))

	conf, err := writeConf(dir, pg, consul)
	if err != nil {
		return err
	}
	cl := consul.Client()
	// One PUT per key first, on the fresh server: after a few million
	// writes and deletes its commits are slower (DESIGN.md).
	k := min(*flagSample, n)
	importRate, err := kvImport(consulBin, consul.Addr(), k)
	if err != nil {
		return err
	}
	logf("consul kv import of %d records: %.0f records/s", k, importRate)
	if err := wipe(cl, importPre); err != nil {
		return err
	}
	var s sample
	for run := 1; run <= *flagRuns; run++ {
		for _, inflight := range []int{1, 8} {
			rate, err := ceiling(ctx, cl, n, inflight)
			if err != nil {
				return fmt.Errorf("ceiling, %d in flight: %w", inflight, err)
			}
			logf("run %d: ceiling, %d in flight: %.0f records/s", run, inflight, rate)
			if inflight == 1 {
				s.ceil1 = append(s.ceil1, rate)
			} else {
				s.ceil8 = append(s.ceil8, rate)
			}
			if err := wipe(cl, ceilPre); err != nil {
				return err
			}
		}
		m, err := runMigrate(bin, conf, pg, n)
		if err != nil {
			return err
		}
		logf("run %d: deployhook migrate: %v wall (%.0f records/s), took %v (%.0f records/s), peak RSS %.1f MiB, CPU %v",
			run, m.wall.Round(time.Millisecond), float64(n)/m.wall.Seconds(), m.took, float64(n)/m.took.Seconds(),
			float64(m.rss)/1024, m.cpu.Round(time.Millisecond))
		s.migWall = append(s.migWall, float64(n)/m.wall.Seconds())
		s.migTook = append(s.migTook, float64(n)/m.took.Seconds())
		s.rssKiB = append(s.rssKiB, m.rss)
		s.cpu = append(s.cpu, m.cpu)
		if err := wipe(cl, prefix); err != nil {
			return err
		}
	}

	freelist := freelistBytes(cl)

	if *flagProfile != "" {
		ph, err := inProcess(ctx, pg, consul, n, *flagInFlight, *flagProfile)
		if err != nil {
			return err
		}
		logf("in-process migrate under the profiler (InFlight %d, 0 = default): %s; %.0f records/s in the copy; go tool pprof -top %s",
			*flagInFlight, ph, float64(n)/ph.copy.Seconds(), *flagProfile)
	}
	if *flagCompare > 0 {
		if err := compareInFlight(ctx, pg, consul, cl, n); err != nil {
			return err
		}
	}
	report(s, n, k, importRate, freelist)
	return nil
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func writeConf(dir string, pg *harness.Postgres, c *harness.Consul) (string, error) {
	conf := fmt.Sprintf(`component: %s
db: {
  kind: store3
  migrate_store2_to_store3: true
  postgres: { url: %q }
  consul: { address: %q, prefix: %q }
}
log_dir: %q
`, component, pg.URLWithoutPassword(database), c.Addr(), prefix, filepath.Join(dir, "log"))
	path := filepath.Join(dir, "jm.conf")
	return path, os.WriteFile(path, []byte(conf), 0o600)
}

// ceiling writes n records of the value size in fenced transactions of 128
// ops from inflight goroutines, and returns records/s.
func ceiling(ctx context.Context, cl *api.Client, n, inflight int) (float64, error) {
	lockKey := ceilPre + "migration/.lock"
	sid, _, err := cl.Session().Create(&api.SessionEntry{TTL: "30s", LockDelay: time.Second, Behavior: api.SessionBehaviorRelease}, nil)
	if err != nil {
		return 0, err
	}
	defer cl.Session().Destroy(sid, nil)
	renew := make(chan struct{})
	defer close(renew)
	go cl.Session().RenewPeriodic("30s", sid, nil, renew)
	ok, _, err := cl.KV().Acquire(&api.KVPair{Key: lockKey, Session: sid}, nil)
	if err != nil || !ok {
		return 0, fmt.Errorf("acquire %q: %v (acquired %t)", lockKey, err, ok)
	}
	// Released before the session is destroyed: a destroy would start the
	// lock delay on the key, and the next measurement takes it again.
	defer cl.KV().Release(&api.KVPair{Key: lockKey, Session: sid}, nil)
	const per = opsPerTxn - 1
	txns := (n + per - 1) / per
	val := value(0, *flagValue)
	var next atomic.Int64
	var wg sync.WaitGroup
	var errMu sync.Mutex
	var firstErr error
	start := time.Now()
	for range inflight {
		wg.Go(func() {
			ops := make(api.TxnOps, 0, opsPerTxn)
			for {
				t := int(next.Add(1) - 1)
				if t >= txns {
					return
				}
				ops = append(ops[:0], &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVCheckSession, Key: lockKey, Session: sid}})
				for i := t * per; i < min((t+1)*per, n); i++ {
					ops = append(ops, &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVSet,
						Key: fmt.Sprintf("%sjobs/rec-%08d", ceilPre, i), Value: val, Flags: uint64(i)}})
				}
				okTxn, resp, _, err := cl.Txn().Txn(ops, (&api.QueryOptions{}).WithContext(ctx))
				if err == nil && !okTxn {
					err = fmt.Errorf("rolled back: %+v", resp.Errors)
				}
				if err != nil {
					errMu.Lock()
					firstErr = errors.Join(firstErr, err)
					errMu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	if firstErr != nil {
		return 0, firstErr
	}
	return float64(n) / took.Seconds(), nil
}

// wipe deletes everything under p.
func wipe(cl *api.Client, p string) error {
	_, err := cl.KV().DeleteTree(p, nil)
	return err
}

type migrateRun struct {
	wall, took, cpu time.Duration
	rss             int64 // KiB
}

var migratedRE = regexp.MustCompile(`Migrated store2 -> store3 \(took: ([^,]+), records migrated: (\d+), records failed: 0\)`)

// runMigrate runs the real binary and measures it.
func runMigrate(bin, conf string, pg *harness.Postgres, n int) (migrateRun, error) {
	cmd := exec.Command(bin, "migrate", "-f", conf, "--hostname", "bench")
	cmd.Env = append(os.Environ(), "PGPASSFILE="+pg.PassFile())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	peak, err := harness.RunPeakRSS(cmd)
	wall := time.Since(start)
	if err != nil {
		return migrateRun{}, fmt.Errorf("deployhook migrate: %v\n%s", err, stderr.String())
	}
	m := migratedRE.FindStringSubmatch(stderr.String())
	if m == nil || m[2] != fmt.Sprint(n) {
		return migrateRun{}, fmt.Errorf("deployhook migrate: no \"Migrated ... records migrated: %d\" line:\n%s", n, stderr.String())
	}
	took, err := time.ParseDuration(m[1])
	if err != nil {
		return migrateRun{}, err
	}
	return migrateRun{wall: wall, took: took, rss: peak, cpu: cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()}, nil
}

// kvImport imports k records with `consul kv import` (one PUT per key) and
// returns records/s.
func kvImport(consulBin, addr string, k int) (float64, error) {
	type entry struct {
		Key   string `json:"key"`
		Flags uint64 `json:"flags"`
		Value string `json:"value"`
	}
	entries := make([]entry, k)
	for i := range entries {
		r := record(i, value(i%26, *flagValue))
		entries[i] = entry{Key: fmt.Sprintf("%s%s/rec-%08d", importPre, r.Bucket, i), Flags: uint64(r.Version), Value: base64.StdEncoding.EncodeToString(r.Data)}
	}
	in, err := json.Marshal(entries)
	if err != nil {
		return 0, err
	}
	cmd := exec.Command(consulBin, "kv", "import", "-http-addr="+addr, "-")
	cmd.Stdin = bytes.NewReader(in)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("consul kv import: %v\n%s", err, tailText(out.String()))
	}
	return float64(k) / time.Since(start).Seconds(), nil
}

func tailText(s string) string {
	if len(s) > 2000 {
		return "..." + s[len(s)-2000:]
	}
	return s
}

// freelistBytes reads the consul.raft.boltdb.freelistBytes gauge, -1 when
// absent.
func freelistBytes(cl *api.Client) float64 {
	m, err := cl.Agent().Metrics()
	if err != nil {
		return -1
	}
	for _, g := range m.Gauges {
		if strings.HasSuffix(g.Name, "raft.boltdb.freelistBytes") {
			return float64(g.Value)
		}
	}
	return -1
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func report(s sample, n, k int, importRate, freelist float64) {
	rss := make([]float64, len(s.rssKiB))
	for i, v := range s.rssKiB {
		rss[i] = float64(v) / 1024
	}
	cpu := make([]float64, len(s.cpu))
	for i, v := range s.cpu {
		cpu[i] = v.Seconds()
	}
	ceil := max(median(s.ceil1), median(s.ceil8))
	mig := median(s.migWall)
	fmt.Printf("\nbenchmigrate: %d records of %d bytes, median of %d runs; Consul 1.16.1, one fresh server, raft on disk\n\n", n, *flagValue, len(s.migWall))
	fmt.Printf("| measure | records/s | note |\n| --- | ---: | --- |\n")
	fmt.Printf("| ceiling: fenced txns of 128 ops, 1 in flight | %.0f | minimal consul/api loop |\n", median(s.ceil1))
	fmt.Printf("| ceiling: fenced txns of 128 ops, 8 in flight | %.0f | minimal consul/api loop |\n", median(s.ceil8))
	fmt.Printf("| `deployhook migrate`, wall clock | %.0f | process start to exit: lock, wipe, copy, verify, done |\n", mig)
	fmt.Printf("| `deployhook migrate`, its own \"took\" | %.0f | as logged in the Migrated line |\n", median(s.migTook))
	fmt.Printf("| `consul kv import` (one PUT per key) | %.0f | sample of %d records |\n", importRate, k)
	fmt.Printf("\n| ratio | value | target |\n| --- | ---: | --- |\n")
	fmt.Printf("| migrate / ceiling (best of 1 and 8 in flight) | %.2f | ≥ 0.8 |\n", mig/ceil)
	paired := make([]float64, len(s.migWall))
	for i := range paired {
		paired[i] = s.migWall[i] / max(s.ceil1[i], s.ceil8[i])
	}
	fmt.Printf("| the same, median of the per-run ratios | %.2f | ≥ 0.8 |\n", median(paired))
	fmt.Printf("| migrate / `consul kv import` | %.1f× | ≈ 24× |\n", mig/importRate)
	verdict := "ok"
	if median(rss) >= float64(*flagRSSLimit) {
		verdict = "OVER"
	}
	fmt.Printf("| peak RSS of `deployhook migrate` | %.1f MiB | < %d MiB (%s) |\n", median(rss), *flagRSSLimit, verdict)
	fmt.Printf("| CPU of `deployhook migrate` (user+sys) | %.2f s | %.1f µs per record |\n", median(cpu), median(cpu)/float64(n)*1e6)
	if freelist >= 0 {
		fmt.Printf("\nconsul.raft.boltdb.freelistBytes after the runs: %.0f\n", freelist)
	}
}

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
func inProcess(ctx context.Context, pg *harness.Postgres, c *harness.Consul, n, inflight int, path string) (phases, error) {
	var ph phases
	src, err := pgsource.New(ctx, pgsource.Config{URL: pg.URL(database), Database: database, Table: table})
	if err != nil {
		return ph, err
	}
	kv, err := consulkv.New(consulkv.Config{Address: c.Addr()})
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
	return ph, wipe(c.Client(), prefix)
}

func (p phases) String() string {
	return fmt.Sprintf("total %v; before the first txn %v; copy %v; after the last txn (verify, .done) %v",
		p.total.Round(time.Millisecond), p.before.Round(time.Millisecond), p.copy.Round(time.Millisecond), p.after.Round(time.Millisecond))
}

// compareInFlight separates what bounds the migration: the copy with the
// migrator's 6 transactions in flight and with 8, beside the ceiling at 6
// and 8, alternated so that a noisy machine weighs on each alike.
func compareInFlight(ctx context.Context, pg *harness.Postgres, c *harness.Consul, cl *api.Client, n int) error {
	rates := map[string][]float64{}
	var after []float64
	for i := 0; i < *flagCompare; i++ {
		for _, inflight := range []int{6, 8} {
			r, err := ceiling(ctx, cl, n, inflight)
			if err != nil {
				return err
			}
			if err := wipe(cl, ceilPre); err != nil {
				return err
			}
			rates[fmt.Sprintf("ceiling, %d in flight", inflight)] = append(rates[fmt.Sprintf("ceiling, %d in flight", inflight)], r)
			ph, err := inProcess(ctx, pg, c, n, inflight, "")
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
