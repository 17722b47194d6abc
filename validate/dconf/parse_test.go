package dconf

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/hcl/v2"
)

// KV and M are a plain rendering of a map that keeps order and duplicates.
type KV struct {
	K string
	V any
}
type M []KV

// Blk marks a block string, so tests tell it from a quoted one.
type Blk string

// plain turns a value tree into ordinary Go values for cmp.
func plain(v *Value) any {
	switch v.Kind {
	case String:
		return v.Str
	case BlockString:
		return Blk(v.Str)
	case Int:
		return v.Int
	case Float:
		return v.Float
	case Bool:
		return v.Bool
	case DateTime:
		return v.Time
	case Map:
		m := M{}
		for _, e := range v.Entries {
			m = append(m, KV{e.Key, plain(e.Value)})
		}
		return m
	case Array:
		a := []any{}
		for _, e := range v.Elems {
			a = append(a, plain(e))
		}
		return a
	}
	return fmt.Sprintf("<kind %d>", v.Kind)
}

// diagList renders diagnostics as "code@line:col", errors and warnings apart.
func diagList(diags hcl.Diagnostics) (errs, warns []string) {
	for _, d := range diags {
		s := fmt.Sprintf("%s@%d:%d", CodeOf(d), d.Subject.Start.Line, d.Subject.Start.Column)
		if d.Severity == hcl.DiagError {
			errs = append(errs, s)
		} else {
			warns = append(warns, s)
		}
	}
	return errs, warns
}

type golden struct {
	name  string
	src   string
	want  any // plain root; nil: not checked (error cases)
	errs  []string
	warns []string
}

