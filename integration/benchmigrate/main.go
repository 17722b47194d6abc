// Command benchmigrate measures `deployhook migrate` against the ceiling of
// the Consul servers it writes to, in one run, on fresh disk-backed servers
// (DESIGN.md "Performance facts"):
//
//   - the ceiling: fenced transactions of 128 ops (a check-session op and
//     127 sets of 200-byte values) from a minimal consul/api loop, with 1
//     and with 8 transactions in flight;
//   - the real bin/deployhook migrating the same records from PostgreSQL:
//     `migrate --offline`, the default `migrate` (online) with no writers,
//     and the default `migrate` while writers change store2 at -write-rate
//     writes/s; for each its wall time, peak RSS, CPU, and the phase split
//     it logs (open, wipe, copy, catch-up, cutover, verify, done), and for
//     the online runs the catch-up rounds, the records caught up and the
//     frozen window;
//   - `consul kv import` (one PUT per key) of a sample of the records.
//
// Each run alternates the ceiling and the migrations on the same servers,
// store3 wiped (and store2 unfrozen) between them: the ceilings, the
// default and offline migrations (in turn first and second), the ceiling
// with 8 in flight again, then the migration with writers. Ratios are taken
// per run, against the mean of the two ceilings with 8 in flight (or the
// one with 1 in flight when better), and their medians printed as markdown
// tables, every target beside its measured value. -servers=3 measures a three-server cluster on loopback as
// well, alternated with the single server in the same run, so that the two
// ratios compare.
//
// Run it with `make bench-migrate` (BENCH_ARGS="-servers=3" for the cluster,
// BENCH_ARGS="-million" for the memory check), which builds bin/deployhook
// and bin/consul first.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/apcera/deployhook/integration/harness"
	"github.com/apcera/deployhook/migrate"
)

var (
	flagN            = flag.Int("records", 100_000, "records to seed into store2 and migrate")
	flagRuns         = flag.Int("runs", 3, "repetitions of the ceiling and the migrations")
	flagServers      = flag.Int("servers", 1, "Consul servers: 1, or 3 (a loopback cluster, measured beside the single server in the same run)")
	flagWritersOn    = flag.Bool("writers", true, "measure the online run with writers at -write-rate (skipped with a message when the binary has no --offline flag; off by default with -million)")
	flagRate         = flag.Int("write-rate", 200, "writes/s to store2 during the online run with writers (inserts, updates, deletes)")
	flagWriters      = flag.Int("writer-conns", 2, "PostgreSQL connections the writers spread their writes over")
	flagSample       = flag.Int("import-sample", 10_000, "records `consul kv import` writes on the single server (one PUT per key; about 800/s)")
	flagMillion      = flag.Bool("million", false, "shorthand for -records 1000000 -runs 1 -import-sample 2000 -writers=false: the memory check (peak RSS < -rss-limit)")
	flagRSSLimit     = flag.Int("rss-limit", 64, "peak RSS of deployhook migrate to check against, `MiB`")
	flagValue        = flag.Int("value-size", 200, "bytes per record")
	flagKeep         = flag.Bool("keep", false, "keep the servers' directory (printed) after the run")
	flagInFlight     = flag.Int("profile-inflight", 0, "Options.InFlight of the -cpuprofile run (0: the migrator's default, as the binary)")
	flagCompare      = flag.Int("compare-inflight", 0, "after the runs, alternate `N` times on the single server: the ceiling and the in-process migration with each of -compare-set in flight, and print the phases")
	flagCompareSet   = flag.String("compare-set", "6,8", "the transactions in flight -compare-inflight alternates, comma-separated")
	flagCompareAfter = flag.Bool("compare-verify-after", false, "with -compare-inflight, run each migration again with store3 read back after the copy instead of while it runs")
	flagProfile      = flag.String("cpuprofile", "", "after the runs, migrate once more in this process on the single server (the migrator the binary runs, same options) with a CPU profile written to `FILE`")
	flagTimeline     = flag.Int("timeline", 0, "after the runs, migrate `N` times more in this process on the single server (the migrator the binary runs, same options), print when each request to store3 and each log line happened, and the medians of where the wall clock went outside the copy")
	flagServerProf   = flag.String("server-profile", "", "after the runs, profile the single Consul server's CPU during the ceiling with 8 in flight and during the default migration, into `PREFIX`.ceiling.prof and PREFIX.migrate.prof (the servers run with enable_debug)")
	flagBin          = flag.String("bin", "", "the deployhook binary to measure (default: bin/deployhook of this repository, which make bench-migrate builds)")
	flagMigrateTO    = flag.Duration("migrate-timeout", 10*time.Minute, "kill a `deployhook migrate` that runs longer than this")
)

