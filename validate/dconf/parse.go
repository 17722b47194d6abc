package dconf

import (
	"bytes"
	"slices"
	"sort"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
)

// parser is a recursive-descent parser that reads the source directly: the
// grammar is context dependent (":" ends a key but not a value, "(" starts a
// block only in a value, "//" is a comment only at a token start), so each
// parse function scans the bytes it expects instead of asking a lexer for a
// context-free token stream.
type parser struct {
	f        *File // the nodes are written here
	src      []byte
	filename string
	off      int

	diags         hcl.Diagnostics
	errLines      []int // lines that already have an error, sorted
	spaceWarnLine int
	eofDone       bool // an error already explains the end of file; open maps stay quiet
	badString     bool // the last quoted string was broken and its value is a guess
	stopped       bool // ERB found: the rest of the file is not Dconf
	erbCheck      bool // the source contains "<%" somewhere

	depth      int
	openMaps   int
	openArrays int

	buf []byte
}

// Parse parses a Dconf file. It always returns a File whose Root is a map
// holding every entry it could read; the diagnostics hold every syntax error
// (and warning) found, in source order. Duplicate keys are kept and not
// reported: that is the validator's call.
func Parse(src []byte, filename string) (*File, hcl.Diagnostics) {
	f, diags := ParseCompact(src, filename)
	f.Root = f.Top().Value()
	return f, diags
}

// ParseCompact is Parse without the Value tree: File.Root is nil and the
// tree is read through File.Top, whose nodes make strings and positions only
// when asked. The diagnostics are those of Parse. The nodes read src in
// place, so it must not change while the File is in use.
func ParseCompact(src []byte, filename string) (*File, hcl.Diagnostics) {
	f := &File{Name: filename, Src: src}
	p := &parser{
		f:        f,
		src:      src,
		filename: filename,
		erbCheck: bytes.Contains(src, []byte("<%")),
	}
	root := f.newNode()
	p.setValue(root, Map, Bare, 0, len(src), 0)
	if len(src) > maxSource {
		p.report(hcl.DiagError, codeTooLarge, p.rangeOf(0, 0), "file larger than 2 GiB",
			"a cluster.conf is kilobytes to a few megabytes; check that this is the right file")
		f.at(root).next = f.count
		return f, p.diags
	}
	if bytes.HasPrefix(src, []byte("\ufeff")) {
		p.off = 3 // a byte order mark from a Windows editor is not content
	}
	p.parseFile(root)
	f.at(root).next = f.count
	sort.SliceStable(p.diags, func(i, j int) bool {
		return p.diags[i].Subject.Start.Byte < p.diags[j].Subject.Start.Byte
	})
	return f, p.diags
}

// setValue sets the value part of node i, keeping its key.
func (p *parser) setValue(i int32, k Kind, q Quote, start, end int, trim uint8) {
	n := p.f.at(i)
	n.kind, n.quote = uint8(k), q
	n.start, n.end = int32(start), int32(end)
	n.flags &= fEntry | fKeyDecoded
	n.trim = n.trim&15 | trim<<4
}

func (p *parser) invalid(i int32) { p.f.at(i).flags |= fInvalid }

// decoded keeps the text of an escaped string (i) or key (^i).
func (p *parser) decoded(i int32, s string) {
	if p.f.decoded == nil {
		p.f.decoded = map[int32]string{}
	}
	p.f.decoded[i] = s
	if i >= 0 {
		p.f.at(i).flags |= fStrDecoded
	} else {
		p.f.at(^i).flags |= fKeyDecoded
	}
}

func (p *parser) parseFile(root int32) {
	p.skipBlank()
	if p.off < len(p.src) && p.src[p.off] == '{' {
		open := p.off
		p.report(hcl.DiagError, codeTopLevelBraces, p.rangeOf(open, open+1), "the whole file is wrapped in braces",
			"a Dconf file is an implicit map: remove this `{` and the `}` that closes it")
		p.off++
		p.openMaps++
		p.parseEntries(root, '}', open)
		p.openMaps--
	}
	p.parseEntries(root, 0, 0)
}

