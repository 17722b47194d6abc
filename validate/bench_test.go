package validate

import (
	"runtime"
	"testing"

	"github.com/apcera/deployhook/validate/dconf"
)

// benchClusterConf parses and validates a generated cluster.conf of the given
// number of lines, reporting MB/s and allocations per source byte. Targets
// (measured, never asserted): 50 MB/s, at most 3 allocs/byte; a 500-line
// file in under 2 ms.
func benchClusterConf(b *testing.B, lines int) {
	src := dconf.GenerateClusterConf(lines)
	if _, diags := ClusterConf(src, "cluster.conf"); diags.HasErrors() {
		b.Fatalf("generated file has errors: %v", diags)
	}
	b.SetBytes(int64(len(src)))
	b.ReportAllocs()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for b.Loop() {
		ClusterConf(src, "cluster.conf")
	}
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(b.N)/float64(len(src)), "allocs/byte")
}

func BenchmarkClusterConf20000Lines(b *testing.B) { benchClusterConf(b, 20000) }
func BenchmarkClusterConf500Lines(b *testing.B)   { benchClusterConf(b, 500) }
