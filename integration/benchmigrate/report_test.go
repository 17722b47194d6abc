package main

import (
	"bytes"
	"math"
	"strings"
	"testing"
	"time"
)

const phaseLog = `2026-12-02 05:40:01.000000 INFO Starting store2 -> store3 migration...
2026-12-02 05:40:05.000000 INFO Phase timings: capture=30ms open=12ms wipe=3.5ms copy=2.9s catch-up=410ms cutover=120ms verify=800ms done=4ms (catch-up rounds: 2, records caught up: 734, frozen for: 1.25s)
2026-12-02 05:40:05.000000 INFO Migrated store2 -> store3 (took: 4.3s, records migrated: 100000, records failed: 0)
`

func TestParsePhases(t *testing.T) {
	p, err := parsePhases(phaseLog)
	if err != nil {
		t.Fatal(err)
	}
	if p == nil {
		t.Fatal("no phases parsed")
	}
	want := map[string]time.Duration{"capture": 30 * time.Millisecond, "open": 12 * time.Millisecond, "wipe": 3500 * time.Microsecond, "copy": 2900 * time.Millisecond,
		"catch-up": 410 * time.Millisecond, "cutover": 120 * time.Millisecond, "verify": 800 * time.Millisecond, "done": 4 * time.Millisecond}
	for name, d := range want {
		if got, ok := p.get(name); !ok || got != d {
			t.Errorf("%s = %v (%t), want %v", name, got, ok, d)
		}
	}
	if p.rounds != 2 || p.caughtUp != 734 || p.frozenFor != 1250*time.Millisecond {
		t.Errorf("rounds %d, caught up %d, frozen %v; want 2, 734, 1.25s", p.rounds, p.caughtUp, p.frozenFor)
	}
	if got, want := p.sum(), 4279500*time.Microsecond; got != want {
		t.Errorf("sum %v, want %v", got, want)
	}
}

// Builds from d84a11d on say whether verification took store2 as the
// copy read it; older ones do not, and parse as before.
func TestParsePhasesAsCopied(t *testing.T) {
	for in, want := range map[string]string{
		phaseLog: "",
		strings.Replace(phaseLog, "frozen for: 1.25s)", "frozen for: 1.25s, store2 unchanged since the copy: yes)", 1): "yes",
		strings.Replace(phaseLog, "frozen for: 1.25s)", "frozen for: 1.25s, store2 unchanged since the copy: no)", 1):  "no",
	} {
		p, err := parsePhases(in)
		if err != nil || p == nil || p.asCopied != want || p.frozenFor != 1250*time.Millisecond {
			t.Errorf("parsed %+v, %v; want store2 unchanged %q, frozen for 1.25s", p, err, want)
		}
	}
}

func TestParsePhasesAbsent(t *testing.T) {
	p, err := parsePhases("INFO Migrated store2 -> store3 (took: 4.3s, records migrated: 100000, records failed: 0)\n")
	if p != nil || err != nil {
		t.Errorf("got %v, %v; want nil, nil for a build that does not log phases", p, err)
	}
}

func TestParsePhasesMalformed(t *testing.T) {
	for _, log := range []string{
		"Phase timings: open=12ms wipe=3ms\n",
		"Phase timings: open=12ms wipe=3ms copy=2.9s catch-up=0s cutover=0s verify=1s done=1ms (catch-up rounds: 0, records caught up: 0, frozen for: soon)\n",
		"Phase timings: open=12ms wipe=3ms copy=2.9s cutover=0s verify=1s done=1ms (catch-up rounds: 0, records caught up: 0, frozen for: 0s)\n",
		"Phase timings: open=12 wipe=3ms copy=2.9s catch-up=0s cutover=0s verify=1s done=1ms (catch-up rounds: 0, records caught up: 0, frozen for: 0s)\n",
	} {
		if p, err := parsePhases(log); err == nil {
			t.Errorf("%q: parsed as %v, want an error", log, p)
		}
	}
}

func TestMedianAndComma(t *testing.T) {
	if got := median([]float64{3, 1, 2}); got != 2 {
		t.Errorf("median odd = %v", got)
	}
	if got := median([]float64{4, 1, 2, 3}); got != 2.5 {
		t.Errorf("median even = %v", got)
	}
	if !math.IsNaN(median(nil)) {
		t.Error("median of nothing is not NaN")
	}
	for in, want := range map[float64]string{0: "0", 999: "999", 1000: "1,000", 34590.4: "34,590", 1234567: "1,234,567"} {
		if got := comma(in); got != want {
			t.Errorf("comma(%v) = %q, want %q", in, got, want)
		}
	}
}