// parseEntries reads entries into m up to its closer: '}' for a map, 0 for
// the top level (end of file). open is the offset of its "{".
func (p *parser) parseEntries(m int32, closer byte, open int) {
	for !p.stopped {
		p.skipBlank()
		if p.off >= len(p.src) {
			if closer != 0 {
				p.unterminated(codeUnterminatedMap, p.rangeOf(open, open+1), "map")
				p.invalid(m)
			}
			break
		}
		c := p.src[p.off]
		if c == '}' && closer == '}' {
			p.off++
			break
		}
		if c == ']' && closer == '}' && p.openArrays > 0 {
			// The array around this map is closing, so this map's own
			// "}" is missing. Leave the "]" to the array.
			p.report(hcl.DiagError, codeUnterminatedMap, p.rangeOf(open, open+1), "map not closed before `]`",
				"add `}` to close this map before the `]` at "+p.at(p.off))
			p.invalid(m)
			break
		}
		switch c {
		case '}', ']':
			p.unmatched(c)
			continue
		case ',', ';':
			p.errAt(codeExtraSeparator, p.off, "unexpected `"+string(c)+"` with no entry before it",
				"remove it: `,` and `;` only end an entry")
			p.off++
			continue
		}
		if e := p.parseEntry(); e >= 0 {
			p.f.at(e).next = p.f.count
		}
		p.entryEnd()
	}
}

// parseEntry reads one entry into a new node and returns its index, or -1
// when the key could not be read.
func (p *parser) parseEntry() int32 {
	start := p.off
	c := p.src[p.off]
	var q quoted
	end, quoted := 0, false
	switch {
	case c == '"' || c == '\'':
		q = p.scanQuoted(true)
		if !q.ok {
			p.off = q.end
			p.skip(true)
			return -1
		}
		end = q.end
		quoted = true
	case c >= utf8.RuneSelf && p.curlyAt(p.off):
		q.ts, q.te, end = p.scanCurly()
		quoted = true
	default:
		end = scanWord(p.src, p.off, true)
		if end == p.off {
			p.unexpected("expected a key")
			p.skip(true)
			return -1
		}
		q.ts, q.te = start, end
		p.checkERB(start, end)
		if p.strayQuote(end) {
			// `identity": {`: the opening quote is missing. Reading the
			// stray quote as part of the key keeps the rest of the line,
			// and the map it opens, intact.
			end++
			key := show(string(p.src[start:q.te]))
			p.report(hcl.DiagError, codeMissingQuote, p.rangeOf(start, end),
				"key `"+key+"` ends with a quote that has no opening quote",
				"add the opening `"+string(p.src[end-1:end])+"` before `"+key+"`")
		}
	}
	e := p.f.newNode()
	n := p.f.at(e)
	n.flags = fEntry
	n.keyStart, n.keyEnd = int32(start), int32(end)
	n.trim = trimOf(q.ts-start, end-q.te)
	if q.decoded {
		p.decoded(^e, q.s)
	}
	p.off = end
	if p.stopped {
		p.placeholder(e, end)
		return e
	}
	if quoted && !q.decoded && q.ts == q.te {
		p.report(hcl.DiagError, codeEmptyKey, p.rangeOf(start, end), "empty key", "give the key a name")
	}
	if !quoted && string(p.src[start:q.te]) == "include" {
		p.report(hcl.DiagWarning, codeInclude, p.rangeOf(start, end), "`include` is an ordinary key here, not a file include",
			"Dconf has no includes: the file named here is not read; rename the key if it is not meant as data")
	}

	spaced := p.skipWS()
	sep := false
	if p.off < len(p.src) && (p.src[p.off] == ':' || p.src[p.off] == '=') {
		p.off++
		sep = true
		p.skipWS()
	}
	if p.atLineEnd() {
		if !p.nextIsBracket() {
			p.missingValue(e)
			if sep && p.loneValueNext() {
				// `k:` then the value alone on the next line: one
				// mistake. Take the value, so that it is not read as a
				// key without a value too.
				p.skipBlank()
				if p.off < len(p.src) {
					p.parseValue(e)
					p.invalid(e)
				}
			}
			return e
		}
		p.skipBlank()
		spaced = true
	}
	switch p.src[p.off] {
	case '}', ']', ',', ';':
		p.missingValue(e)
		return e
	}
	if !spaced && !sep && !quoted {
		key := show(string(p.src[q.ts:q.te]))
		detail := "need whitespace, `:` or `=` between key and value"
		if q := p.src[p.off]; q == '"' || q == '\'' {
			detail = "`" + key + string(q) + "` looks like a quoted key that lost its opening quote; otherwise " + detail
		}
		p.errAt(codeMissingSeparator, p.off, "missing space between key `"+key+"` and its value", detail)
	}
	p.parseValue(e)
	return e
}

