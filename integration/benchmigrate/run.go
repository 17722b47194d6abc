package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/apcera/deployhook/integration/harness"
	"github.com/apcera/deployhook/migrate"
)

// capabilities are what this build of deployhook offers, read from its
// help: the benchmark runs on the binary of any branch.
type capabilities struct {
	online   bool // migrate --offline exists, so the default migration is online
	unfreeze bool // the unfreeze command exists
}

func probeBinary(bin string) (capabilities, error) {
	var c capabilities
	help := func(args ...string) (string, error) {
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("%s %s: %w\n%s", bin, strings.Join(args, " "), err, out)
		}
		return string(out), nil
	}
	mig, err := help("migrate", "--help")
	if err != nil {
		return c, err
	}
	top, err := help("--help")
	if err != nil {
		return c, err
	}
	c.online = strings.Contains(mig, "--offline")
	c.unfreeze = regexp.MustCompile(`(?m)^\s+unfreeze\b`).MatchString(top)
	return c, nil
}

// runSample is one run on one topology.
type runSample struct {
	ceil1, ceil8 float64 // records/s, the records ceiling, before the migrations
	ceil8After   float64 // records/s, 8 in flight again after them; 0 when not measured
	ceilSeq8     float64 // records/s, the sequential ceiling (a reference)
	offline      *migrateRun
	deflt        *migrateRun // the default migration, no writers
	writers      *migrateRun // the default migration while writers run
	writes       writerStats
	readBack     *migrateRun // `deployhook verify` after the default migration; nil when not measured
}

// ceiling is what the migrations of the run are compared with: the better
// of 1 and 8 in flight, 8 in flight taken as the mean of its measurements
// just before and just after the migrations. The servers slow as their raft
// log and tombstones grow (at 1,000,000 records, the ceiling measured first
// fell from 34,000 to 24,000 records/s over three runs), so a ceiling
// measured only before the migrations compares them with a server in
// another state.
func (s runSample) ceiling() float64 {
	c8 := s.ceil8
	if s.ceil8After > 0 {
		c8 = (s.ceil8 + s.ceil8After) / 2
	}
	return max(s.ceil1, c8)
}

// migrateRun is one `deployhook migrate` process.
type migrateRun struct {
	wall, took, cpu time.Duration
	rssKiB          int64
	migrated        int64
	phases          *phaseSplit // nil when the build does not log them
	doneFrozenFor   string      // .done's frozen_for, "" when absent
}

func (m *migrateRun) rate() float64 { return float64(m.migrated) / m.wall.Seconds() }

type bencher struct {
	bin    string
	pg     *harness.Postgres
	n      int
	caps   capabilities
	online bool
	vals   [][]byte
}

// run measures, on t: the ceiling with 1 and 8 in flight (and the
// sequential one with 8, for reference), the default
// `migrate`, `migrate --offline`, and the default `migrate` with writers,
// each on an empty store3 and the seeded store2.
func (b *bencher) run(ctx context.Context, t *topology, run int) error {
	var s runSample
	cleanCeiling := func() error { return wipe(t.client, ceilPre) }
	ceilings := []struct {
		inflight int
		data     ceilingData
		dst      *float64
		what     string
	}{
		{1, ceilRecords, &s.ceil1, "ceiling, 1 in flight"},
		{8, ceilRecords, &s.ceil8, "ceiling, 8 in flight"},
		{8, ceilSequential, &s.ceilSeq8, "sequential ceiling, 8 in flight"},
	}
	measureCeiling := func(inflight int, data ceilingData, dst *float64, what string) error {
		if err := t.measure(what, cleanCeiling, func() (err error) {
			*dst, err = ceiling(ctx, t.client, b.n, inflight, data)
			return err
		}); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		logf("%s, run %d: %s: %.0f records/s", t.name(), run, what, *dst)
		return cleanCeiling()
	}
	for _, c := range ceilings {
		if err := measureCeiling(c.inflight, c.data, c.dst, c.what); err != nil {
			return err
		}
	}
	reset := func() error { return b.reset(ctx, t) }
	migrations := []struct {
		name string
		args []string
		dst  **migrateRun
	}{
		{"migrate (default)", nil, &s.deflt},
		{"migrate --offline", []string{"--offline"}, &s.offline},
	}
	if !b.caps.online {
		// This build's only migration is the offline one.
		migrations = migrations[:1]
	} else if run%2 == 0 {
		// Between the two ceilings, in turn first and second.
		migrations[0], migrations[1] = migrations[1], migrations[0]
	}
	for _, m := range migrations {
		var r *migrateRun
		if err := t.measure(m.name, reset, func() (err error) {
			r, err = b.migrate(ctx, t, m.args, int64(b.n))
			return err
		}); err != nil {
			return fmt.Errorf("%s: %w", m.name, err)
		}
		logRun(t, run, m.name, r)
		*m.dst = r
		if m.dst == &s.deflt && b.caps.online {
			// What the verification reads, alone: store3 as the default
			// migration left it, store2 frozen by its cutover.
			if err := t.measure("verify", func() error { return nil }, func() (err error) {
				s.readBack, err = b.verify(ctx, t)
				return err
			}); err != nil {
				return fmt.Errorf("verify after the default migration: %w", err)
			}
			logf("%s, run %d: deployhook verify: %v wall, CPU %v, peak RSS %.1f MiB", t.name(), run,
				s.readBack.wall.Round(time.Millisecond), s.readBack.cpu.Round(time.Millisecond), float64(s.readBack.rssKiB)/1024)
		}
		if err := reset(); err != nil {
			return err
		}
	}
	if !b.caps.online {
		s.offline = s.deflt
	}
	if err := measureCeiling(8, ceilRecords, &s.ceil8After, "ceiling, 8 in flight, after the migrations"); err != nil {
		return err
	}
	if b.online {
		const what = "migrate (default) with writers"
		if err := t.measure(what, reset, func() error {
			w, err := startWriters(ctx, b.pg, b.n, *flagRate, *flagWriters, fmt.Sprintf("%d-%d", t.servers, run), b.vals)
			if err != nil {
				return err
			}
			r, err := b.migrate(ctx, t, nil, -1)
			s.writes = w.stop()
			if err != nil {
				return err
			}
			if s.writes.err != nil {
				return fmt.Errorf("writers: %w", s.writes.err)
			}
			// store2 is frozen now: what the migration counted is what it holds.
			if got, err := count(ctx, b.pg); err != nil {
				return err
			} else if got != r.migrated {
				return fmt.Errorf("%d records migrated, frozen store2 holds %d", r.migrated, got)
			}
			s.writers = r
			return nil
		}); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		logRun(t, run, what, s.writers)
		logf("%s, run %d: writers: %s", t.name(), run, s.writes)
		if err := reset(); err != nil {
			return err
		}
	}
	t.runs = append(t.runs, s)
	return nil
}

