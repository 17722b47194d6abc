package dconf

import (
	"bytes"
	"fmt"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
)

// Byte classes for the ASCII range. Anything at or above utf8.RuneSelf is
// decoded and checked with isOddSpace and isCurly.
const (
	clWord    = iota // may appear in a bare word or key
	clSpace          // ' ' and TAB
	clOdd            // CR, form feed, vertical tab: whitespace, but worth a warning
	clNewline        // LF
	clDelim          // ends a bare word: ( ) [ ] { } " ' , ; #
	clCtrl           // other control characters: never part of a word
	clSep            // ':' and '=': word characters in values, separators after keys
)

var class = func() (t [utf8.RuneSelf]uint8) {
	for c := 0; c < utf8.RuneSelf; c++ {
		switch {
		case c == ' ' || c == '\t':
			t[c] = clSpace
		case c == '\r' || c == '\f' || c == '\v':
			t[c] = clOdd
		case c == '\n':
			t[c] = clNewline
		case c < ' ' || c == 0x7f:
			t[c] = clCtrl
		case c == ':' || c == '=':
			t[c] = clSep
		}
	}
	for _, c := range "()[]{}\"',;#" {
		t[c] = clDelim
	}
	return t
}()

// isCurly reports the typographic quotes that DCONF.md §5.1 excludes from
// bare words.
func isCurly(r rune) bool {
	return r == '\u201c' || r == '\u201d' || r == '\u2018' || r == '\u2019'
}

// isOddSpace reports non-ASCII characters that end a bare word like a space
// does. They are almost always paste accidents, so they also get a warning.
func isOddSpace(r rune) bool {
	switch r {
	case '\u0085', '\u00a0', '\u1680', '\u2028', '\u2029', '\u202f', '\u205f', '\u3000',
		'\u200b', '\ufeff':
		return true
	}
	return r >= '\u2000' && r <= '\u200a'
}

// scanWord returns the end of the bare word that starts at i. Keys also stop
// at ':' and '=', which are ordinary characters inside a value.
func scanWord(src []byte, i int, key bool) int {
	for i < len(src) {
		c := src[i]
		if c < utf8.RuneSelf {
			switch class[c] {
			case clWord:
				i++
				continue
			case clSep:
				if !key {
					i++
					continue
				}
			}
			return i
		}
		r, size := utf8.DecodeRune(src[i:])
		if isCurly(r) || isOddSpace(r) {
			return i
		}
		i += size
	}
	return i
}

// lineEnd returns the offset of the newline that ends the line holding i
// (the CR of a CR LF pair), or len(src).
func lineEnd(src []byte, i int) int {
	j := bytes.IndexByte(src[i:], '\n')
	if j < 0 {
		return len(src)
	}
	j += i
	if j > i && src[j-1] == '\r' {
		j--
	}
	return j
}

// blockClose finds the ")" that ends a block string whose content starts at
// from: a ")" right after a newline and right before a newline or the end of
// the file. It returns the offset of that ")" or -1.
func blockClose(src []byte, from int) int {
	for i := from; ; {
		j := bytes.Index(src[i:], []byte("\n)"))
		if j < 0 {
			return -1
		}
		k := i + j + 1
		a := k + 1
		if a == len(src) || src[a] == '\n' || (src[a] == '\r' && (a+1 == len(src) || src[a+1] == '\n')) {
			return k
		}
		i = k
	}
}

// restBlank reports whether only spaces, tabs and a CR remain on the line
// from i.
func restBlank(src []byte, i int) bool {
	for ; i < len(src) && src[i] != '\n'; i++ {
		if c := src[i]; c != ' ' && c != '\t' && c != '\r' {
			return false
		}
	}
	return true
}

// pos returns the position of byte offset off.
func (p *parser) pos(off int) hcl.Pos { return p.f.pos(off) }

func (p *parser) rangeOf(start, end int) hcl.Range {
	return hcl.Range{Filename: p.filename, Start: p.pos(start), End: p.pos(end)}
}

// runeEnd returns the offset just past the character at i.
func (p *parser) runeEnd(i int) int {
	if i >= len(p.src) {
		return i
	}
	if p.src[i] < utf8.RuneSelf {
		return i + 1
	}
	_, size := utf8.DecodeRune(p.src[i:])
	return i + size
}

// atLineEnd reports whether nothing but a comment remains before the next
// newline.
func (p *parser) atLineEnd() bool {
	if p.off >= len(p.src) {
		return true
	}
	switch p.src[p.off] {
	case '\n', '#':
		return true
	case '\r':
		return p.off+1 < len(p.src) && p.src[p.off+1] == '\n'
	case '/':
		return p.off+1 < len(p.src) && p.src[p.off+1] == '/'
	}
	return false
}