func (p *parser) unmatched(c byte) {
	open := "{"
	if c == ']' {
		open = "["
	}
	p.errAt(codeUnmatchedBrace, p.off, "unmatched `"+string(c)+"`",
		"remove it, or add the `"+open+"` it was meant to close")
	p.off++
}

// strayQuote reports a quote at i that directly follows a bare key and is
// itself followed by a key separator.
func (p *parser) strayQuote(i int) bool {
	src := p.src
	if i >= len(src) || (src[i] != '"' && src[i] != '\'') {
		return false
	}
	for i++; i < len(src) && (src[i] == ' ' || src[i] == '\t'); i++ {
	}
	return i < len(src) && (src[i] == ':' || src[i] == '=')
}

// loneValueNext reports whether the next line holding a token holds just one
// quoted string or bare word, which cannot be an entry of its own.
func (p *parser) loneValueNext() bool {
	src := p.src
	i := lineEnd(src, p.off)
	for i < len(src) {
		switch src[i] {
		case ' ', '\t', '\n', '\r':
			i++
			continue
		case '#':
			i = lineEnd(src, i)
			continue
		}
		break
	}
	if i >= len(src) || (src[i] == '/' && i+1 < len(src) && src[i+1] == '/') {
		return false
	}
	switch c := src[i]; {
	case c == '"' || c == '\'':
		j := bytes.IndexByte(src[i+1:lineEnd(src, i)], c)
		if j < 0 {
			return false
		}
		i += j + 2
	case c < utf8.RuneSelf && class[c] != clWord:
		return false
	default:
		j := scanWord(src, i, false)
		if j == i || bytes.IndexByte(src[i:j], ':') >= 0 || bytes.IndexByte(src[i:j], '=') >= 0 {
			return false
		}
		i = j
	}
	for i < len(src) && (src[i] == ' ' || src[i] == '\t') {
		i++
	}
	return i >= len(src) || src[i] == '\n' || src[i] == '\r' || src[i] == '#'
}

func (p *parser) missingValue(e int32) {
	k := Node{f: p.f, i: e}
	n := p.f.at(e)
	p.report(hcl.DiagError, codeMissingValue, p.rangeOf(int(n.keyStart), int(n.keyEnd)), "missing value for key `"+show(k.Key())+"`",
		"write the value on the key's line; only a map `{` or an array `[` may start on a later line")
	p.placeholder(e, int(n.keyEnd))
}

// entryEnd reads what may follow a value: spaces, one "," or ";", a comment,
// then a newline, the end of the file or a closer.
func (p *parser) entryEnd() {
	p.skipWS()
	if p.off >= len(p.src) || p.stopped {
		return
	}
	switch c := p.src[p.off]; c {
	case '\n':
		p.off++
		return
	case ',', ';':
		p.off++ // another entry may follow on the same line
		return
	case '}', ']':
		return
	}
	if p.atLineEnd() {
		p.off = lineEnd(p.src, p.off)
		return
	}
	switch {
	case p.curlyAt(p.off):
		p.curlyError(p.off)
	case p.src[p.off] == '(':
		p.errAt(codeExpectedNewline, p.off, "unexpected `(` after a value",
			"a block string starts with `(` as the whole value and ends with `)` alone at the start of a line; quote a string that contains parentheses")
	case p.src[p.off] == '"' || p.src[p.off] == '\'':
		p.errAt(codeExpectedNewline, p.off, "a second string after the value",
			"adjacent strings are not joined: write one quoted string, or end the entry with a newline, `,` or `;`")
	default:
		p.errAt(codeExpectedNewline, p.off, "expected newline, `,` or `;` after value",
			"put each entry on its own line, or separate entries on one line with `,` or `;`")
	}
	p.skip(true)
}

