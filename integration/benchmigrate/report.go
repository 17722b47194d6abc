package main

import (
	"fmt"
	"io"
	"math"
	"runtime"
	"slices"
	"strings"
	"time"
)

// The targets of issues 9 and 11, printed beside the measured values.
const (
	targetRatio        = 0.9  // default migration / ceiling, at 100,000 records
	targetRatioMillion = 0.85 // the same at 1,000,000
	targetFrozen       = 3 * time.Second
	targetOnlineFactor = 1.5  // online run with writers / offline run, total
	sameRatioTolerance = 0.05 // the cluster's ratio counts as the single server's within this
	targetN            = 100_000
)

type reportInput struct {
	n, runs      int
	topos        []*topology
	caps         capabilities
	online       bool
	importSample int
	importRate   float64
	load         string // the load average during the run
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return math.NaN()
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// collect maps the runs that measured something to a value.
func collect(runs []runSample, f func(runSample) (float64, bool)) []float64 {
	var xs []float64
	for _, r := range runs {
		if v, ok := f(r); ok {
			xs = append(xs, v)
		}
	}
	return xs
}

// comma formats a rate with thousands separators.
func comma(f float64) string {
	if math.IsNaN(f) {
		return "n/a"
	}
	s := fmt.Sprintf("%.0f", f)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func verdict(ok bool) string {
	if ok {
		return "ok"
	}
	return "**missed**"
}

// ratioTarget is the default migration's target at n records, and a note
// when n is not a size the target was set for.
func ratioTarget(n int) (float64, string) {
	switch {
	case n >= 1_000_000:
		return targetRatioMillion, ""
	case n == targetN:
		return targetRatio, ""
	default:
		return targetRatio, fmt.Sprintf(" (set for %s records)", comma(targetN))
	}
}

// skipped says why the online run with writers was not measured.
func (in reportInput) skipped() string {
	if !in.caps.online {
		return "online migration not in this build"
	}
	return "skipped (-writers=false)"
}

func (in reportInput) ratios(t *topology, pick func(runSample) *migrateRun) []float64 {
	return collect(t.runs, func(r runSample) (float64, bool) {
		m := pick(r)
		if m == nil {
			return 0, false
		}
		return m.rate() / r.ceiling(), true
	})
}

func offlineRun(r runSample) *migrateRun  { return r.offline }
func defaultRun(r runSample) *migrateRun  { return r.deflt }
func writersRun(r runSample) *migrateRun  { return r.writers }
func readBackRun(r runSample) *migrateRun { return r.readBack }

func report(w io.Writer, in reportInput) {
	mode := "online by default: `--offline` skips catch-up and cutover"
	if !in.caps.online {
		mode = "offline only in this build (no `--offline` flag): its one migration is both the offline and the default row"
	}
	fmt.Fprintf(w, "\nbenchmigrate: %s records of %d bytes, median of %d runs; Consul 1.16.1, fresh data directories, raft on disk; `deployhook migrate` %s\n",
		comma(float64(in.n)), *flagValue, in.runs, mode)
	if in.load != "" {
		fmt.Fprintf(w, "\n%d cores; 1-minute load average %s.\n", runtime.NumCPU(), in.load)
	}
	for _, t := range in.topos {
		in.topology(w, t)
	}
	if len(in.topos) > 1 {
		in.compare(w, in.topos[0], in.topos[1])
	}
}

func (in reportInput) topology(w io.Writer, t *topology) {
	fmt.Fprintf(w, "\n#### store3: %s\n\n", t.name())
	if t.servers > 1 {
		fmt.Fprintf(w, "Three servers on loopback, every commit needs a quorum; the ceiling and deployhook both talk to the leader.\n\n")
		if t.reelected > 0 {
			fmt.Fprintf(w, "%d measurements were repeated through a new leader after an election on the loaded machine.\n\n", t.reelected)
		}
	}
	rate := func(pick func(runSample) *migrateRun) float64 {
		return median(collect(t.runs, func(r runSample) (float64, bool) {
			if m := pick(r); m != nil {
				return m.rate(), true
			}
			return 0, false
		}))
	}
	fmt.Fprintf(w, "| measure | records/s | note |\n| --- | ---: | --- |\n")
	ceil := func(f func(runSample) float64) string {
		return comma(median(collect(t.runs, func(r runSample) (float64, bool) { return f(r), f(r) > 0 })))
	}
	fmt.Fprintf(w, "| ceiling: the same records, fenced txns of 128 ops, 1 in flight | %s | minimal consul/api loop, ops built before the clock starts |\n",
		ceil(func(r runSample) float64 { return r.ceil1 }))
	fmt.Fprintf(w, "| ceiling: the same records, fenced txns of 128 ops, 8 in flight | %s | the same, just before the migrations |\n",
		ceil(func(r runSample) float64 { return r.ceil8 }))
	fmt.Fprintf(w, "| ceiling, 8 in flight, just after the migrations | %s | the same; the ratios take the mean of before and after |\n",
		ceil(func(r runSample) float64 { return r.ceil8After }))
	fmt.Fprintf(w, "| for reference: sequential ceiling, 8 in flight | %s | short keys in ascending order, one value (the first round's ceiling); not a ceiling of this data |\n",
		ceil(func(r runSample) float64 { return r.ceilSeq8 }))
	offName := "`deployhook migrate --offline`"
	defName := "`deployhook migrate` (default: online), no writers"
	if !in.caps.online {
		offName = "`deployhook migrate` (offline: this build)"
		defName = offName
	}
	fmt.Fprintf(w, "| %s | %s | wall clock, process start to exit |\n", offName, comma(rate(offlineRun)))
	if in.caps.online {
		fmt.Fprintf(w, "| %s | %s | wall clock |\n", defName, comma(rate(defaultRun)))
	}
	if in.online {
		fmt.Fprintf(w, "| `deployhook migrate` (default), writers at %d writes/s | %s | wall clock; records of the frozen store2 |\n", *flagRate, comma(rate(writersRun)))
	} else {
		fmt.Fprintf(w, "| `deployhook migrate` (default), writers at %d writes/s | not measured | %s |\n", *flagRate, in.skipped())
	}
	if in.caps.online {
		fmt.Fprintf(w, "| `deployhook verify` after the default migration | %s | wall clock: both stores read whole and compared (the migration reads store3 back while its copy runs, and takes store2 from the copy) |\n", comma(rate(readBackRun)))
	}
	if t.servers == 1 {
		fmt.Fprintf(w, "| `consul kv import` (one PUT per key) | %s | sample of %s records |\n", comma(in.importRate), comma(float64(in.importSample)))
	}

	in.phaseTable(w, t)
	if in.online {
		in.onlineTable(w, t)
	}
	in.targets(w, t)
}

// phaseTable prints the median of each phase the migrations logged.
func (in reportInput) phaseTable(w io.Writer, t *topology) {
	rows := []struct {
		name string
		pick func(runSample) *migrateRun
	}{{"`--offline`", offlineRun}, {"default, no writers", defaultRun}, {"default, with writers", writersRun}}
	if !in.caps.online {
		rows = rows[1:2]
		rows[0].name = "`migrate`"
	}
	reported := false
	for _, r := range t.runs {
		for _, row := range rows {
			if m := row.pick(r); m != nil && m.phases != nil {
				reported = true
			}
		}
	}
	fmt.Fprintf(w, "\nPhase split, seconds, median of the runs (as the migration logs it; \"rest\" is the wall clock outside the phases: process start and exit, lock, snapshot):\n\n")
	if !reported {
		fmt.Fprintf(w, "phase split: not reported by this build\n")
		return
	}
	fmt.Fprintf(w, "| migration | %s | rest | wall | store2 unchanged since the copy |\n| --- |%s ---: | ---: | ---: |\n", strings.Join(phaseNames, " | "), strings.Repeat(" ---: |", len(phaseNames)))
	for _, row := range rows {
		var cells []string
		have := false
		for _, name := range append(slices.Clone(phaseNames), "rest", "wall") {
			xs := collect(t.runs, func(r runSample) (float64, bool) {
				m := row.pick(r)
				if m == nil || m.phases == nil {
					return 0, false
				}
				switch name {
				case "rest":
					return (m.wall - m.phases.sum()).Seconds(), true
				case "wall":
					return m.wall.Seconds(), true
				}
				d, ok := m.phases.get(name)
				return d.Seconds(), ok
			})
			have = have || len(xs) > 0
			cells = append(cells, seconds(median(xs)))
		}
		yes, of := 0, 0
		for _, r := range t.runs {
			if m := row.pick(r); m != nil && m.phases != nil && m.phases.asCopied != "" {
				of++
				if m.phases.asCopied == "yes" {
					yes++
				}
			}
		}
		asCopied := "n/a"
		if of > 0 {
			asCopied = fmt.Sprintf("%d of %d runs", yes, of)
		}
		if have {
			fmt.Fprintf(w, "| %s | %s | %s |\n", row.name, strings.Join(cells, " | "), asCopied)
		}
	}
}

func seconds(s float64) string {
	if math.IsNaN(s) {
		return "n/a"
	}
	return fmt.Sprintf("%.2f", s)
}

// onlineTable prints the online run with writers: issue 9's measures.
func (in reportInput) onlineTable(w io.Writer, t *topology) {
	pick := func(f func(m *migrateRun, r runSample) float64) float64 {
		return median(collect(t.runs, func(r runSample) (float64, bool) {
			if r.writers == nil || r.writers.phases == nil {
				return 0, false
			}
			return f(r.writers, r), true
		}))
	}
	fmt.Fprintf(w, "\nOnline run with writers at %d writes/s (%d connections, one transaction per write: updates, inserts, deletes), median of the runs:\n\n", *flagRate, *flagWriters)
	fmt.Fprintf(w, "| measure | value |\n| --- | ---: |\n")
	fmt.Fprintf(w, "| total, wall clock | %s s |\n", seconds(median(collect(t.runs, func(r runSample) (float64, bool) {
		if r.writers == nil {
			return 0, false
		}
		return r.writers.wall.Seconds(), true
	}))))
	fmt.Fprintf(w, "| catch-up rounds | %s |\n", num(pick(func(m *migrateRun, _ runSample) float64 { return float64(m.phases.rounds) })))
	fmt.Fprintf(w, "| records caught up | %s |\n", num(pick(func(m *migrateRun, _ runSample) float64 { return float64(m.phases.caughtUp) })))
	fmt.Fprintf(w, "| frozen window (freeze to `.done`) | %s s |\n", seconds(pick(func(m *migrateRun, _ runSample) float64 { return m.phases.frozenFor.Seconds() })))
	fmt.Fprintf(w, "| `.done` frozen_for, as recorded | %s |\n", doneFrozen(t.runs))
	writes := func(f func(s writerStats) float64) string {
		return num(median(collect(t.runs, func(r runSample) (float64, bool) { return f(r.writes), r.writers != nil })))
	}
	fmt.Fprintf(w, "| writes attempted during the run (rate) | %s (%s/s) |\n",
		writes(func(s writerStats) float64 { return float64(s.applied + s.refused) }),
		writes(func(s writerStats) float64 { return float64(s.applied+s.refused) / s.took.Seconds() }))
	fmt.Fprintf(w, "| of which applied | %s |\n", writes(func(s writerStats) float64 { return float64(s.applied) }))
	fmt.Fprintf(w, "| of which refused, store2 frozen (25006) | %s |\n", writes(func(s writerStats) float64 { return float64(s.refused) }))
}

func doneFrozen(runs []runSample) string {
	var s []string
	for _, r := range runs {
		if r.writers != nil {
			v := r.writers.doneFrozenFor
			if v == "" {
				v = "absent"
			}
			s = append(s, v)
		}
	}
	return strings.Join(s, ", ")
}

func num(f float64) string {
	if math.IsNaN(f) {
		return "n/a"
	}
	return comma(f)
}

func (in reportInput) targets(w io.Writer, t *topology) {
	fmt.Fprintf(w, "\nTargets (the ceiling of each ratio is the better of 1 and 8 in flight in the same run, 8 in flight the mean of its measurements just before and just after the default and offline migrations, which run between them in turn first and second):\n\n")
	fmt.Fprintf(w, "| measure | value | target | verdict |\n| --- | ---: | --- | --- |\n")
	want, note := ratioTarget(in.n)
	defRatio := median(in.ratios(t, defaultRun))
	what := "default migration (online, no writers)"
	if !in.caps.online {
		what = "default migration (offline in this build)"
	}
	fmt.Fprintf(w, "| %s / ceiling, median of per-run ratios | %.3f | ≥ %.2f%s | %s |\n", what, defRatio, want, note, verdict(defRatio >= want))
	if in.caps.online {
		off := median(in.ratios(t, offlineRun))
		fmt.Fprintf(w, "| `--offline` / ceiling, median of per-run ratios | %.3f | | |\n", off)
	}

	var rss float64
	for _, r := range t.runs {
		for _, m := range []*migrateRun{r.offline, r.deflt, r.writers} {
			if m != nil {
				rss = max(rss, float64(m.rssKiB)/1024)
			}
		}
	}
	fmt.Fprintf(w, "| peak RSS of `deployhook migrate`, highest of all runs | %.1f MiB | < %d MiB | %s |\n", rss, *flagRSSLimit, verdict(rss < float64(*flagRSSLimit)))
	cpu := median(collect(t.runs, func(r runSample) (float64, bool) {
		if r.deflt == nil {
			return 0, false
		}
		return r.deflt.cpu.Seconds() / float64(r.deflt.migrated) * 1e6, true
	}))
	fmt.Fprintf(w, "| CPU of the default `deployhook migrate` (user+sys) | %.1f µs per record | | |\n", cpu)

	frozenNote := ""
	if in.n != targetN {
		frozenNote = fmt.Sprintf(" (set for %s records)", comma(targetN))
	}
	if !in.online {
		fmt.Fprintf(w, "| frozen window, online run with writers | not measured | ≤ %v s%s | %s |\n", targetFrozen.Seconds(), frozenNote, in.skipped())
		fmt.Fprintf(w, "| online run with writers / offline run, total | not measured | ≤ %.1f | %s |\n", targetOnlineFactor, in.skipped())
	} else {
		frozen := median(collect(t.runs, func(r runSample) (float64, bool) {
			if r.writers == nil || r.writers.phases == nil {
				return 0, false
			}
			return r.writers.phases.frozenFor.Seconds(), true
		}))
		if math.IsNaN(frozen) {
			fmt.Fprintf(w, "| frozen window, online run with writers | not reported by this build | ≤ %v s%s | |\n", targetFrozen.Seconds(), frozenNote)
		} else {
			fmt.Fprintf(w, "| frozen window, online run with writers | %.2f s | ≤ %v s%s | %s |\n", frozen, targetFrozen.Seconds(), frozenNote, verdict(frozen <= targetFrozen.Seconds()))
		}
		factor := median(collect(t.runs, func(r runSample) (float64, bool) {
			if r.writers == nil || r.offline == nil {
				return 0, false
			}
			return r.writers.wall.Seconds() / r.offline.wall.Seconds(), true
		}))
		fmt.Fprintf(w, "| online run with writers / offline run, total, median of per-run ratios | %.3f | ≤ %.1f | %s |\n", factor, targetOnlineFactor, verdict(factor <= targetOnlineFactor))
	}
	if t.servers == 1 {
		fmt.Fprintf(w, "| default migration / `consul kv import` | %.1f× | about 24× | |\n", rate(t, defaultRun)/in.importRate)
	}
	if t.freelist >= 0 {
		fmt.Fprintf(w, "\nconsul.raft.boltdb.freelistBytes after the runs: %.0f\n", t.freelist)
	}
}

func rate(t *topology, pick func(runSample) *migrateRun) float64 {
	return median(collect(t.runs, func(r runSample) (float64, bool) {
		if m := pick(r); m != nil {
			return m.rate(), true
		}
		return 0, false
	}))
}

// compare prints the cluster's ratios beside the single server's: the
// target is the same ratio.
func (in reportInput) compare(w io.Writer, one, many *topology) {
	fmt.Fprintf(w, "\n#### %s against 1 server, the same run\n\n", many.name())
	fmt.Fprintf(w, "| measure | %s | 1 server | target | |\n| --- | ---: | ---: | --- | --- |\n", many.name())
	picks := []struct {
		name string
		pick func(runSample) *migrateRun
	}{{"default migration / ceiling", defaultRun}}
	if in.caps.online {
		picks = append(picks, struct {
			name string
			pick func(runSample) *migrateRun
		}{"`--offline` / ceiling", offlineRun})
	}
	for _, p := range picks {
		a, b := median(in.ratios(many, p.pick)), median(in.ratios(one, p.pick))
		fmt.Fprintf(w, "| %s, median of per-run ratios | %.3f | %.3f | the same (within ±%.2f) | %s |\n",
			p.name, a, b, sameRatioTolerance, verdict(math.Abs(a-b) <= sameRatioTolerance))
	}
	c8 := func(t *topology) float64 {
		return median(collect(t.runs, func(r runSample) (float64, bool) { return r.ceil8, true }))
	}
	fmt.Fprintf(w, "| ceiling, 8 in flight, records/s | %s | %s | | what the quorum costs: %.2f× |\n", comma(c8(many)), comma(c8(one)), c8(many)/c8(one))
}