func logRun(t *topology, run int, name string, r *migrateRun) {
	ph := "phase split: not reported by this build"
	if r.phases != nil {
		ph = "phases: " + r.phases.String()
	}
	logf("%s, run %d: deployhook %s: %v wall (%.0f records/s), took %v, peak RSS %.1f MiB, CPU %v; %s",
		t.name(), run, name, r.wall.Round(time.Millisecond), r.rate(), r.took,
		float64(r.rssKiB)/1024, r.cpu.Round(time.Millisecond), ph)
}

var migratedRE = regexp.MustCompile(`Migrated store2 -> store3 \(took: ([^,]+), records migrated: (\d+), records failed: 0\)`)

// migrate runs the real binary with extra flags and measures it. want is
// the records it must report migrated, -1 for any.
func (b *bencher) migrate(ctx context.Context, t *topology, extra []string, want int64) (*migrateRun, error) {
	r, log, err := b.measureRun(ctx, append([]string{"migrate", "-f", t.conf, "--hostname", "bench"}, extra...)...)
	if err != nil {
		return nil, err
	}
	m := migratedRE.FindStringSubmatch(log)
	if m == nil {
		return nil, fmt.Errorf("deployhook migrate: no \"Migrated ... records failed: 0\" line:\n%s", harness.Tail(log, 30))
	}
	migrated, _ := strconv.ParseInt(m[2], 10, 64)
	if want >= 0 && migrated != want {
		return nil, fmt.Errorf("deployhook migrate: %d records migrated, want %d", migrated, want)
	}
	took, err := time.ParseDuration(m[1])
	if err != nil {
		return nil, fmt.Errorf("deployhook migrate: took %q: %w", m[1], err)
	}
	r.took, r.migrated = took, migrated
	if r.phases, err = parsePhases(log); err != nil {
		return nil, err
	}
	if r.doneFrozenFor, err = doneFrozenFor(t); err != nil {
		return nil, err
	}
	return r, nil
}

// verify runs `deployhook verify` on what the last migration left and
// measures it; the stores must compare equal.
func (b *bencher) verify(ctx context.Context, t *topology) (*migrateRun, error) {
	r, _, err := b.measureRun(ctx, "verify", "-f", t.conf)
	if err != nil {
		return nil, err
	}
	r.migrated = int64(b.n)
	return r, nil
}

// measureRun runs the binary with args and the PostgreSQL password file,
// killed after -migrate-timeout, and returns its wall clock, peak RSS and
// CPU, and what it printed (standard output and error). A non-zero exit is
// an error with the output's tail.
func (b *bencher) measureRun(ctx context.Context, args ...string) (*migrateRun, string, error) {
	ctx, cancel := context.WithTimeout(ctx, *flagMigrateTO)
	defer cancel()
	cmd := exec.CommandContext(ctx, b.bin, args...)
	cmd.Env = append(os.Environ(), "PGPASSFILE="+b.pg.PassFile())
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	peak, err := harness.RunPeakRSS(cmd)
	wall := time.Since(start)
	if err != nil {
		return nil, "", fmt.Errorf("deployhook %s: %w\n%s", strings.Join(args, " "), err, harness.Tail(out.String(), 30))
	}
	return &migrateRun{wall: wall, rssKiB: peak, cpu: cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()}, out.String(), nil
}