// parseValue reads the value at p.off into node i.
func (p *parser) parseValue(i int32) {
	start := p.off
	switch c := p.src[start]; c {
	case '{':
		p.parseMap(i)
		return
	case '[':
		p.parseArray(i)
		return
	case '(':
		p.parseBlock(i)
		return
	case '"', '\'':
		q := p.scanQuoted(false)
		p.setValue(i, String, Quote(c), start, q.end, trimOf(q.ts-start, q.end-q.te))
		if q.decoded {
			p.decoded(i, q.s)
		}
		if p.badString {
			p.invalid(i)
		}
		p.off = q.end
		return
	case ')':
		p.unexpected("expected a value")
		p.off++
		p.placeholder(i, start)
		return
	}
	if p.curlyAt(start) {
		ts, te, end := p.scanCurly()
		p.setValue(i, String, Bare, start, end, trimOf(ts-start, end-te))
		p.invalid(i)
		p.off = end
		return
	}
	end := scanWord(p.src, start, false)
	if end == start {
		p.unexpected("expected a value")
		p.off = p.runeEnd(start)
		p.placeholder(i, start)
		return
	}
	p.off = end
	p.typeWord(i, start, end)
	p.checkERB(start, end)
}

func (p *parser) parseMap(i int32) {
	open := p.off
	if p.depth >= maxDepth {
		p.tooDeep(i, Map, open)
		return
	}
	p.off++
	p.depth++
	p.openMaps++
	p.setValue(i, Map, Bare, open, open, 0)
	p.parseEntries(i, '}', open)
	p.depth--
	p.openMaps--
	p.f.at(i).end = int32(p.off)
}

func (p *parser) parseArray(i int32) {
	open := p.off
	if p.depth >= maxDepth {
		p.tooDeep(i, Array, open)
		return
	}
	p.off++
	p.depth++
	p.openArrays++
	p.setValue(i, Array, Bare, open, open, 0)
	commaOK := false // an element came last, so one "," may follow
	for !p.stopped {
		p.skipBlank()
		if p.off >= len(p.src) {
			p.unterminated(codeUnterminatedArray, p.rangeOf(open, open+1), "array")
			p.invalid(i)
			break
		}
		c := p.src[p.off]
		if c == ']' {
			p.off++
			break
		}
		if c == '}' {
			if p.openMaps > 0 {
				p.report(hcl.DiagError, codeUnterminatedArray, p.rangeOf(open, open+1), "array not closed before `}`",
					"add `]` to close this array before the `}` at "+p.at(p.off))
				p.invalid(i)
				break
			}
			p.unmatched(c)
			continue
		}
		if c == ',' && commaOK {
			commaOK = false
			p.off++
			continue
		}
		if c == ',' || c == ';' {
			p.errAt(codeExtraSeparator, p.off, "unexpected `"+string(c)+"` in array",
				"array elements are separated by one `,` or a newline; remove this one")
			p.off++
			continue
		}
		el := p.f.newNode()
		p.parseValue(el)
		p.f.at(el).next = p.f.count
		commaOK = true
		p.skipWS()
		if p.atLineEnd() {
			continue
		}
		switch p.src[p.off] {
		case ',', ']', '}':
			continue
		}
		if p.curlyAt(p.off) {
			p.curlyError(p.off)
		} else if p.src[p.off] == ';' {
			p.errAt(codeMissingComma, p.off, "`;` between array elements",
				"separate array elements with `,`; `;` only ends a map entry")
		} else {
			p.errAt(codeMissingComma, p.off, "missing `,` between array elements",
				"separate array elements with `,` or put each on its own line")
		}
		p.skip(true)
	}
	p.depth--
	p.openArrays--
	p.f.at(i).end = int32(p.off)
}

