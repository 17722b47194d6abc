package dconf

import (
	"bytes"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
)

// The parser writes the tree in a compact form first: one 24-byte node per
// value (a map entry and its value share one node), in source order, with
// byte offsets instead of positions and no copy of the text. Positions and
// strings are made only when someone asks for them, so validating a large
// cluster.conf allocates about one byte per source byte; Parse then builds
// the Value tree from the nodes for callers that want plain fields.

// node is one value, and the key of the entry it belongs to, if any. The
// nodes of a file are in preorder: the children of a map or array follow it,
// and next is the index just past its last descendant.
type node struct {
	start, end       int32 // the value, from its first byte to just past its last
	keyStart, keyEnd int32 // the key as written, quotes included (fEntry only)
	next             int32
	kind             uint8 // Kind
	quote            Quote
	flags            uint8
	trim             uint8 // bytes of the key (low nibble) and of the value (high nibble) that are not text
}

const (
	fInvalid    = 1 << iota // Value.Invalid
	fEntry                  // the node is a map entry with a key
	fKeyDecoded             // the key's text is in File.decoded under ^index
	fStrDecoded             // the value's text is in File.decoded under index
)

// trimOf packs how many bytes of a range before and after the text are
// quotes (0, 1 or 3, the length of a curly quote).
func trimOf(pre, post int) uint8 { return uint8(pre | post<<2) }

func trimText(src []byte, start, end int32, t uint8) []byte {
	return src[start+int32(t&3) : end-int32(t>>2&3)]
}

// chunkBits sizes the blocks nodes live in: 256 nodes, 6 KiB. Blocks are
// never reallocated, so a pointer to a node stays valid while the parser
// adds more.
const chunkBits = 8

// maxSource is the largest source the int32 offsets of the nodes can hold.
const maxSource = 1<<31 - 1

func (f *File) newNode() int32 {
	i := f.count
	k := int(i >> chunkBits)
	if k == len(f.chunks) {
		f.chunks = append(f.chunks, new([1 << chunkBits]node))
	}
	f.count++
	return i
}

func (f *File) at(i int32) *node {
	return &f.chunks[i>>chunkBits][i&(1<<chunkBits-1)]
}

// pos returns the position of byte offset off: 1-based line, 1-based column
// in runes, as DCONF.md §2 asks. The line table is built on first use, so a
// file without diagnostics never pays for it.
func (f *File) pos(off int) hcl.Pos {
	if f.lines == nil {
		n := bytes.Count(f.Src, []byte{'\n'})
		f.lines = make([]int32, 1, n+1)
		for i := 0; ; {
			j := bytes.IndexByte(f.Src[i:], '\n')
			if j < 0 {
				break
			}
			i += j + 1
			f.lines = append(f.lines, int32(i))
		}
	}
	line := f.lineOf(off)
	from, col := int(f.lines[line-1]), 1
	if c := f.cur; c.Line == line && c.Byte <= off {
		// Later on the line of the last position asked for: count from
		// there, so that many positions on one long line stay linear.
		from, col = c.Byte, c.Column
	}
	f.cur = hcl.Pos{Line: line, Column: col + utf8.RuneCount(f.Src[from:off]), Byte: off}
	return f.cur
}

// lineOf returns the 1-based line of off. Positions are mostly asked for
// in source order, so it looks at the lines just after the last one first.
func (f *File) lineOf(off int) int {
	line := f.cur.Line
	if line >= 1 && int(f.lines[line-1]) <= off {
		for k := 0; k < 8; k, line = k+1, line+1 {
			if line == len(f.lines) || int(f.lines[line]) > off {
				return line
			}
		}
	}
	return sort.Search(len(f.lines), func(i int) bool { return int(f.lines[i]) > off })
}

func (f *File) rangeOf(start, end int32) hcl.Range {
	return hcl.Range{Filename: f.Name, Start: f.pos(int(start)), End: f.pos(int(end))}
}

