// Package dconf parses Apcera's Dconf configuration format (cluster.conf,
// manifests, package scripts) into a tree that keeps entry order, duplicate
// keys and the exact source range of every key and value.
//
// The grammar is ../../shared/DCONF.md. The parser has one mode, recovers
// after errors and reports every error of a file; it never panics.
package dconf

import (
	"time"

	"github.com/hashicorp/hcl/v2"
)

// Kind is the type of a value.
type Kind int

// The value kinds of DCONF.md §5.
const (
	String      Kind = iota // bare word or quoted string
	BlockString             // ( ... ) closed by ")" alone in column 1
	Int
	Float
	DateTime
	Bool
	Map
	Array
)

func (k Kind) String() string {
	switch k {
	case String:
		return "string"
	case BlockString:
		return "block string"
	case Int:
		return "integer"
	case Float:
		return "float"
	case DateTime:
		return "date-time"
	case Bool:
		return "boolean"
	case Map:
		return "map"
	case Array:
		return "array"
	}
	return "unknown"
}

// Quote says how a string value was written.
type Quote byte

// Quote styles.
const (
	Bare   Quote = 0
	Double Quote = '"'
	Single Quote = '\''
	Paren  Quote = '(' // block string
)

// Value is one value with its range in the source. Only the fields of its
// Kind are set.
type Value struct {
	Kind  Kind
	Range hcl.Range // from the first byte of the value to just past its last
	Quote Quote     // for String and BlockString

	Str   string // String, BlockString: decoded text; scalars: the source word
	Int   int64
	Float float64
	Bool  bool
	Time  time.Time

	Entries []*Entry // Map, in source order, duplicates kept
	Elems   []*Value // Array

	// Invalid marks a value the parser stood in for, or cut short, after a
	// syntax error it already reported. Validators should skip it rather
	// than report a second error for the same mistake.
	Invalid bool

	node Node
}

// Node returns the compact node the value was built from.
func (v *Value) Node() Node { return v.node }

// Entry is one key and its value.
type Entry struct {
	Key      string
	KeyRange hcl.Range // the key as written, quotes included
	Value    *Value    // never nil in a tree returned by Parse
}

// Range spans the entry from its key to the end of its value.
func (e *Entry) Range() hcl.Range {
	return hcl.RangeBetween(e.KeyRange, e.Value.Range)
}

// File is a parsed file.
type File struct {
	Name string
	Src  []byte
	Root *Value // Kind Map: the file's implicit top-level map; nil from ParseCompact (see Top)

	chunks  []*[1 << chunkBits]node
	count   int32
	decoded map[int32]string // text of escaped strings (by index) and keys (by ^index)
	lines   []int32          // offset of the start of each line, built on first use
	cur     hcl.Pos          // the last position pos computed
}

// Lookup returns the last entry named key in a map value (last wins, as for
// NATS-like consumers), or nil.
func (v *Value) Lookup(key string) *Entry {
	if v == nil || v.Kind != Map {
		return nil
	}
	for i := len(v.Entries) - 1; i >= 0; i-- {
		if v.Entries[i].Key == key {
			return v.Entries[i]
		}
	}
	return nil
}

// Path follows keys through nested maps, last entry wins at each step.
func (v *Value) Path(keys ...string) *Entry {
	var e *Entry
	for _, k := range keys {
		e = v.Lookup(k)
		if e == nil {
			return nil
		}
		v = e.Value
	}
	return e
}

// Extra is carried in hcl.Diagnostic.Extra by the parser and the validator.
type Extra struct {
	Code    string    // stable, kebab-case: "unterminated-string", "kind-invalid"
	Related []Related // other places the diagnostic refers to
}

// Related is a secondary location of a diagnostic.
type Related struct {
	Range   hcl.Range
	Message string
}

// CodeOf returns the stable code of a diagnostic, or "".
func CodeOf(d *hcl.Diagnostic) string {
	if x, ok := d.Extra.(*Extra); ok {
		return x.Code
	}
	return ""
}