// parseBlock reads a block string: everything after "(" up to and including
// the newline before a ")" that stands alone at the start of a line.
func (p *parser) parseBlock(i int32) {
	start := p.off
	k := blockClose(p.src, start+1)
	if k < 0 {
		detail := "block strings close with `)` alone at the start of a line"
		if h := p.indentedClose(start + 1); h >= 0 {
			detail += "; the `)` on line " + strconv.Itoa(p.pos(h).Line) + " is indented or has text after it"
		}
		p.unterminatedDetail(codeUnterminatedBlock, p.rangeOf(start, start+1), "block string never closed", detail)
		p.setValue(i, BlockString, Paren, start, len(p.src), trimOf(1, 0))
		p.invalid(i)
		p.off = len(p.src)
		return
	}
	p.setValue(i, BlockString, Paren, start, k+1, trimOf(1, 1))
	p.off = k + 1
}

// indentedClose finds the first line after from that holds only ")" with
// blanks around it: the likely intended end of an unterminated block.
func (p *parser) indentedClose(from int) int {
	src := p.src
	for i := from; i < len(src); {
		j := bytes.IndexByte(src[i:], '\n')
		if j < 0 {
			return -1
		}
		i += j + 1
		e := lineEnd(src, i)
		t := bytes.TrimSpace(src[i:e])
		if len(t) == 1 && t[0] == ')' {
			return i + bytes.IndexByte(src[i:e], ')')
		}
	}
	return -1
}

func (p *parser) tooDeep(i int32, k Kind, open int) {
	p.report(hcl.DiagError, codeTooDeep, p.rangeOf(open, open+1), "maps and arrays nested more than "+strconv.Itoa(maxDepth)+" levels deep",
		"flatten the structure; the parser skips everything inside this bracket")
	p.skip(false)
	p.setValue(i, k, Bare, open, p.off, 0)
	p.invalid(i)
}

// quoted is a scanned quoted string: its text is src[ts:te], or s when
// decoded is set (it held escapes), and it ends just before end. ok is false
// when a key could not be read.
type quoted struct {
	ts, te, end int
	s           string
	decoded, ok bool
}

// scanQuoted reads the quoted string at p.off. For values it sets
// p.badString when it had to guess where a broken string ends.
func (p *parser) scanQuoted(key bool) quoted {
	src := p.src
	start := p.off
	q := src[start]
	p.badString = false
	p.buf = p.buf[:0]
	escaped := false
	seg := start + 1
	i := start + 1
	for ; i < len(src); i++ {
		c := src[i]
		if c == q {
			break
		}
		if c == '\n' {
			return p.brokenString(start, i, key)
		}
		if c != '\\' || q != '"' || i+1 >= len(src) {
			continue
		}
		var b byte
		n := 2
		switch src[i+1] {
		case 't':
			b = '\t'
		case 'n':
			b = '\n'
		case 'r':
			b = '\r'
		case '"':
			b = '"'
		case '\\':
			b = '\\'
		case 'x':
			h, okHex := unhex(src, i+2)
			if !okHex {
				p.errAt(codeUnknownEscape, i, "invalid `\\x` escape",
					"`\\x` takes exactly two hex digits, as in `\\x41`")
				p.badString = true
				continue
			}
			b, n = h, 4
		case '\n':
			continue // reported as a line break below
		default:
			if src[i+1] == '\r' && i+2 < len(src) && src[i+2] == '\n' {
				continue
			}
			p.report(hcl.DiagError, codeUnknownEscape, p.rangeOf(i, p.runeEnd(i+1)),
				"unknown escape `"+show("\\"+string(src[i+1:p.runeEnd(i+1)]))+"`",
				"double-quoted strings know only \\t \\n \\r \\\" \\\\ and \\xHH; write `\\\\` for a backslash, or use single quotes, which take backslashes literally")
			p.badString = true
			continue
		}
		p.buf = append(p.buf, src[seg:i]...)
		p.buf = append(p.buf, b)
		escaped = true
		i += n - 1
		seg = i + 1
	}
	if i >= len(src) {
		return p.brokenString(start, i, key)
	}
	r := quoted{ts: start + 1, te: i, end: i + 1, ok: true}
	if escaped {
		r.s, r.decoded = string(append(p.buf, src[seg:i]...)), true
	}
	p.checkERB(start+1, i)
	return r
}