// Node is a value of a file in compact form, with the key of its entry when
// it is a map entry. The zero Node stands for "none" (see Ok). A Node is a
// small handle: pass it by value. Positions are computed on demand and their
// line table cached in the File, so the nodes of one File are not safe for
// use by several goroutines at once.
type Node struct {
	f   *File
	i   int32
	end int32 // where the parent's children end, for Next
}

// Top returns the file's implicit top-level map.
func (f *File) Top() Node {
	if f == nil || f.count == 0 {
		return Node{}
	}
	return Node{f: f, i: 0, end: f.count}
}

// Ok reports whether n is a node rather than "none".
func (n Node) Ok() bool { return n.f != nil }

func (n Node) node() *node { return n.f.at(n.i) }

// Kind is the kind of the value.
func (n Node) Kind() Kind { return Kind(n.node().kind) }

// Invalid is Value.Invalid.
func (n Node) Invalid() bool { return n.node().flags&fInvalid != 0 }

// Quote is Value.Quote.
func (n Node) Quote() Quote { return n.node().quote }

// Range is the value's range in the source.
func (n Node) Range() hcl.Range {
	d := n.node()
	return n.f.rangeOf(d.start, d.end)
}

// Offsets are the byte offsets of the value's range.
func (n Node) Offsets() (start, end int) {
	d := n.node()
	return int(d.start), int(d.end)
}

// HasKey reports whether n is a map entry.
func (n Node) HasKey() bool { return n.node().flags&fEntry != 0 }

// KeyRange is Entry.KeyRange; only for a map entry.
func (n Node) KeyRange() hcl.Range {
	d := n.node()
	return n.f.rangeOf(d.keyStart, d.keyEnd)
}

// KeyBytes is the key's text (decoded, without quotes). It shares memory
// with the source: do not modify it.
func (n Node) KeyBytes() []byte {
	d := n.node()
	if d.flags&fKeyDecoded != 0 {
		return []byte(n.f.decoded[^n.i])
	}
	return trimText(n.f.Src, d.keyStart, d.keyEnd, d.trim&15)
}

// Key is Entry.Key.
func (n Node) Key() string {
	if n.node().flags&fKeyDecoded != 0 {
		return n.f.decoded[^n.i]
	}
	return string(n.KeyBytes())
}

// KeyIs reports whether the entry's key is k, without allocating.
func (n Node) KeyIs(k string) bool {
	if n.node().flags&fKeyDecoded != 0 {
		return n.f.decoded[^n.i] == k
	}
	return string(n.KeyBytes()) == k
}

// Text is Value.Str: the decoded text of a string, the source word of any
// other scalar, "" for a map or an array.
func (n Node) Text() string {
	d := n.node()
	switch {
	case d.flags&fStrDecoded != 0:
		return n.f.decoded[n.i]
	case Kind(d.kind) == Map || Kind(d.kind) == Array:
		return ""
	}
	return string(trimText(n.f.Src, d.start, d.end, d.trim>>4))
}

// First returns the first entry of a map or element of an array, or none.
func (n Node) First() Node {
	if next := n.node().next; n.i+1 < next {
		return Node{f: n.f, i: n.i + 1, end: next}
	}
	return Node{}
}

// Next returns the entry or element after n in its map or array, or none.
func (n Node) Next() Node {
	if next := n.node().next; next < n.end {
		return Node{f: n.f, i: next, end: n.end}
	}
	return Node{}
}

// Lookup is Value.Lookup: the last entry named key of a map, or none.
func (n Node) Lookup(key string) Node {
	var last Node
	if !n.Ok() || n.Kind() != Map {
		return last
	}
	for c := n.First(); c.Ok(); c = c.Next() {
		if c.KeyIs(key) {
			last = c
		}
	}
	return last
}

// Same reports whether n and o are the same node of the same file.
func (n Node) Same(o Node) bool { return n.f == o.f && n.i == o.i && n.f != nil }

// Value returns the value of n as a tree, as Parse builds it.
func (n Node) Value() *Value {
	if !n.Ok() {
		return nil
	}
	return newBuilder(n).value(n)
}

// Entry returns the map entry n as a tree; nil when n is not an entry.
func (n Node) Entry() *Entry {
	if !n.Ok() || !n.HasKey() {
		return nil
	}
	return newBuilder(n).entry(n)
}

