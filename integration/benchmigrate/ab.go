package main

import (
	"context"
	"flag"
	"fmt"
	"time"
)

var (
	flagAB     = flag.String("ab", "", "after the runs, alternate on the single server the default migration of this build and of the deployhook binary `BIN` (an earlier build, say), -ab-runs times each, and print the median of the per-pair ratios")
	flagABRuns = flag.Int("ab-runs", 5, "pairs of the -ab comparison")
)

// abCompare alternates the default migration of b.bin and of other on t,
// swapping which goes first in every pair so that a drift of the machine
// weighs on both, and prints each pair and the medians.
func (b *bencher) abCompare(ctx context.Context, t *topology, other string) error {
	o := *b
	o.bin = other
	var this, that, ratios, cpuThis, cpuThat []float64
	rss := map[*bencher]int64{} // the highest peak RSS of each binary, KiB
	for i := 1; i <= *flagABRuns; i++ {
		order := []*bencher{b, &o}
		if i%2 == 0 {
			order[0], order[1] = order[1], order[0]
		}
		walls, cpus := map[*bencher]time.Duration{}, map[*bencher]time.Duration{}
		for _, x := range order {
			if err := x.reset(ctx, t); err != nil {
				return err
			}
			waitQuiet("an a/b migration")
			r, err := x.migrate(ctx, t, nil, int64(b.n))
			if err != nil {
				return fmt.Errorf("%s: %w", x.bin, err)
			}
			walls[x], cpus[x] = r.wall, r.cpu
			rss[x] = max(rss[x], r.rssKiB)
			logf("a/b pair %d: %s: %s wall, CPU %s, peak RSS %.1f MiB; phases: %s", i, x.bin, r.wall.Round(time.Millisecond), r.cpu.Round(time.Millisecond), float64(r.rssKiB)/1024, r.phases)
		}
		this = append(this, walls[b].Seconds())
		that = append(that, walls[&o].Seconds())
		ratios = append(ratios, walls[&o].Seconds()/walls[b].Seconds())
		cpuThis = append(cpuThis, cpus[b].Seconds())
		cpuThat = append(cpuThat, cpus[&o].Seconds())
	}
	fmt.Printf("\nA/B on %s, default migration, %d alternated pairs:\n\n| binary | wall, median | CPU (user+sys), median | peak RSS, highest |\n| --- | ---: | ---: | ---: |\n| %s (this build) | %.2f s | %.2f s | %.1f MiB |\n| %s | %.2f s | %.2f s | %.1f MiB |\n| speed-up of this build (median of per-pair ratios of wall times) | %.3f× | | |\n",
		t.name(), *flagABRuns, b.bin, median(this), median(cpuThis), float64(rss[b])/1024, other, median(that), median(cpuThat), float64(rss[&o])/1024, median(ratios))
	return b.reset(ctx, t)
}