func init() {
	flag.IntVar(flagN, "n", 100_000, "the same as -records")
}

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
		if !isSet("import-sample") {
			*flagSample = 2000
		}
		if !isSet("writers") {
			*flagWritersOn = false
		}
	}
	if *flagServers != 1 && *flagServers != 3 {
		fmt.Fprintf(os.Stderr, "benchmigrate: -servers %d: want 1 or 3\n", *flagServers)
		os.Exit(2)
	}
	if err := bench(); err != nil {
		fmt.Fprintf(os.Stderr, "benchmigrate: %v\n", err)
		os.Exit(1)
	}
}

func isSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
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

// values are the 26 distinct values the records cycle through: record i
// holds values[i%26].
func values() [][]byte {
	vals := make([][]byte, 26)
	for i := range vals {
		vals[i] = value(i, *flagValue)
	}
	return vals
}

func bench() error {
	root, err := harness.RepoRoot()
	if err != nil {
		return err
	}
	bin := *flagBin
	if bin == "" {
		bin = filepath.Join(root, "bin", "deployhook")
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("%s missing: run make build (make bench-migrate does)", bin)
	}
	consulBin, err := harness.ConsulBinary()
	if err != nil {
		return err
	}
	caps, err := probeBinary(bin)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "benchmigrate-")
	if err != nil {
		return err
	}
	if *flagKeep {
		logf("servers' directory: %s", dir)
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
	ctx := context.Background()
	n := *flagN

	topos := []*topology{{servers: 1}}
	if *flagServers == 3 {
		topos = append(topos, &topology{servers: 3})
	}
	for _, t := range topos {
		err := t.start(filepath.Join(dir, fmt.Sprintf("consul-%d", t.servers)), &svcLog)
		defer t.stop()
		if err != nil {
			return fmt.Errorf("consul, %s: %w\n%s", t.name(), err, harness.Tail(svcLog.String(), 40))
		}
		logf("Consul %s: %s (fresh data directory, raft on disk)", t.name(), t.describe())
	}
	logf("PostgreSQL 127.0.0.1:%d", pg.Port)
	loadStart := loadAvg()

	t0 := time.Now()
	if err := pg.CreateComponentDB(ctx, database, table); err != nil {
		return err
	}
	vals := values()
	if err := pg.SeedFunc(ctx, database, table, n, func(i int) migrate.Record { return record(i, vals[i%26]) }); err != nil {
		return err
	}
	logf("seeded %d records of %d bytes into store2 with COPY in %v", n, *flagValue, time.Since(t0).Round(time.Millisecond))
	// A store2 table in service has been vacuumed by autovacuum: its rows'
	// hint bits set, its visibility map and statistics current. One loaded
	// a moment ago has none of that, and the migrations' first scans would
	// pay for setting it: at 100,000 records the count by bucket took 54 to
	// 91 ms on the fresh table, 18 ms on a vacuumed one.
	t0 = time.Now()
	if err := pg.Exec(ctx, database, "VACUUM (ANALYZE) "+table); err != nil {
		return err
	}
	logf("vacuumed store2 as autovacuum would have, in %v", time.Since(t0).Round(time.Millisecond))

	for _, t := range topos {
		t.confDir, t.pg = filepath.Join(dir, fmt.Sprintf("consul-%d", t.servers)), pg
		if err := t.writeConf(); err != nil {
			return err
		}
	}
	single := topos[0]
	// One PUT per key first, on the fresh server: after a few million
	// writes and deletes its commits are slower (DESIGN.md).
	k := min(*flagSample, n)
	importRate, err := kvImport(consulBin, single.addr, k)
	if err != nil {
		return err
	}
	logf("consul kv import of %d records on the single server: %.0f records/s", k, importRate)
	if err := wipe(single.client, importPre); err != nil {
		return err
	}

	online := *flagWritersOn && caps.online
	switch {
	case !*flagWritersOn:
		logf("online run with writers: skipped (-writers=false)")
	case !caps.online:
		logf("online run with writers: skipped: this build of deployhook has no `migrate --offline` flag, so its migration is offline only")
	}
	if !caps.online {
		logf("`deployhook migrate` of this build is offline: measured once per run as both the offline and the default migration")
	}
	b := &bencher{bin: bin, pg: pg, n: n, caps: caps, online: online, vals: vals}
	// A failed run ends the measurement, but the runs before it are
	// still reported.
	var runErr error
runs:
	for run := 1; run <= *flagRuns; run++ {
		for _, t := range topos {
			if err := b.run(ctx, t, run); err != nil {
				runErr = fmt.Errorf("%s, run %d: %w", t.name(), run, err)
				logf("%v", runErr)
				break runs
			}
		}
	}
	for _, t := range topos {
		t.freelist = freelistBytes(t.client)
	}

	if *flagProfile != "" && runErr == nil {
		ph, err := inProcess(ctx, pg, single.addr, single.client, n, *flagInFlight, *flagProfile, false, nil)
		if err != nil {
			return err
		}
		logf("in-process migrate under the profiler (InFlight %d, 0 = default): %s; %.0f records/s in the copy; go tool pprof -top %s",
			*flagInFlight, ph, float64(n)/ph.copy.Seconds(), *flagProfile)
	}
	if *flagAB != "" && runErr == nil {
		if err := b.abCompare(ctx, single, *flagAB); err != nil {
			return err
		}
	}
	if *flagServerProf != "" && runErr == nil {
		if err := b.serverProfiles(ctx, single, *flagServerProf); err != nil {
			return err
		}
	}
	if *flagTimeline > 0 && runErr == nil {
		if err := b.timelines(ctx, single, *flagTimeline); err != nil {
			return err
		}
	}
	if *flagCompare > 0 && runErr == nil {
		if err := compareInFlight(ctx, pg, single.addr, single.client, n); err != nil {
			return err
		}
	}
	report(os.Stdout, reportInput{n: n, runs: *flagRuns, topos: topos, caps: caps, online: online,
		importSample: k, importRate: importRate, load: fmt.Sprintf("%s at the start, %s at the end", loadStart, loadAvg())})
	if runErr != nil {
		return fmt.Errorf("the report above has the runs before this failure: %w", runErr)
	}
	return nil
}

// loadAvg is the 1-minute load average: how shared the machine was.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "unknown"
	}
	return f[0]
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// writeConf writes the component conf that points deployhook at t.addr.
func (t *topology) writeConf() error {
	if err := os.MkdirAll(t.confDir, 0o700); err != nil {
		return err
	}
	conf := fmt.Sprintf(`component: %s
db: {
  kind: store3
  migrate_store2_to_store3: true
  postgres: { url: %q }
  consul: { address: %q, prefix: %q }
}
log_dir: %q
`, component, t.pg.URLWithoutPassword(database), t.addr, prefix, filepath.Join(t.confDir, "log"))
	t.conf = filepath.Join(t.confDir, "jm.conf")
	return os.WriteFile(t.conf, []byte(conf), 0o600)
}
