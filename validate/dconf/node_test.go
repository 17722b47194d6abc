package dconf

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestNodesAgreeWithValues reads every fixture through the nodes of
// ParseCompact and through the Value tree of Parse, which the spec tests
// pin, and expects the same answers.
func TestNodesAgreeWithValues(t *testing.T) {
	srcs := map[string][]byte{
		"generated": GenerateClusterConf(300),
		"escapes":   []byte("\"a\\tb\": \"x\\x41\"\n'c': 'd'\n\u201ce\u201d: 1\nk\": v\ndup: 1\ndup: 2\n"),
	}
	paths, _ := filepath.Glob(filepath.Join(fixtureDir, "*.conf"))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		srcs[filepath.Base(p)] = b
	}
	for _, tc := range spec13 {
		srcs["spec-"+tc.name] = []byte(tc.src)
	}
	for name, src := range srcs {
		t.Run(name, func(t *testing.T) {
			f, diags := Parse(src, name)
			c, cdiags := ParseCompact(src, name)
			if c.Root != nil {
				t.Errorf("ParseCompact built a Value tree")
			}
			e1, w1 := diagList(diags)
			e2, w2 := diagList(cdiags)
			if !cmp.Equal(e1, e2) || !cmp.Equal(w1, w2) {
				t.Errorf("diagnostics differ: %v %v, %v %v", e1, w1, e2, w2)
			}
			if !f.Root.Node().Same(f.Top()) {
				t.Errorf("Root.Node is not Top")
			}
			agree(t, f.Root, c.Top())
		})
	}
}

func agree(t *testing.T, v *Value, n Node) {
	t.Helper()
	if !n.Ok() {
		t.Fatalf("no node for %v", v.Range)
	}
	if n.Kind() != v.Kind || n.Range() != v.Range || n.Text() != v.Str || n.Invalid() != v.Invalid || n.Quote() != v.Quote {
		t.Fatalf("node %v %v %q %v %v, value %v %v %q %v %v", n.Kind(), n.Range(), n.Text(), n.Invalid(), n.Quote(),
			v.Kind, v.Range, v.Str, v.Invalid, v.Quote)
	}
	if s, e := n.Offsets(); s != v.Range.Start.Byte || e != v.Range.End.Byte {
		t.Fatalf("offsets %d..%d, range %v", s, e, v.Range)
	}
	c := n.First()
	for _, e := range v.Entries {
		if !c.HasKey() || c.Key() != e.Key || string(c.KeyBytes()) != e.Key || !c.KeyIs(e.Key) || c.KeyRange() != e.KeyRange {
			t.Fatalf("entry %q %v: node key %q %v", e.Key, e.KeyRange, c.Key(), c.KeyRange())
		}
		if got, want := n.Lookup(e.Key), v.Lookup(e.Key); got.KeyRange() != want.KeyRange {
			t.Fatalf("Lookup(%q) found the entry at %v, want %v", e.Key, got.KeyRange(), want.KeyRange)
		}
		agree(t, e.Value, c)
		c = c.Next()
	}
	for _, el := range v.Elems {
		if c.HasKey() {
			t.Fatalf("array element with a key")
		}
		agree(t, el, c)
		c = c.Next()
	}
	if c.Ok() {
		t.Fatalf("node has more children than the value")
	}
	if v.Node().Range() != n.Range() {
		t.Fatalf("Value.Node is not the node it was built from")
	}
}