// brokenString handles a quoted string that meets a newline or the end of
// the file at nl. If a closing quote later on makes a sensible end, the
// string is a multi-line string, which NATS accepts but we reject; otherwise
// the quote was never closed and the string is cut at the end of its line so
// that the next line parses normally.
func (p *parser) brokenString(start, nl int, key bool) quoted {
	src := p.src
	q := src[start]
	c := -1
	if nl < len(src) {
		c = p.closingQuote(q, nl)
	}
	if !key && c >= 0 {
		if p.sensibleEnd(c + 1) {
			p.report(hcl.DiagError, codeRawNewline, p.rangeOf(start, lineEnd(src, start)),
				"quoted string runs over a line break",
				"quoted strings end on the line they start; use a block string `(` … `)` for multi-line text, or `\\n`")
			p.badString = true
			// Escapes after the line break are not decoded: the value is
			// already known to be wrong, and it keeps this path simple.
			return quoted{ts: start + 1, te: c, end: c + 1, ok: true}
		}
	}
	e := lineEnd(src, start)
	if nl < e {
		e = nl
	}
	p.report(hcl.DiagError, codeUnterminatedString, p.rangeOf(start, e), "unterminated string",
		"close the string with `"+string(q)+"` on the same line")
	p.badString = true
	if c < 0 {
		// No quote closes it anywhere: the file was probably cut off
		// inside the string, and the maps still open are the same story.
		p.eofDone = true
	}
	return quoted{ts: start + 1, te: e, end: e}
}

// closingQuote finds the quote that would close a string still open at from.
func (p *parser) closingQuote(q byte, from int) int {
	src := p.src
	for i := from; i < len(src); i++ {
		switch src[i] {
		case q:
			return i
		case '\\':
			if q == '"' {
				i++
			}
		}
	}
	return -1
}

// sensibleEnd reports whether a value could end at i: only blanks, then a
// terminator, comment, newline, closer or the end of the file.
func (p *parser) sensibleEnd(i int) bool {
	src := p.src
	for i < len(src) && (src[i] == ' ' || src[i] == '\t') {
		i++
	}
	if i >= len(src) {
		return true
	}
	switch src[i] {
	case '\n', '\r', '#', ',', ';', '}', ']':
		return true
	}
	return false
}

func unhex(src []byte, i int) (byte, bool) {
	if i+2 > len(src) {
		return 0, false
	}
	var b byte
	for _, c := range src[i : i+2] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		b = b<<4 | c
	}
	return b, true
}

func (p *parser) curlyAt(i int) bool {
	if i >= len(p.src) || p.src[i] < utf8.RuneSelf {
		return false
	}
	r, _ := utf8.DecodeRune(p.src[i:])
	return isCurly(r)
}

func (p *parser) curlyError(i int) {
	p.errAt(codeCurlyQuote, i, "curly quote "+string(p.src[i:p.runeEnd(i)])+" where a straight quote belongs",
		"use straight quotes (\" or '); curly quotes usually come from pasting out of a word processor or a web page")
}

// scanCurly reports the curly quote at p.off and reads up to its partner on
// the same line, so that the text in between does not cause more errors. The
// text is src[ts:te]; end is just past the closing quote.
func (p *parser) scanCurly() (ts, te, end int) {
	start := p.off
	p.curlyError(start)
	from := p.runeEnd(start)
	e := lineEnd(p.src, start)
	for i := from; i < e; {
		if p.curlyAt(i) {
			return from, i, p.runeEnd(i)
		}
		i = p.runeEnd(i)
	}
	return from, e, e
}

// typeWord gives the bare word src[start:end] its type: boolean, date-time,
// integer, float, else string (DCONF.md §5.1), with warnings for words a
// reader, or NATS, would take for another type. Only the kind is kept: Value
// reads the number or time again from the word.
func (p *parser) typeWord(i int32, start, end int) {
	p.setValue(i, String, Bare, start, end, 0)
	w := p.src[start:end]
	switch c := w[0]; {
	case c == 't' || c == 'T' || c == 'f' || c == 'F':
		if bytes.EqualFold(w, []byte("true")) || bytes.EqualFold(w, []byte("false")) {
			p.f.at(i).kind = uint8(Bool)
			return
		}
	case c == 'y' || c == 'Y' || c == 'n' || c == 'N' || c == 'o' || c == 'O':
		if len(w) <= 3 && (bytes.EqualFold(w, []byte("yes")) || bytes.EqualFold(w, []byte("no")) ||
			bytes.EqualFold(w, []byte("on")) || bytes.EqualFold(w, []byte("off"))) {
			p.report(hcl.DiagWarning, codeAmbiguousBool, p.rangeOf(start, end), "ambiguous boolean-like word `"+string(w)+"`",
				"it stays the string \""+string(w)+"\", but other parsers read it as a boolean; quote it, or use true/false")
		}
	case c == '-' || c == '.' || ('0' <= c && c <= '9'):
		p.typeNumber(i, start, end)
	}
}