// spec13 is DCONF.md §13, one row per input, plus the spec's own inline
// examples.
var spec13 = []golden{
	{"sep-space", "a value", M{{"a", "value"}}, nil, nil},
	{"sep-colon", "a : value", M{{"a", "value"}}, nil, nil},
	{"sep-equals", "a=value", M{{"a", "value"}}, nil, nil},
	{"numeric-key", "1234: x", M{{"1234", "x"}}, nil, nil},
	{"dollar-key", "$k: v", M{{"$k", "v"}}, nil, nil},
	{"url", "u: http://h.example/p", M{{"u", "http://h.example/p"}}, nil, nil},
	{"cidr", "c: 10.0.0.0/8", M{{"c", "10.0.0.0/8"}}, nil, nil},
	{"hostport", "ip: 10.0.0.1:4222", M{{"ip", "10.0.0.1:4222"}}, nil, nil},
	{"hash-ends-word", "h: foo#bar", M{{"h", "foo"}}, nil, nil},
	{"paren-in-word", "p: foo(bar)", nil, []string{"expected-newline@1:7"}, nil},
	{"int", "n: 8080", M{{"n", int64(8080)}}, nil, nil},
	{"int-neg", "n: -5", M{{"n", int64(-5)}}, nil, nil},
	{"int-leading-zero", "n: 08", M{{"n", int64(8)}}, nil, nil},
	{"int-array", "n: [1, 2]", M{{"n", []any{int64(1), int64(2)}}}, nil, nil},
	{"size-suffix", "s: 512MB", M{{"s", "512MB"}}, nil, nil},
	{"size-k", "s: 1k", M{{"s", "1k"}}, nil, nil},
	{"nats-exponent", "s: 3e", M{{"s", "3e"}}, nil, nil},
	{"float", "f: 1.5", M{{"f", 1.5}}, nil, nil},
	{"exponent", "f: 1e5", M{{"f", "1e5"}}, nil, nil},
	{"leading-dot", "f: .5", M{{"f", ".5"}}, nil, []string{"ambiguous-number@1:4"}},
	{"version", "v: 1.2.3-beta", M{{"v", "1.2.3-beta"}}, nil, nil},
	{"datetime", "d: 2016-01-01T00:00:00Z", M{{"d", time.Date(2016, 1, 1, 0, 0, 0, 0, time.UTC)}}, nil, nil},
	{"date", "d: 2016-01-01", M{{"d", "2016-01-01"}}, nil, []string{"date-like-string@1:4"}},
	{"true", "b: true", M{{"b", true}}, nil, nil},
	{"FALSE", "b: FALSE", M{{"b", false}}, nil, nil},
	{"yes", "b: yes", M{{"b", "yes"}}, nil, []string{"ambiguous-boolean@1:4"}},
	{"off", "b: off", M{{"b", "off"}}, nil, []string{"ambiguous-boolean@1:4"}},
	{"dq-escape", `q: "a\tb"`, M{{"q", "a\tb"}}, nil, nil},
	{"sq-no-escape", `q: 'a\tb'`, M{{"q", `a\tb`}}, nil, nil},
	{"unicode-escape", `q: "\u00e9"`, nil, []string{"unknown-escape@1:5"}, nil},
	{"curly", "q: \u201cx\u201d", nil, []string{"curly-quote@1:4"}, nil},
	{"array-no-comma", "k: [a b]", nil, []string{"missing-comma@1:7"}, nil},
	{"array-trailing-comma", "k: [x,y,]", M{{"k", []any{"x", "y"}}}, nil, nil},
	{"map-trailing-comma", "m { a: 1, }", M{{"m", M{{"a", int64(1)}}}}, nil, nil},
	{"map-no-sep", "m { a: 1 b: 2 }", nil, []string{"expected-newline@1:10"}, nil},
	{"semicolon-entries", "a: 1; b: 2", M{{"a", int64(1)}, {"b", int64(2)}}, nil, nil},
	{"two-entries-one-line", "a: 1 b: 2", nil, []string{"expected-newline@1:6"}, nil},
	{"duplicate-kept", "a {x:1}\na {y:2}", M{{"a", M{{"x", int64(1)}}}, {"a", M{{"y", int64(2)}}}}, nil, nil},
	{"key-alone", "k", nil, []string{"missing-value@1:1"}, nil},
	{"value-next-line", "k\n# c\nv: 1", nil, []string{"missing-value@1:1"}, nil},
	{"map-next-line", "tag_rules\n  { \"filter\": \"x\" }", M{{"tag_rules", M{{"filter", "x"}}}}, nil, nil},
	{"block-indented-paren", "b (\nx\n  )\n)", M{{"b", Blk("\nx\n  )\n")}}, nil, nil},
	{"block-no-final-nl", "b (\nx\n)", M{{"b", Blk("\nx\n")}}, nil, nil},
	{"block-crlf", "b (\r\nx\r\n)\r\n", M{{"b", Blk("\r\nx\r\n")}}, nil, nil},
	{"block-one-line", "b: (x)", nil, []string{"unterminated-block@1:4"}, nil},
	{"top-level-braces", "{ a: 1 }", nil, []string{"top-level-braces@1:1"}, nil},
	{"stray-brace", "a: 1 }", nil, []string{"unmatched-brace@1:6"}, nil},
	{"include", "include x.conf", M{{"include", "x.conf"}}, nil, []string{"include-not-supported@1:1"}},
	{"dollar-value", "p: $HOME", M{{"p", "$HOME"}}, nil, nil},
	{"key-touches-map", "provisioner{type: generic}", nil, []string{"missing-separator@1:12"}, nil},

	// Inline examples of the prose.
	{"spec-1", "provisioner { type: generic }\ncomponents: {\n  api-server: 3\n  router = 2;\n}\n",
		M{{"provisioner", M{{"type", "generic"}}}, {"components", M{{"api-server", int64(3)}, {"router", int64(2)}}}}, nil, nil},
	{"spec-3", "# whole-line comment\nmachines: {            # after a value\n  central: {\n    suitable_tags: [\n      \"router\"\n      # \"stagehand\"    # commented-out element\n    ]\n  }\n}\n",
		M{{"machines", M{{"central", M{{"suitable_tags", []any{"router"}}}}}}}, nil, nil},
	{"spec-4", "1234: \"string key\"\n$home = /opt/apcera\n\"weird key: ok\" value\n'single' = 1            # recommended: accept\n",
		M{{"1234", "string key"}, {"$home", "/opt/apcera"}, {"weird key: ok", "value"}, {"single", int64(1)}}, nil, nil},
	{"spec-5.3", "script (\nline 1\n  )\nline 3\n)\n", M{{"script", Blk("\nline 1\n  )\nline 3\n")}}, nil, nil},
	{"only-comments-array", "t: [\n  # \"x\"\n]", M{{"t", []any{}}}, nil, nil},
	{"empty-map", "m {}", M{{"m", M{}}}, nil, nil},
	{"bare-with-slashes-before-brace", "e { \"D\": /opt/x }", M{{"e", M{{"D", "/opt/x"}}}}, nil, nil},
	{"bare-with-colon", "a: b:c", M{{"a", "b:c"}}, nil, nil},
	{"plus-five", "a: +5", M{{"a", "+5"}}, nil, nil},
	{"hex", "a: 0x10", M{{"a", "0x10"}}, nil, nil},
	{"quoted-stays-string", `v: "4"`, M{{"v", "4"}}, nil, nil},
	{"array-of-maps", "provides [ { runtime: \"java\" }, { runtime: \"java-1.8\" } ]",
		M{{"provides", []any{M{{"runtime", "java"}}, M{{"runtime", "java-1.8"}}}}}, nil, nil},
	{"snapshot-path", `snapshot_path "/rootfs"`, M{{"snapshot_path", "/rootfs"}}, nil, nil},
	{"slash-comment", "a: 1 // c\n// d\nb: 2", M{{"a", int64(1)}, {"b", int64(2)}}, nil, nil},
	{"empty-key", `"": 1`, nil, []string{"empty-key@1:1"}, nil},
	{"leading-comma-map", "m { , a: 1 }", nil, []string{"extra-separator@1:5"}, nil},
	{"doubled-comma", "a: 1,,", nil, []string{"extra-separator@1:6"}, nil},
	{"leading-comma-array", "a: [, 1]", nil, []string{"extra-separator@1:5"}, nil},
	{"adjacent-strings", `k: "a" "b"`, nil, []string{"expected-newline@1:8"}, nil},
	{"int-overflow", "n: 9223372036854775808", nil, []string{"int-overflow@1:4"}, nil},
	{"int-min", "n: -9223372036854775808", M{{"n", int64(-9223372036854775808)}}, nil, nil},
	{"hex-escape", `q: "\x41\\\"\n\r"`, M{{"q", "A\\\"\n\r"}}, nil, nil},
	{"bad-hex-escape", `q: "\x4"`, nil, []string{"unknown-escape@1:5"}, nil},
	{"raw-newline", "q: \"a\nb\"\nr: 1", nil, []string{"raw-newline-in-string@1:4"}, nil},
	{"unterminated-string", "q: \"abc\nr: 1", nil, []string{"unterminated-string@1:4"}, nil},
	{"unmatched-bracket", "]", nil, []string{"unmatched-brace@1:1"}, nil},
	{"unterminated-map", "m {\n a: 1\n", nil, []string{"unterminated-map@1:3"}, nil},
	{"unterminated-array", "m [\n 1\n", nil, []string{"unterminated-array@1:3"}, nil},
	{"map-closed-by-bracket", "a [ { x: 1 ]", nil, []string{"unterminated-map@1:5"}, nil},
	{"array-closed-by-brace", "m {\n a [ 1\n}", nil, []string{"unterminated-array@2:4"}, nil},
	{"erb", "a: 1\nhosts: <%= x %>\nb: [\n", nil, []string{"erb-template@2:8"}, nil},
	{"erb-in-string", "a: \"<%= x %>\"\n}\n", nil, []string{"erb-template@1:5"}, nil},
	{"nbsp", "a:\u00a0b", M{{"a", "b"}}, nil, []string{"unicode-space@1:3"}},
	{"control-char", "a: \x01", nil, []string{"unexpected-character@1:4"}, nil},
	{"missing-value-before-brace", "m { a: }", nil, []string{"missing-value@1:5"}, nil},
	{"key-expected", "{ a: 1 }\n: b", nil, []string{"top-level-braces@1:1", "unexpected-character@2:1"}, nil},
	{"bom", "\ufeffa: 1", M{{"a", int64(1)}}, nil, nil},
	{"lone-cr", "a: 1\rb: 2", nil, []string{"expected-newline@1:6"}, []string{"unicode-space@1:5"}},
	{"block-in-array", "a [\n(\nx\n)\n, 1]", M{{"a", []any{Blk("\nx\n"), int64(1)}}}, nil, nil},
	{"block-content-after-paren", "k: (-----BEGIN\nX\n)\n", M{{"k", Blk("-----BEGIN\nX\n")}}, nil, nil},
	{"single-quoted-terraform", "hosts: ['10.0.1.10', '10.0.2.10',\n]", M{{"hosts", []any{"10.0.1.10", "10.0.2.10"}}}, nil, nil},
	{"semicolon-in-array", "a: [1; 2]", nil, []string{"missing-comma@1:6"}, nil},
}

