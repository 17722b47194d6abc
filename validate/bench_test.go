package validate

import (
	"runtime"
	"testing"

	"github.com/apcera/deployhook/validate/dconf"
)

// benchClusterConf parses and validates a generated cluster.conf of the given
// number of lines, reporting MB/s, and allocations and bytes allocated per
// source byte. Targets (measured, never asserted here): 50 MB/s, at most 3
// bytes allocated per input byte (issue 11); a 500-line file in under 2 ms.
// The whole-process comparison with the NATS parser is `make bench-validate`.
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
	per := float64(b.N) * float64(len(src))
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/per, "allocs/byte")
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/per, "B/input-byte")
}

func BenchmarkClusterConf110000Lines(b *testing.B) { benchClusterConf(b, 110000) } // 2.8 MB
func BenchmarkClusterConf20000Lines(b *testing.B)  { benchClusterConf(b, 20000) }
func BenchmarkClusterConf500Lines(b *testing.B)    { benchClusterConf(b, 500) }

// TestClusterConfAllocatesLittle pins issue 11's memory promise, which does
// not depend on the machine: parsing and validating a large cluster.conf
// allocates at most 3 bytes per input byte (it was 14, a Value tree with
// positions for every node).
func TestClusterConfAllocatesLittle(t *testing.T) {
	src := dconf.GenerateClusterConf(20000)
	ClusterConf(src, "cluster.conf")
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, diags := ClusterConf(src, "cluster.conf")
	runtime.ReadMemStats(&after)
	if len(diags) != 2 {
		t.Fatalf("got %d diagnostics, want the 2 warnings of the generated file", len(diags))
	}
	if per := float64(after.TotalAlloc-before.TotalAlloc) / float64(len(src)); per > 3 {
		t.Errorf("ClusterConf allocated %.2f bytes per input byte, want at most 3", per)
	}
}