const dateTimeLayout = "2006-01-02T15:04:05Z"

func (p *parser) typeNumber(i int32, start, end int) {
	w := p.src[start:end]
	if isDateLike(w) {
		if len(w) == len(dateTimeLayout) {
			if _, err := time.Parse(dateTimeLayout, string(w)); err == nil {
				p.f.at(i).kind = uint8(DateTime)
				return
			}
		}
		p.report(hcl.DiagWarning, codeDateLike, p.rangeOf(start, end), "date-like word `"+show(string(w))+"` is a string",
			"only YYYY-MM-DDTHH:MM:SSZ is a date-time; quote the value to make it a string on purpose")
		return
	}
	digits := w
	if digits[0] == '-' {
		digits = digits[1:]
	}
	intPart := leadingDigits(digits)
	switch {
	case intPart == len(digits) && intPart > 0:
		// Up to 18 digits always fit in an int64; only longer ones need
		// the exact check.
		if intPart > 18 {
			if _, err := strconv.ParseInt(string(w), 10, 64); err != nil {
				p.report(hcl.DiagError, codeIntOverflow, p.rangeOf(start, end), "integer `"+show(string(w))+"` out of range",
					"integers are signed 64-bit, from -9223372036854775808 to 9223372036854775807; quote the value to keep it as a string")
				p.invalid(i)
				return
			}
		}
		p.f.at(i).kind = uint8(Int)
	case intPart < len(digits) && digits[intPart] == '.':
		frac := leadingDigits(digits[intPart+1:])
		if intPart+1+frac != len(digits) {
			return // 10.0.0.1, 1.2.3-beta: strings
		}
		if intPart == 0 || frac == 0 {
			if intPart+frac > 0 {
				p.report(hcl.DiagWarning, codeAmbiguousNumber, p.rangeOf(start, end), "number-like word `"+show(string(w))+"` is a string",
					"write a float with digits on both sides of the dot, as in 0.5, or quote the value")
			}
			return
		}
		// Digits and one dot are a float in range unless there are
		// hundreds of them.
		if intPart > 300 {
			if _, err := strconv.ParseFloat(string(w), 64); err != nil {
				return
			}
		}
		p.f.at(i).kind = uint8(Float)
	}
}

func leadingDigits(s []byte) int {
	i := 0
	for i < len(s) && '0' <= s[i] && s[i] <= '9' {
		i++
	}
	return i
}

// isDateLike reports a word that starts like YYYY-MM-DD.
func isDateLike(w []byte) bool {
	if len(w) < 10 || w[4] != '-' || w[7] != '-' {
		return false
	}
	for _, i := range [...]int{0, 1, 2, 3, 5, 6, 8, 9} {
		if w[i] < '0' || w[i] > '9' {
			return false
		}
	}
	return true
}

// checkERB stops the parse at an ERB tag in src[off:end].
func (p *parser) checkERB(off, end int) {
	if !p.erbCheck {
		return
	}
	i := bytes.Index(p.src[off:end], []byte("<%"))
	if i < 0 {
		return
	}
	p.report(hcl.DiagError, codeERB, p.rangeOf(off+i, off+i+2), "this is an ERB template, not a rendered cluster.conf",
		"render the template first (for example `erb cluster.conf.erb > cluster.conf`) and validate the result; nothing after this point was checked")
	p.stopped = true
}