func TestSpecExamples(t *testing.T) {
	for _, tc := range spec13 {
		t.Run(tc.name, func(t *testing.T) {
			f, diags := Parse([]byte(tc.src), "t.conf")
			errs, warns := diagList(diags)
			if diff := cmp.Diff(tc.errs, errs); diff != "" {
				t.Errorf("errors (-want +got):\n%s\n%s", diff, diags)
			}
			if tc.warns != nil || tc.errs == nil {
				if diff := cmp.Diff(tc.warns, warns); diff != "" {
					t.Errorf("warnings (-want +got):\n%s", diff)
				}
			}
			if tc.want != nil {
				if diff := cmp.Diff(tc.want, plain(f.Root)); diff != "" {
					t.Errorf("value (-want +got):\n%s", diff)
				}
			}
			checkInvariants(t, []byte(tc.src), f, diags)
		})
	}
}

// checkInvariants holds for every parse: ranges inside the source, start
// before end, and line:column agreeing with the byte offset.
func checkInvariants(t *testing.T, src []byte, f *File, diags hcl.Diagnostics) {
	t.Helper()
	if f == nil || f.Root == nil || f.Root.Kind != Map {
		t.Fatalf("no root map")
	}
	check := func(what string, r hcl.Range) {
		t.Helper()
		if r.Start.Byte < 0 || r.Start.Byte > r.End.Byte || r.End.Byte > len(src) {
			t.Fatalf("%s: range %d..%d outside source of %d bytes", what, r.Start.Byte, r.End.Byte, len(src))
		}
		for _, p := range []hcl.Pos{r.Start, r.End} {
			if want := posOf(src, p.Byte); p != want {
				t.Fatalf("%s: pos %+v, recomputed %+v", what, p, want)
			}
		}
	}
	for _, d := range diags {
		if d.Subject == nil {
			t.Fatalf("diagnostic without subject: %v", d)
		}
		check("diagnostic "+d.Summary, *d.Subject)
		if CodeOf(d) == "" {
			t.Fatalf("diagnostic without code: %v", d)
		}
		if strings.Contains(d.Summary, "\n") {
			t.Fatalf("multi-line summary: %q", d.Summary)
		}
		if x := d.Extra.(*Extra); x != nil {
			for _, rel := range x.Related {
				check("related", rel.Range)
			}
		}
	}
	var walk func(v *Value, depth int)
	walk = func(v *Value, depth int) {
		if v == nil {
			t.Fatalf("nil value")
		}
		check("value", v.Range)
		for _, e := range v.Entries {
			check("key "+e.Key, e.KeyRange)
			if e.Value == nil {
				t.Fatalf("entry %q has no value", e.Key)
			}
			if e.Value.Range.Start.Byte < e.KeyRange.End.Byte {
				t.Fatalf("value of %q starts before its key ends", e.Key)
			}
			walk(e.Value, depth+1)
		}
		for _, el := range v.Elems {
			walk(el, depth+1)
		}
	}
	walk(f.Root, 0)
}

// posOf is the reference for positions: count lines and runes from scratch.
func posOf(src []byte, off int) hcl.Pos {
	line, col := 1, 1
	s := string(src[:off])
	ls := strings.LastIndexByte(s, '\n') + 1
	line += strings.Count(s, "\n")
	col += len([]rune(s[ls:]))
	return hcl.Pos{Line: line, Column: col, Byte: off}
}