// doneFrozenFor reads frozen_for from the done key, "" when absent.
func doneFrozenFor(t *topology) (string, error) {
	kv, _, err := t.client.KV().Get(migrate.DoneKey(prefix), nil)
	if err != nil {
		return "", fmt.Errorf("read the done key: %w", err)
	}
	if kv == nil {
		return "", fmt.Errorf("deployhook migrate exited 0 but %q is absent", migrate.DoneKey(prefix))
	}
	var d struct {
		FrozenFor string `json:"frozen_for"`
	}
	if err := json.Unmarshal(kv.Value, &d); err != nil {
		return "", fmt.Errorf("decode %q: %w", migrate.DoneKey(prefix), err)
	}
	return d.FrozenFor, nil
}

// reset puts the stores back as the next measurement expects them: store3
// empty, store2 writable and holding the seeded records only.
func (b *bencher) reset(ctx context.Context, t *topology) error {
	if err := wipe(t.client, prefix); err != nil {
		return err
	}
	if b.caps.online {
		// An online migration leaves store2 frozen after .done; with .done
		// gone, unfreeze needs no override.
		if !b.caps.unfreeze {
			return errors.New("this build migrates online but has no unfreeze command: store2 stays frozen after the run")
		}
		cmd := exec.Command(b.bin, "unfreeze", "-f", t.conf)
		cmd.Env = append(os.Environ(), "PGPASSFILE="+b.pg.PassFile())
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("deployhook unfreeze: %w\n%s", err, out)
		}
	}
	if err := deleteWriterKeys(ctx, b.pg); err != nil {
		return err
	}
	got, err := count(ctx, b.pg)
	if err != nil {
		return err
	}
	if got != int64(b.n) {
		return fmt.Errorf("store2 holds %d records after the reset, want %d", got, b.n)
	}
	return nil
}

// phaseSplit is the migration's own account of its time, from its
// "Phase timings" line.
type phaseSplit struct {
	names     []string
	durs      []time.Duration
	rounds    int64
	caughtUp  int64
	frozenFor time.Duration
	asCopied  string // "yes": verified against the copy's tallies, store2 unchanged; "" from older builds
}

// phaseNames are the phases the "Phase timings" line reports, in order.
// Builds before the change capture log no capture=.
var phaseNames = []string{"capture", "open", "wipe", "copy", "catch-up", "cutover", "verify", "done"}

func optionalPhase(name string) bool { return name == "capture" }

var (
	phaseLineRE = regexp.MustCompile(`Phase timings: ((?:[a-z-]+=\S+ ?)+) \(catch-up rounds: (\d+), records caught up: (\d+), frozen for: ([^,)]+)(?:, store2 unchanged since the copy: (yes|no))?\)`)
	phasePairRE = regexp.MustCompile(`([a-z-]+)=(\S+)`)
)

// parsePhases finds the "Phase timings" line in a migration's log: nil
// when there is none, an error when it is there but malformed.
func parsePhases(log string) (*phaseSplit, error) {
	i := strings.Index(log, "Phase timings:")
	if i < 0 {
		return nil, nil
	}
	line, _, _ := strings.Cut(log[i:], "\n")
	m := phaseLineRE.FindStringSubmatch(line)
	if m == nil {
		return nil, fmt.Errorf("malformed phase line %q", line)
	}
	p := &phaseSplit{}
	for _, kv := range phasePairRE.FindAllStringSubmatch(m[1], -1) {
		d, err := time.ParseDuration(kv[2])
		if err != nil {
			return nil, fmt.Errorf("phase line %q: %s: %w", line, kv[1], err)
		}
		p.names = append(p.names, kv[1])
		p.durs = append(p.durs, d)
	}
	for _, name := range phaseNames {
		if _, ok := p.get(name); !ok && !optionalPhase(name) {
			return nil, fmt.Errorf("phase line %q: no %s=", line, name)
		}
	}
	p.rounds, _ = strconv.ParseInt(m[2], 10, 64)
	p.caughtUp, _ = strconv.ParseInt(m[3], 10, 64)
	var err error
	if p.frozenFor, err = time.ParseDuration(m[4]); err != nil {
		return nil, fmt.Errorf("phase line %q: frozen for: %w", line, err)
	}
	p.asCopied = m[5]
	return p, nil
}

func (p *phaseSplit) get(name string) (time.Duration, bool) {
	for i, n := range p.names {
		if n == name {
			return p.durs[i], true
		}
	}
	return 0, false
}

func (p *phaseSplit) sum() time.Duration {
	var s time.Duration
	for _, d := range p.durs {
		s += d
	}
	return s
}

func (p *phaseSplit) String() string {
	var b strings.Builder
	for i, n := range p.names {
		fmt.Fprintf(&b, "%s %v, ", n, p.durs[i].Round(time.Millisecond))
	}
	fmt.Fprintf(&b, "catch-up rounds %d, records caught up %d, frozen for %v", p.rounds, p.caughtUp, p.frozenFor.Round(time.Millisecond))
	if p.asCopied != "" {
		fmt.Fprintf(&b, ", store2 unchanged since the copy: %s", p.asCopied)
	}
	return b.String()
}
