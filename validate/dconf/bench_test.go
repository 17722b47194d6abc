package dconf

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestGenerateClusterConfIsValid(t *testing.T) {
	src := GenerateClusterConf(2000)
	if n := bytes.Count(src, []byte("\n")); n < 2000 || n > 2020 {
		t.Errorf("got %d lines, want about 2000", n)
	}
	f, diags := Parse(src, "gen.conf")
	if len(diags) != 0 {
		t.Fatalf("generated file has diagnostics: %v", diags)
	}
	e := f.Root.Path("chef", "continuum", "component_database", "migrate_store2_to_store3")
	if e == nil || e.Value.Kind != Bool || e.Value.Bool {
		t.Fatalf("component_database.migrate_store2_to_store3 = %+v, want false", e)
	}
	pem := f.Root.Path("chef", "continuum", "router", "ssl", "tlshosts")
	if pem == nil || len(pem.Value.Elems) != 1 {
		t.Fatalf("tlshosts = %+v", pem)
	}
	cc := pem.Value.Elems[0].Lookup("certificate_chain")
	if cc == nil || cc.Value.Kind != BlockString || !strings.HasSuffix(cc.Value.Str, "-----END CERTIFICATE-----\n") {
		t.Fatalf("certificate_chain = %+v", cc)
	}
	checkInvariants(t, src, f, diags)
}

func BenchmarkParse(b *testing.B) {
	src := GenerateClusterConf(20000)
	b.SetBytes(int64(len(src)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, diags := Parse(src, "bench.conf"); diags.HasErrors() {
			b.Fatal(diags)
		}
	}
}

// TestLinearTime guards the promises that do not show in the benchmark: a
// megabyte on one line and a deeply nested file. It compares against a
// normal file of the same size instead of asserting an absolute time, so a
// quadratic path shows up as a ratio, whatever the machine.
func TestLinearTime(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	base := GenerateClusterConf(30000) // about 1 MB
	size := len(base)
	cases := map[string][]byte{
		"one-line-array": []byte("a: [" + strings.Repeat("1,", size/2) + "]"),
		"one-line-word":  []byte("a: " + strings.Repeat("x", size)),
		"one-line-maps":  []byte(strings.Repeat("a {b: 1}; ", size/10)),
		"one-line-errs":  []byte(strings.Repeat("a b c ", size/6)),
		"stray-braces":   []byte(strings.Repeat("}", size)),
		"deep-open":      []byte(strings.Repeat("[", size)),
		"deep-lines":     []byte("a: " + strings.Repeat("{b:\n", size/4)),
		"quotes":         []byte(strings.Repeat("a: \"x\n", size/6)),
		"comments":       []byte(strings.Repeat("# c\n", size/4) + "k"),
		"missing-values": []byte(strings.Repeat("k\n# c\n", size/6)),
		"unicode-line":   []byte("a: " + strings.Repeat("é\u00a0", size/4)),
	}
	ref := timeParse(base)
	for name, src := range cases {
		if d := timeParse(src); d > 20*ref+50*time.Millisecond {
			t.Errorf("%s: %v for %d bytes, against %v for the generated file: not linear", name, d, len(src), ref)
		}
	}
}

func timeParse(src []byte) time.Duration {
	best := time.Duration(1 << 62)
	for range 3 {
		start := time.Now()
		Parse(src, "t.conf")
		best = min(best, time.Since(start))
	}
	return best
}
