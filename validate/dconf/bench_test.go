package dconf

import (
	"bytes"
	"encoding/json"
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

// BenchmarkParseCompact is Parse without the Value tree: what the validator
// runs (validate.ClusterConf).
func BenchmarkParseCompact(b *testing.B) {
	src := GenerateClusterConf(20000)
	b.SetBytes(int64(len(src)))
	b.ReportAllocs()
	for b.Loop() {
		if _, diags := ParseCompact(src, "bench.conf"); diags.HasErrors() {
			b.Fatal(diags)
		}
	}
}

// BenchmarkParseJSONBaseline is the reference for BenchmarkParse: the same
// configuration, written as JSON, decoded by encoding/json into plain Go
// values (no positions, no diagnostics, no entry order). Compare MB/s and
// allocs/op of the two in one run: `make bench`.
func BenchmarkParseJSONBaseline(b *testing.B) {
	f, diags := Parse(GenerateClusterConf(20000), "bench.conf")
	if diags.HasErrors() {
		b.Fatal(diags)
	}
	src, err := json.Marshal(jsonValue(f.Root))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(src)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		var v any
		if err := json.Unmarshal(src, &v); err != nil {
			b.Fatal(err)
		}
	}
}

// jsonValue turns a tree into what encoding/json marshals as an object.
func jsonValue(v *Value) any {
	switch v.Kind {
	case Map:
		m := map[string]any{}
		for _, e := range v.Entries {
			m[e.Key] = jsonValue(e.Value)
		}
		return m
	case Array:
		a := []any{}
		for _, e := range v.Elems {
			a = append(a, jsonValue(e))
		}
		return a
	}
	return plain(v)
}

// TestLinearTime guards the promises the benchmark does not show: a
// megabyte on one line, deep nesting, files full of errors. It compares the
// time for a 128 KiB input with the time for the same shape eight times
// larger, so a quadratic path shows up as a ratio near 64 whatever the
// machine; linear is 8.
func TestLinearTime(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	shapes := map[string]func(size int) []byte{
		"generated":      func(n int) []byte { return GenerateClusterConf(n / 30) },
		"one-line-array": func(n int) []byte { return []byte("a: [" + strings.Repeat("1,", n/2) + "]") },
		"one-line-word":  func(n int) []byte { return []byte("a: " + strings.Repeat("x", n)) },
		"one-line-maps":  func(n int) []byte { return []byte(strings.Repeat("a {b: 1}; ", n/10)) },
		"one-line-errs":  func(n int) []byte { return []byte(strings.Repeat("a b c ", n/6)) },
		"stray-braces":   func(n int) []byte { return []byte(strings.Repeat("}", n)) },
		"deep-open":      func(n int) []byte { return []byte(strings.Repeat("[", n)) },
		"deep-lines":     func(n int) []byte { return []byte("a: " + strings.Repeat("{b:\n", n/4)) },
		"quotes":         func(n int) []byte { return []byte(strings.Repeat("a: \"x\n", n/6)) },
		"sq-quotes":      func(n int) []byte { return []byte(strings.Repeat("a: 'x\n", n/6)) },
		"comments":       func(n int) []byte { return []byte(strings.Repeat("# c\n", n/4) + "k") },
		"missing-values": func(n int) []byte { return []byte(strings.Repeat("k:\n# c\n", n/7)) },
		"unicode-line":   func(n int) []byte { return []byte("a: " + strings.Repeat("é\u00a0", n/4)) },
		"blocks":         func(n int) []byte { return []byte(strings.Repeat("b: (x)\n", n/7)) },
	}
	const small = 128 << 10
	for name, gen := range shapes {
		smallSrc, bigSrc := gen(small), gen(8*small)
		// A quadratic path fails every try (a ratio near 64); a loaded,
		// shared machine can stall one measurement, not five in a row.
		var a, b time.Duration
		linear := false
		for try := 0; try < 5 && !linear; try++ {
			a, b = timeParse(smallSrc), timeParse(bigSrc)
			linear = b <= 24*a+20*time.Millisecond
		}
		if !linear {
			t.Errorf("%s: %v for 128 KiB, %v for 1 MiB in the last of 5 tries: not linear", name, a, b)
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