// skipWS skips spaces and tabs (and, with a warning, other spaces) but not
// newlines. It reports whether it moved.
func (p *parser) skipWS() bool {
	start := p.off
	for p.off < len(p.src) {
		c := p.src[p.off]
		if c == ' ' || c == '\t' {
			p.off++
			continue
		}
		if !p.skipOddSpace() {
			break
		}
	}
	return p.off > start
}

// skipOddSpace skips one odd space character at p.off, with a warning.
func (p *parser) skipOddSpace() bool {
	c := p.src[p.off]
	var what string
	size := 1
	switch {
	case c == '\r':
		if p.off+1 < len(p.src) && p.src[p.off+1] == '\n' {
			return false
		}
		what = "carriage return without a line feed"
	case c == '\f':
		what = "form feed"
	case c == '\v':
		what = "vertical tab"
	case c >= utf8.RuneSelf:
		r, n := utf8.DecodeRune(p.src[p.off:])
		if !isOddSpace(r) {
			return false
		}
		size = n
		what = "non-ASCII space character " + runeName(r)
	default:
		return false
	}
	start := p.off
	p.off += size
	// One warning per line is enough to point at a pasted run of them.
	if r := p.rangeOf(start, start+size); r.Start.Line != p.spaceWarnLine {
		p.spaceWarnLine = r.Start.Line
		p.report(hcl.DiagWarning, codeUnicodeSpace, r, what+" outside a string",
			"replace it with a plain space; it is usually a paste accident and some tools treat it as part of a word")
	}
	return true
}

// skipBlank skips whitespace, newlines and comments: everything allowed
// between entries and between array elements.
func (p *parser) skipBlank() {
	for p.off < len(p.src) {
		switch c := p.src[p.off]; c {
		case ' ', '\t', '\n':
			p.off++
		case '#':
			p.off = lineEnd(p.src, p.off)
		case '/':
			if p.off+1 < len(p.src) && p.src[p.off+1] == '/' {
				p.off = lineEnd(p.src, p.off)
				continue
			}
			return
		case '\r':
			if p.off+1 < len(p.src) && p.src[p.off+1] == '\n' {
				p.off += 2
				continue
			}
			p.skipOddSpace()
		default:
			if !p.skipOddSpace() {
				return
			}
		}
	}
}

// nextIsBracket reports whether, after blank lines and comments, the next
// token is "{" or "[". It reads ahead without reporting anything.
func (p *parser) nextIsBracket() bool {
	src := p.src
	for i := p.off; i < len(src); {
		switch c := src[i]; c {
		case ' ', '\t', '\n', '\r', '\f', '\v':
			i++
		case '#':
			i = lineEnd(src, i)
		case '/':
			if i+1 < len(src) && src[i+1] == '/' {
				i = lineEnd(src, i)
				continue
			}
			return false
		case '{', '[':
			return true
		default:
			if c < utf8.RuneSelf {
				return false
			}
			r, size := utf8.DecodeRune(src[i:])
			if !isOddSpace(r) {
				return false
			}
			i += size
		}
	}
	return false
}

// skip moves past the text that follows a syntax error, so that the next
// error reported is a real one. Brackets opened in the skipped text are
// skipped to their match, as are quoted strings and a block string opened at
// the end of a line. In line mode it stops before the newline that ends the
// line; either way it stops before a closer it did not open, which belongs to
// an enclosing map or array. Out of line mode it starts at an opener and stops
// after its match.
func (p *parser) skip(lineMode bool) {
	depth := 0
	src := p.src
	i := p.off
	for i < len(src) {
		switch c := src[i]; c {
		case '\n':
			if depth == 0 && lineMode {
				p.off = i
				if i > 0 && src[i-1] == '\r' {
					p.off--
				}
				return
			}
			i++
		case '{', '[':
			depth++
			i++
		case '}', ']':
			if depth == 0 {
				p.off = i
				return
			}
			depth--
			i++
			if depth == 0 && !lineMode {
				p.off = i
				return
			}
		case '"', '\'':
			i++
			for i < len(src) && src[i] != c && src[i] != '\n' {
				if c == '"' && src[i] == '\\' && i+1 < len(src) && src[i+1] != '\n' {
					i++
				}
				i++
			}
			if i < len(src) && src[i] == c {
				i++
			}
		case '#':
			i = lineEnd(src, i)
		case '(':
			i++
			if restBlank(src, i) {
				if k := blockClose(src, i); k >= 0 {
					i = k + 1
				} else {
					i = len(src)
				}
			}
		default:
			i++
		}
	}
	p.off = len(src)
	if depth > 0 {
		// Whatever was left open here is part of the error already
		// reported; the maps around it must not report end of file too.
		p.eofDone = true
	}
}

func runeName(r rune) string {
	return fmt.Sprintf("U+%04X", r)
}
