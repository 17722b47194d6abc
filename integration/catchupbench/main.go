// Command catchupbench measures what the online migration adds after the
// copy, in one run on one fresh PostgreSQL and Consul: in-process
// migrations of -n idle records, alternating offline, online, and online
// with the snapshot marker hidden (every catch-up round compares in full,
// the obvious way), -runs times each. It prints each run's wall time and
// phase timings, and the medians.
//
//	go run ./integration/catchupbench -n 20000 -runs 3
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/apcera/deployhook/integration/harness"
	"github.com/apcera/deployhook/migrate"
	"github.com/apcera/deployhook/migrate/consulkv"
	"github.com/apcera/deployhook/migrate/pgsource"
)

type lg struct{ phase string }

func (l *lg) Infof(f string, a ...interface{}) {
	if s := fmt.Sprintf(f, a...); strings.HasPrefix(s, "Phase timings") {
		l.phase = s
	}
}
func (l *lg) Warnf(string, ...interface{})  {}
func (l *lg) Errorf(string, ...interface{}) {}

// noMarker is a snapshot without migrate.SnapshotMarker.
type noMarker struct{ migrate.Snapshot }
type noMarkerSource struct{ *pgsource.Source }

func (s noMarkerSource) Snapshot(ctx context.Context) (migrate.Snapshot, error) {
	sn, err := s.Source.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	return noMarker{sn}, nil
}

func main() {
	n := flag.Int("n", 20000, "records")
	runs := flag.Int("runs", 3, "runs")
	flag.Parse()
	dir, _ := os.MkdirTemp("", "tmpbench-")
	defer os.RemoveAll(dir)
	pg, err := harness.StartPostgresDir(dir+"/pg", nil)
	if err != nil {
		panic(err)
	}
	defer pg.Stop()
	c, err := harness.StartConsulDir(dir+"/consul", nil)
	if err != nil {
		panic(err)
	}
	defer c.Stop()
	ctx := context.Background()
	if err := pg.CreateComponentDB(ctx, "jmdb", migrate.DefaultTable); err != nil {
		panic(err)
	}
	if err := pg.SeedFunc(ctx, "jmdb", migrate.DefaultTable, *n, func(i int) migrate.Record {
		return migrate.Record{Bucket: "jobs", Key: fmt.Sprintf("job::/sandbox/admin::web%07d", i), Version: int64(i), Data: make([]byte, 200)}
	}); err != nil {
		panic(err)
	}
	src, err := pgsource.New(ctx, pgsource.Config{URL: pg.URL("jmdb")})
	if err != nil {
		panic(err)
	}
	kv, err := consulkv.New(consulkv.Config{Address: c.Addr()})
	if err != nil {
		panic(err)
	}
	modes := []string{"offline", "online", "online-no-marker"}
	took := map[string][]time.Duration{}
	for i := range *runs {
		for _, mode := range modes {
			prefix := fmt.Sprintf("bench/%s%d/jmdb/", mode, i)
			l := &lg{}
			var s migrate.Source = src
			if mode == "online-no-marker" {
				s = noMarkerSource{src}
			}
			m := &migrate.Migrator{Source: s, KV: kv, Locker: kv, Opts: migrate.Options{
				Component: "job_manager", Prefix: prefix, Hostname: "bench", Log: l,
				Offline: mode == "offline", CatchUpThreshold: 100, CatchUpRounds: 10,
			}}
			start := time.Now()
			if _, err := m.Run(ctx); err != nil {
				panic(err)
			}
			d := time.Since(start)
			took[mode] = append(took[mode], d)
			// Unfreeze for the next run.
			if _, err := migrate.Unfreeze(ctx, src, kv, prefix, true, "bench", nil); err != nil {
				panic(err)
			}
			fmt.Printf("%s run %d: %v; %s\n", mode, i, d.Round(time.Millisecond), l.phase)
		}
	}
	for _, mode := range modes {
		ds := took[mode]
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		fmt.Printf("median %s: %v\n", mode, ds[len(ds)/2].Round(time.Millisecond))
	}
}
