package dconf

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/hcl/v2"
)

// TestErrorPositions checks line:column of every error of inputs with
// several errors, with tabs and non-ASCII text before the error so that
// byte and rune columns differ.
func TestErrorPositions(t *testing.T) {
	cases := []struct {
		name string
		src  string
		want []string
	}{
		{"tabs", "m {\n\ta: 1 b\n\t\tc: [x y]\n}", []string{"expected-newline@2:7", "missing-comma@3:9"}},
		{"non-ascii", "é: ünïcödé x\n\"ключ\": \"значение\\q\"", []string{"expected-newline@1:12", "unknown-escape@2:18"}},
		{"wide", "名前: 値 値\nk: 😀 \x02", []string{"expected-newline@1:7", "expected-newline@2:6"}},
		{"after-block", "b (\né\n)\nx: 1 2\ny: \"é", []string{"expected-newline@4:6", "unterminated-string@5:4"}},
		{"crlf", "a: 1\r\nb: 2 3\r\nc: \"x\r\nd: [1 2]\r\n", []string{"expected-newline@2:6", "unterminated-string@3:4", "missing-comma@4:7"}},
		{"one-per-line", "a: 1 2 3 4, ,, }", []string{"expected-newline@1:6"}},
		{"closers", "}\n]\na {\n]\n}", []string{"unmatched-brace@1:1", "unmatched-brace@2:1", "unmatched-brace@4:1"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := []byte(tc.src)
			f, diags := Parse(src, "p.conf")
			errs, _ := diagList(diags)
			if diff := cmp.Diff(tc.want, errs); diff != "" {
				t.Errorf("errors (-want +got):\n%s\n%v", diff, diags)
			}
			checkInvariants(t, src, f, diags)
		})
	}
}