// unterminated reports a construct still open at the end of the file, once:
// the maps around it are open for the same reason.
func (p *parser) unterminated(code string, open hcl.Range, what string) {
	p.unterminatedDetail(code, open, what+" never closed",
		"add the missing `"+map[string]string{"map": "}", "array": "]"}[what]+"`; the file ends while this "+what+" is still open")
}

func (p *parser) unterminatedDetail(code string, open hcl.Range, summary, detail string) {
	if p.eofDone {
		return
	}
	p.eofDone = true
	eof := p.pos(len(p.src))
	p.reportRelated(code, open, summary, detail, []Related{{
		Range:   hcl.Range{Filename: p.filename, Start: eof, End: eof},
		Message: "end of file",
	}})
}

func (p *parser) unexpected(what string) {
	if p.curlyAt(p.off) {
		p.curlyError(p.off)
		return
	}
	ch := string(p.src[p.off:p.runeEnd(p.off)])
	name := "`" + ch + "`"
	if ch[0] < ' ' || ch[0] == 0x7f {
		name = "control character " + runeName(rune(ch[0]))
	}
	detail := what + " here"
	switch ch {
	case "{", "[":
		detail = "a map or array needs a key in front of it: `name " + ch + " … `"
	case ")":
		detail = "a block string ends with `)` alone at the start of a line"
	case ":", "=":
		detail = "a key goes before the `" + ch + "`"
	}
	p.errAt(codeUnexpectedChar, p.off, "unexpected "+name+"; "+what, detail)
}

// errAt reports an error at the character at off.
func (p *parser) errAt(code string, off int, summary, detail string) {
	if p.stopped {
		return
	}
	p.report(hcl.DiagError, code, p.rangeOf(off, p.runeEnd(off)), summary, detail)
}

func (p *parser) report(sev hcl.DiagnosticSeverity, code string, r hcl.Range, summary, detail string) {
	p.reportRelated0(sev, code, r, summary, detail, nil)
}

func (p *parser) reportRelated(code string, r hcl.Range, summary, detail string, rel []Related) {
	p.reportRelated0(hcl.DiagError, code, r, summary, detail, rel)
}

func (p *parser) reportRelated0(sev hcl.DiagnosticSeverity, code string, r hcl.Range, summary, detail string, rel []Related) {
	if p.stopped && code != codeERB {
		return
	}
	if sev == hcl.DiagError && code != codeERB {
		// One error per line: a second one is almost always a consequence
		// of the first.
		if !p.claimLine(r.Start.Line) {
			return
		}
	}
	d := &struct {
		hcl.Diagnostic
		subj  hcl.Range
		extra Extra
	}{subj: r, extra: Extra{Code: code, Related: rel}}
	d.Diagnostic = hcl.Diagnostic{
		Severity: sev,
		Summary:  summary,
		Detail:   detail,
		Subject:  &d.subj,
		Extra:    &d.extra,
	}
	p.diags = append(p.diags, &d.Diagnostic)
}

// claimLine records an error on line, unless the line has one already.
// Errors come almost always in line order, so errLines stays sorted by a
// plain append and the rare late one (an unclosed map at its "{") is a
// binary search.
func (p *parser) claimLine(line int) bool {
	n := len(p.errLines)
	if n == 0 || p.errLines[n-1] < line {
		p.errLines = append(p.errLines, line)
		return true
	}
	i := sort.SearchInts(p.errLines, line)
	if p.errLines[i] == line {
		return false
	}
	p.errLines = slices.Insert(p.errLines, i, line)
	return true
}

// at formats the position of off for messages.
func (p *parser) at(off int) string {
	q := p.pos(off)
	return "line " + strconv.Itoa(q.Line) + ", column " + strconv.Itoa(q.Column)
}

// placeholder makes node i an empty, invalid string at off: the value the
// parser stands in with after an error.
func (p *parser) placeholder(i int32, off int) {
	p.setValue(i, String, Bare, off, off, 0)
	p.invalid(i)
}

// show makes source text fit a one-line summary: control characters escaped,
// long text cut.
func show(s string) string {
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	for _, r := range s {
		if r < ' ' || r == 0x7f || r == utf8.RuneError {
			q := strconv.Quote(s)
			return q[1 : len(q)-1]
		}
	}
	return s
}