// builder makes the Value tree of a subtree, taking its nodes from slabs of
// up to slab nodes, and its strings from one copy of its source.
type builder struct {
	text    string // the source of the subtree, from base
	base    int32
	nVals   int // values and entries still to make, for the slab sizes
	nEnts   int
	vals    []Value
	ents    []Entry
	valPtrs []*Value
	entPtrs []*Entry
}

const slab = 512

func newBuilder(n Node) *builder {
	d := n.node()
	base := d.start
	if d.flags&fEntry != 0 {
		base = d.keyStart
	}
	b := &builder{text: string(n.f.Src[base:d.end]), base: base, nVals: int(d.next - n.i)}
	for i := n.i; i < d.next; i++ {
		if n.f.at(i).flags&fEntry != 0 {
			b.nEnts++
		}
	}
	return b
}

func (b *builder) newValue() *Value {
	if len(b.vals) == 0 {
		b.vals = make([]Value, min(b.nVals, slab))
	}
	b.nVals--
	v := &b.vals[0]
	b.vals = b.vals[1:]
	return v
}

func (b *builder) newEntry() *Entry {
	if len(b.ents) == 0 {
		b.ents = make([]Entry, min(b.nEnts, slab))
	}
	b.nEnts--
	e := &b.ents[0]
	b.ents = b.ents[1:]
	return e
}

// carve returns a slice of k elements with room from *ptrs, refilled with
// room for at least slab elements when short.
func carve[T any](ptrs *[]T, k int) []T {
	if len(*ptrs) < k {
		*ptrs = make([]T, max(k, 2*slab))
	}
	out := (*ptrs)[:0:k]
	*ptrs = (*ptrs)[k:]
	return out
}

func (b *builder) entry(n Node) *Entry {
	e := b.newEntry()
	if d := n.node(); d.flags&fKeyDecoded != 0 {
		e.Key = n.f.decoded[^n.i]
	} else {
		e.Key = b.sub(d.keyStart, d.keyEnd, d.trim&15)
	}
	e.KeyRange = n.KeyRange()
	e.Value = b.value(n)
	return e
}

// sub is the text of a range without its quotes, as Text and KeyBytes cut it.
func (b *builder) sub(start, end int32, t uint8) string {
	return b.text[start+int32(t&3)-b.base : end-int32(t>>2&3)-b.base]
}

func (b *builder) value(n Node) *Value {
	d := n.node()
	v := b.newValue()
	v.Kind = Kind(d.kind)
	v.Quote = d.quote
	switch {
	case d.flags&fStrDecoded != 0:
		v.Str = n.f.decoded[n.i]
	case v.Kind != Map && v.Kind != Array:
		v.Str = b.sub(d.start, d.end, d.trim>>4)
	}
	v.Invalid = d.flags&fInvalid != 0
	v.node = n
	// Positions in source order: pos counts forward from the last one on
	// the same line, so a long line of small maps stays linear.
	v.Range.Filename = n.f.Name
	v.Range.Start = n.f.pos(int(d.start))
	k := 0
	for c := n.First(); c.Ok(); c = c.Next() {
		k++
	}
	switch v.Kind {
	case Map:
		if k > 0 {
			v.Entries = carve(&b.entPtrs, k)
			for c := n.First(); c.Ok(); c = c.Next() {
				v.Entries = append(v.Entries, b.entry(c))
			}
		}
	case Array:
		if k > 0 {
			v.Elems = carve(&b.valPtrs, k)
			for c := n.First(); c.Ok(); c = c.Next() {
				v.Elems = append(v.Elems, b.value(c))
			}
		}
	case Int:
		v.Int, _ = strconv.ParseInt(v.Str, 10, 64)
	case Float:
		v.Float, _ = strconv.ParseFloat(v.Str, 64)
	case Bool:
		v.Bool = strings.EqualFold(v.Str, "true")
	case DateTime:
		v.Time, _ = time.Parse(dateTimeLayout, v.Str)
	}
	v.Range.End = n.f.pos(int(d.end))
	return v
}