func TestRangesOfValues(t *testing.T) {
	src := "k1: \"q\\tx\"\n\tk2 = [ 1, {a: b} ]\n'k3' (\ntext\n)\nk4: é-word # c\n"
	f, diags := Parse([]byte(src), "r.conf")
	if len(diags) != 0 {
		t.Fatal(diags)
	}
	text := func(r hcl.Range) string { return src[r.Start.Byte:r.End.Byte] }
	type kr struct{ Key, KeyText, ValText, Start, End string }
	var got []kr
	for _, e := range f.Root.Entries {
		v := e.Value.Range
		got = append(got, kr{e.Key, text(e.KeyRange), text(v),
			posString(v.Start), posString(v.End)})
	}
	want := []kr{
		{"k1", "k1", `"q\tx"`, "1:5", "1:11"},
		{"k2", "k2", "[ 1, {a: b} ]", "2:7", "2:20"},
		{"k3", "'k3'", "(\ntext\n)", "3:6", "5:2"},
		{"k4", "k4", "é-word", "6:5", "6:11"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ranges (-want +got):\n%s", diff)
	}
	m := f.Root.Path("k2").Value.Elems[1]
	if text(m.Range) != "{a: b}" || text(m.Entries[0].Value.Range) != "b" {
		t.Errorf("nested ranges: %q %q", text(m.Range), text(m.Entries[0].Value.Range))
	}
	if r := f.Root.Range; r.Start.Byte != 0 || r.End.Byte != len(src) {
		t.Errorf("root range %v", r)
	}
}

func posString(p hcl.Pos) string {
	return strings.Join([]string{itoa(p.Line), itoa(p.Column)}, ":")
}

func itoa(i int) string {
	s := ""
	for {
		s = string(rune('0'+i%10)) + s
		i /= 10
		if i == 0 {
			return s
		}
	}
}

// TestRecovery: independent mistakes in one file are each reported once, at
// their own line, and nothing else is.
func TestRecovery(t *testing.T) {
	src := strings.Join([]string{
		"provisioner {",
		"  type: generic oops",          // 2: two values
		"}",                             //
		"machines: {",                   //
		"  central: {",                  //
		"    hosts: ['10.0.1.10' '10']", // 6: missing comma
		"    tags: [",                   //
		"      \"a\"",                   //
		"      { x: 1 y: 2 }",           // 9: two entries on one line in a map in an array
		"    ]",                         //
		"  }",                           //
		"  other {",                     // 12: a map opened on an error line...
		"    k: \"\\z\"",                // 13: unknown escape
		"  }",                           //
		"}",                             //
		"chef: {",                       //
		"  : nokey",                     // 17: no key
		"  \"continuum\": {",            //
		"    \"component_database\": {", //
		"      \"migrate_store2_to_store3\": tru e", // 20
		"    }",
		"  }",
		"}",
		"stray: 1 }", // 24
		"last: ok",
	}, "\n")
	f, diags := Parse([]byte(src), "rec.conf")
	errs, _ := diagList(diags)
	want := []string{
		"expected-newline@2:17",
		"missing-comma@6:25",
		"expected-newline@9:14",
		"unknown-escape@13:9",
		"unexpected-character@17:3",
		"expected-newline@20:39",
		"unmatched-brace@24:10",
	}
	if diff := cmp.Diff(want, errs); diff != "" {
		t.Errorf("errors (-want +got):\n%s\n%v", diff, diags)
	}
	// Parsing went on correctly after each error.
	for _, path := range [][]string{
		{"machines", "central", "tags"},
		{"machines", "other", "k"},
		{"chef", "continuum", "component_database", "migrate_store2_to_store3"},
		{"last"},
	} {
		if f.Root.Path(path...) == nil {
			t.Errorf("%s lost after recovery", strings.Join(path, "."))
		}
	}
	if e := f.Root.Path("last"); e == nil || e.Value.Str != "ok" {
		t.Errorf("last = %+v", e)
	}
	checkInvariants(t, []byte(src), f, diags)
}

// TestNoCascade: one mistake that leaves a construct open is one error.
func TestNoCascade(t *testing.T) {
	cases := map[string]string{
		"string-eats-rest":  "a: {\n  b: {\n    c: \"x\n",
		"block-eats-rest":   "a: {\n  b: (x)\n  c: 1\n  d: 2 3\n}\n",
		"too-deep":          strings.Repeat("[", 10000) + strings.Repeat("]", 10000),
		"too-deep-open":     "a: " + strings.Repeat("{b:\n", 5000),
		"erb-rest":          "a: <%= x %>\n}}}\n\"\nb: (\n",
		"raw-newline":       "motd: \"hello\nworld\"\nnext: 1\n",
		"missing-key-quote": "m {\n  identity\": {\n    a: 1\n  }\n}\n",
		"value-next-line":   "a:\n  \"x\"\nc: 1\n",
		"word-next-line":    "b =\n   word # c\nc: 1\n",
	}
	for name, src := range cases {
		t.Run(name, func(t *testing.T) {
			f, diags := Parse([]byte(src), "c.conf")
			errs, _ := diagList(diags)
			if len(errs) != 1 {
				t.Errorf("want exactly one error, got %v", diags)
			}
			if len(src) < 100_000 {
				checkInvariants(t, []byte(src), f, diags)
			}
		})
	}
}

func TestTooDeep(t *testing.T) {
	src := "a: " + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + "\nb: 1"
	f, diags := Parse([]byte(src), "deep.conf")
	errs, _ := diagList(diags)
	if diff := cmp.Diff([]string{"too-deep@1:1004"}, errs); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
	if e := f.Root.Path("b"); e == nil || e.Value.Int != 1 {
		t.Errorf("entry after the deep array lost")
	}
}

func TestCRLF(t *testing.T) {
	lf, err := os.ReadFile(filepath.Join(fixtureDir, "valid-cluster.conf"))
	if err != nil {
		t.Fatal(err)
	}
	crlf := []byte(strings.ReplaceAll(string(lf), "\n", "\r\n"))
	f1, d1 := Parse(lf, "lf.conf")
	f2, d2 := Parse(crlf, "crlf.conf")
	if len(d1)+len(d2) != 0 {
		t.Fatalf("diagnostics: %v / %v", d1, d2)
	}
	// Same tree, except that block strings keep their CR bytes verbatim.
	norm := cmp.Transformer("crlf", func(b Blk) Blk { return Blk(strings.ReplaceAll(string(b), "\r\n", "\n")) })
	if diff := cmp.Diff(plain(f1.Root), plain(f2.Root), norm); diff != "" {
		t.Errorf("CRLF tree differs (-lf +crlf):\n%s", diff)
	}
	// Same lines and columns for every key.
	var keys func(a, b *Value)
	keys = func(a, b *Value) {
		for i, e := range a.Entries {
			p, q := e.KeyRange.Start, b.Entries[i].KeyRange.Start
			if p.Line != q.Line || p.Column != q.Column {
				t.Errorf("key %q at %d:%d in LF, %d:%d in CRLF", e.Key, p.Line, p.Column, q.Line, q.Column)
			}
			keys(e.Value, b.Entries[i].Value)
		}
	}
	keys(f1.Root, f2.Root)
	checkInvariants(t, crlf, f2, d2)
}