// The report prints every target beside its value, and says what this
// build did not measure instead of a number.
func TestReportTargets(t *testing.T) {
	run := func(ceil float64, wall time.Duration, ph *phaseSplit) runSample {
		m := &migrateRun{wall: wall, migrated: 100_000, rssKiB: 24 * 1024, cpu: time.Second, phases: ph}
		return runSample{ceil1: ceil / 2, ceil8: ceil, offline: m, deflt: m}
	}
	offline := &topology{servers: 1, freelist: -1, runs: []runSample{run(40000, 4*time.Second, nil), run(40000, 5*time.Second, nil), run(50000, 4*time.Second, nil)}}
	var b bytes.Buffer
	report(&b, reportInput{n: 100_000, runs: 3, topos: []*topology{offline}, importSample: 10, importRate: 800})
	out := b.String()
	for _, want := range []string{
		"| default migration (offline in this build) / ceiling, median of per-run ratios | 0.500 | ≥ 0.90 | **missed** |",
		"| peak RSS of `deployhook migrate`, highest of all runs | 24.0 MiB | < 64 MiB | ok |",
		"phase split: not reported by this build",
		"| frozen window, online run with writers | not measured | ≤ 3 s | online migration not in this build |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}

	ph, err := parsePhases(phaseLog)
	if err != nil {
		t.Fatal(err)
	}
	online := &topology{servers: 1, freelist: -1}
	for range 3 {
		r := run(40000, 2500*time.Millisecond, ph)
		r.offline = &migrateRun{wall: 2 * time.Second, migrated: 100_000, rssKiB: 20 * 1024, phases: ph}
		r.writers = &migrateRun{wall: 4 * time.Second, migrated: 100_010, rssKiB: 70 * 1024, phases: ph, doneFrozenFor: "1.25s"}
		r.readBack = &migrateRun{wall: 500 * time.Millisecond, migrated: 100_000}
		online.runs = append(online.runs, r)
	}
	b.Reset()
	report(&b, reportInput{n: 100_000, runs: 3, topos: []*topology{online}, caps: capabilities{online: true, unfreeze: true}, online: true, importSample: 10, importRate: 800})
	out = b.String()
	for _, want := range []string{
		"| default migration (online, no writers) / ceiling, median of per-run ratios | 1.000 | ≥ 0.90 | ok |",
		"| peak RSS of `deployhook migrate`, highest of all runs | 70.0 MiB | < 64 MiB | **missed** |",
		"| frozen window, online run with writers | 1.25 s | ≤ 3 s | ok |",
		"| online run with writers / offline run, total, median of per-run ratios | 2.000 | ≤ 1.5 | **missed** |",
		"| catch-up rounds | 2 |",
		"| records caught up | 734 |",
		"| open | wipe | copy | catch-up | cutover | verify | done | rest | wall |",
		"| `deployhook verify` after the default migration | 200,000 |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}

// The ceiling of a run is the better of 1 and 8 in flight, 8 in flight
// the mean of before and after the migrations when both were measured.
func TestCeilingBracketsTheMigrations(t *testing.T) {
	for _, c := range []struct {
		s    runSample
		want float64
	}{
		{runSample{ceil1: 20000, ceil8: 34000}, 34000},
		{runSample{ceil1: 20000, ceil8: 34000, ceil8After: 26000}, 30000},
		{runSample{ceil1: 31000, ceil8: 34000, ceil8After: 26000}, 31000},
	} {
		if got := c.s.ceiling(); got != c.want {
			t.Errorf("%+v: ceiling %v, want %v", c.s, got, c.want)
		}
	}
}

func TestParseCPULine(t *testing.T) {
	busy, total, err := parseCPULine("cpu  100 5 50 800 40 3 2 0 7 0")
	if err != nil || busy != 160 || total != 1000 {
		t.Errorf("busy %d, total %d, %v; want 160, 1000", busy, total, err)
	}
	if _, _, err := parseCPULine("intr 1 2 3"); err == nil {
		t.Error("parsed a line that is not the cpu line")
	}
}
