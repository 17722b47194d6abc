package consulkv

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/apcera/deployhook/migrate"
)

// decodeKVList decodes the body of Consul's KV list (GET /v1/kv/<prefix>?recurse)
// as it arrives and calls fn for every element, in order.
//
// It produces exactly what encoding/json's Unmarshal produces for the same
// input into []struct{Key string; Flags uint64; Value []byte; ModifyIndex
// uint64; Session string}, and fails wherever Unmarshal fails, with the
// differences a stream implies: the pairs before the fault have been handed
// to fn by then, and a truncated body is reported as io.ErrUnexpectedEOF (a
// connection cut mid-body is worth retrying). The rules it follows are
// encoding/json's: field names match case-insensitively (Unicode simple
// folding), the last of duplicate fields wins, null leaves a string or
// integer field as it was and empties Value, a null element is a zero pair,
// unknown fields may hold any JSON value (nesting limited to 10000 levels in
// all), strings are unquoted with invalid UTF-8 and lone surrogates coerced to
// U+FFFD, Value is standard padded base64 (a CR or LF in it is ignored) or an
// array of byte values, the integers are plain decimal within uint64, and
// nothing but whitespace may follow the array. The top-level null is an empty
// list.
//
// fn's error is returned as is. The pair is only valid during fn: the Pair
// struct is reused. Key and Session are fresh strings; Value points into
// memory carved from 32 KiB slabs that are never written again once fn has
// seen a value, so a caller that keeps a copy of the Pair keeps a correct
// value (TestScanPairsMatchesList does), and the allocations stay at about
// one (the key) per pair; a value over 4 KiB gets an allocation of its own.
// Memory is bounded by the largest token: a string must sit whole in the
// read buffer.
func decodeKVList(r io.Reader, fn func(*migrate.Pair) error) error {
	d := kvDecoder{r: r, buf: make([]byte, kvReadSize)}
	return d.decode(fn)
}

const (
	kvReadSize      = 64 << 10 // the read buffer, grown for a longer token
	kvSlabSize      = 32 << 10 // values are carved from slabs of this size
	kvSlabMaxValue  = kvSlabSize / 8
	kvMaxDepth      = 10000 // encoding/json's maxNestingDepth
	kvElementDepth  = 2     // the list, the element
	kvErrorContext  = 16    // bytes of input quoted in a syntax error
	lsb             = 0x0101010101010101
	msb             = 0x8080808080808080
	fieldUnknown    = 0
	fieldKey        = 1
	fieldFlags      = 2
	fieldValue      = 3
	fieldModifyIdx  = 4
	fieldSession    = 5
	fieldNamesCount = 6
)

// kvFieldNames are the struct's field names, by field.
var kvFieldNames = [fieldNamesCount]string{"", "Key", "Flags", "Value", "ModifyIndex", "Session"}

// kvFoldedNames are the names folded as encoding/json folds them.
var kvFoldedNames = [fieldNamesCount]string{"", "KEY", "FLAGS", "VALUE", "MODIFYINDEX", "SESSION"}

// emptyValue is the non-nil empty slice encoding/json makes for "Value":[].
var emptyValue = []byte{}

// kvSyntaxError is input that is not JSON, or not the list's shape.
type kvSyntaxError struct {
	msg    string
	Offset int64 // of the offending byte in the body
}

func (e *kvSyntaxError) Error() string {
	return fmt.Sprintf("%s (at byte %d)", e.msg, e.Offset)
}

// kvDecoder buffers its input itself rather than through a bufio.Reader:
// a string is scanned and decoded in place, so it must sit whole in the
// buffer, which therefore grows to the longest one.
type kvDecoder struct {
	r        io.Reader
	buf      []byte // buf[pos:end] is read and not yet consumed
	pos, end int
	rerr     error // the reader's error, io.EOF at the end; sticky
	base     int64 // input offset of buf[0]

	pair  migrate.Pair
	str   []byte // unquoted strings
	fold  []byte // folded field names
	slab  []byte // unused value memory
	stack []bool // containers open in a skipped value; true for an object
}

func (d *kvDecoder) decode(fn func(*migrate.Pair) error) error {
	c, err := d.next()
	if err != nil {
		return err
	}
	switch c {
	case 'n':
		if err := d.literal("null"); err != nil {
			return err
		}
		return d.atEnd()
	case '[':
		d.pos++
	default:
		// A valid value of another type is an UnmarshalTypeError, anything
		// else a syntax error: an error either way.
		return d.syntaxError("the list is not an array")
	}
	c, err = d.next()
	if err != nil {
		return err
	}
	if c == ']' {
		d.pos++
		return d.atEnd()
	}
	for {
		switch c {
		case '{':
			d.pos++
			if err := d.object(); err != nil {
				return err
			}
		case 'n':
			if err := d.literal("null"); err != nil {
				return err
			}
			d.pair = migrate.Pair{}
		default:
			return d.syntaxError("a list element is not an object")
		}
		if err := fn(&d.pair); err != nil {
			return err
		}
		c, err = d.next()
		if err != nil {
			return err
		}
		d.pos++
		switch c {
		case ',':
		case ']':
			return d.atEnd()
		default:
			d.pos--
			return d.syntaxError("after array element")
		}
		if c, err = d.next(); err != nil {
			return err
		}
	}
}

// object decodes one element into d.pair, after its '{'.
func (d *kvDecoder) object() error {
	var (
		key, session       string
		flags, modifyIndex uint64
		value              []byte // as reflect would hold it: its cap matters
	)
	c, err := d.next()
	if err != nil {
		return err
	}
	if c == '}' {
		d.pos++
	} else {
		for {
			if c != '"' {
				return d.syntaxError("looking for beginning of object key string")
			}
			raw, plain, err := d.scanString()
			if err != nil {
				return err
			}
			field := d.field(raw, plain)
			if c, err = d.next(); err != nil {
				return err
			}
			if c != ':' {
				return d.syntaxError("after object key")
			}
			d.pos++
			if c, err = d.next(); err != nil {
				return err
			}
			switch field {
			case fieldKey, fieldSession:
				switch c {
				case '"':
					raw, plain, err := d.scanString()
					if err != nil {
						return err
					}
					if !plain {
						raw = d.unquote(raw)
					}
					if field == fieldKey {
						key = string(raw)
					} else {
						session = string(raw)
					}
				case 'n':
					if err := d.literal("null"); err != nil {
						return err
					}
				default:
					return d.typeError(field, c)
				}
			case fieldFlags, fieldModifyIdx:
				switch {
				case c == '-' || '0' <= c && c <= '9':
					raw, err := d.number()
					if err != nil {
						return err
					}
					n, ok := parseUint(raw, 64)
					if !ok {
						return d.numberError(field, raw)
					}
					if field == fieldFlags {
						flags = n
					} else {
						modifyIndex = n
					}
				case c == 'n':
					if err := d.literal("null"); err != nil {
						return err
					}
				default:
					return d.typeError(field, c)
				}
			case fieldValue:
				switch c {
				case '"':
					if value, err = d.base64(); err != nil {
						return err
					}
				case 'n':
					if err := d.literal("null"); err != nil {
						return err
					}
					value = nil
				case '[':
					d.pos++
					if value, err = d.byteArray(value); err != nil {
						return err
					}
				default:
					return d.typeError(field, c)
				}
			default:
				if err := d.skip(kvElementDepth); err != nil {
					return err
				}
			}
			if c, err = d.next(); err != nil {
				return err
			}
			d.pos++
			if c == '}' {
				break
			}
			if c != ',' {
				d.pos--
				return d.syntaxError("after object key:value pair")
			}
			if c, err = d.next(); err != nil {
				return err
			}
		}
	}
	if value != nil {
		value = value[:len(value):len(value)]
	}
	d.pair = migrate.Pair{Key: key, Value: value, Flags: flags, ModifyIndex: modifyIndex, Session: session}
	return nil
}

// field is the struct field a key names, as encoding/json matches it:
// exactly, else case-insensitively.
func (d *kvDecoder) field(raw []byte, plain bool) int {
	if plain {
		// Without an escape or a byte over 0x7f, folding keeps the length.
		switch len(raw) {
		case 3:
			return d.fieldFold(raw, fieldKey)
		case 5:
			if f := d.fieldFold(raw, fieldFlags); f != fieldUnknown {
				return f
			}
			return d.fieldFold(raw, fieldValue)
		case 7:
			return d.fieldFold(raw, fieldSession)
		case 11:
			return d.fieldFold(raw, fieldModifyIdx)
		}
		return fieldUnknown
	}
	name := d.unquote(raw)
	d.fold = appendFoldedName(d.fold[:0], name)
	for f := fieldKey; f < fieldNamesCount; f++ {
		if string(d.fold) == kvFoldedNames[f] {
			return f
		}
	}
	return fieldUnknown
}

// fieldFold returns f when the ASCII name is f's, any case, else fieldUnknown.
func (d *kvDecoder) fieldFold(name []byte, f int) int {
	if string(name) == kvFieldNames[f] {
		return f
	}
	want := kvFoldedNames[f]
	if len(name) != len(want) {
		return fieldUnknown
	}
	for i, c := range name {
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		if c != want[i] {
			return fieldUnknown
		}
	}
	return f
}

// appendFoldedName is encoding/json's: ASCII upper case, else the smallest
// rune of the simple fold orbit.
func appendFoldedName(out, in []byte) []byte {
	for i := 0; i < len(in); {
		if c := in[i]; c < utf8.RuneSelf {
			if 'a' <= c && c <= 'z' {
				c -= 'a' - 'A'
			}
			out = append(out, c)
			i++
			continue
		}
		r, n := utf8.DecodeRune(in[i:])
		out = utf8.AppendRune(out, foldRune(r))
		i += n
	}
	return out
}

func foldRune(r rune) rune {
	for {
		r2 := unicode.SimpleFold(r)
		if r2 <= r {
			return r2
		}
		r = r2
	}
}

// base64 decodes a Value string into fresh slab memory. The result has the
// capacity encoding/json's would have, zeroed beyond its length: a later
// "Value":[null] in the same object reads it.
func (d *kvDecoder) base64() ([]byte, error) {
	// The fast path, for a string whole in the buffer: find its end (a
	// quote after a backslash makes the decoding fail) and decode it, which
	// leaves nothing to check but a CR or LF, that JSON does not allow raw
	// and the decoding skips.
	if q := bytes.IndexByte(d.buf[d.pos+1:d.end], '"'); q >= 0 {
		raw := d.buf[d.pos+1 : d.pos+1+q]
		n := base64.StdEncoding.DecodedLen(len(raw))
		dst := d.alloc(n)
		m, err := base64.StdEncoding.Decode(dst, raw)
		if err == nil && bytes.IndexByte(raw, '\n') < 0 && bytes.IndexByte(raw, '\r') < 0 {
			d.pos += q + 2
			clear(dst[m:])
			return dst[:m], nil
		}
		// Not plain base64: the slow path says why, or decodes escapes.
	}
	start := d.off()
	raw, plain, err := d.scanString()
	if err != nil {
		return nil, err
	}
	if !plain {
		raw = d.unquote(raw)
	}
	n := base64.StdEncoding.DecodedLen(len(raw))
	dst := d.alloc(n)
	m, err := base64.StdEncoding.Decode(dst, raw)
	if err != nil {
		return nil, &kvSyntaxError{msg: "Value: illegal base64 data", Offset: start}
	}
	clear(dst[m:])
	return dst[:m], nil
}

// alloc returns n bytes of value memory that nothing else will write.
func (d *kvDecoder) alloc(n int) []byte {
	if n == 0 {
		return emptyValue
	}
	if n > len(d.slab) {
		if n > kvSlabMaxValue {
			return make([]byte, n)
		}
		d.slab = make([]byte, kvSlabSize)
	}
	b := d.slab[:n:n]
	d.slab = d.slab[n:]
	return b
}

// byteArray decodes "Value":[...] after the '[' as encoding/json decodes an
// array into an existing []byte v: in place up to its capacity, growing as
// reflect.Value.Grow does, a null element leaving the byte as it was.
func (d *kvDecoder) byteArray(v []byte) ([]byte, error) {
	i := 0
	c, err := d.next()
	if err != nil {
		return nil, err
	}
	if c == ']' {
		d.pos++
		return emptyValue, nil
	}
	for {
		if i >= cap(v) {
			v = append(v[:cap(v)], 0)[:len(v)] // growslice, as reflect's Grow
		}
		if i >= len(v) {
			v = v[:i+1]
		}
		switch {
		case c == 'n':
			if err := d.literal("null"); err != nil {
				return nil, err
			}
		case c == '-' || '0' <= c && c <= '9':
			raw, err := d.number()
			if err != nil {
				return nil, err
			}
			n, ok := parseUint(raw, 8)
			if !ok {
				return nil, d.numberError(fieldValue, raw)
			}
			v[i] = byte(n)
		default:
			return nil, d.typeError(fieldValue, c)
		}
		i++
		if c, err = d.next(); err != nil {
			return nil, err
		}
		d.pos++
		if c == ']' {
			break
		}
		if c != ',' {
			d.pos--
			return nil, d.syntaxError("after array element")
		}
		if c, err = d.next(); err != nil {
			return nil, err
		}
	}
	return v[:i], nil
}

// parseUint is strconv.ParseUint(raw, 10, 64) with the OverflowUint check
// of a bits-wide field, on a number that scanned as JSON.
func parseUint(raw []byte, bits uint) (uint64, bool) {
	if len(raw) == 0 || len(raw) > 20 {
		return 0, false
	}
	var n uint64
	for _, c := range raw {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if n > (1<<64-1-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	if bits < 64 && n>>bits != 0 {
		return 0, false
	}
	return n, true
}

// skip consumes one JSON value of any kind, depth containers deep.
func (d *kvDecoder) skip(depth int) error {
	// Scalars first: the unknown fields of Consul's pairs are numbers and
	// strings.
	switch c := d.buf[d.pos]; {
	case c == '"':
		_, _, err := d.scanString()
		return err
	case c == '-' || '0' <= c && c <= '9':
		_, err := d.number()
		return err
	}
	d.stack = d.stack[:0]
	return d.skipNested(depth)
}

// skipNested is skip's general case, d.stack its open containers.
func (d *kvDecoder) skipNested(depth int) error {
	for {
		// A value.
		c, err := d.next()
		if err != nil {
			return err
		}
		switch {
		case c == '{' || c == '[':
			if depth+len(d.stack)+1 > kvMaxDepth {
				return d.syntaxError("exceeded max depth")
			}
			d.pos++
			d.stack = append(d.stack, c == '{')
			e, err := d.next()
			if err != nil {
				return err
			}
			if c == '{' && e == '}' || c == '[' && e == ']' {
				d.pos++
				d.stack = d.stack[:len(d.stack)-1]
				break
			}
			if c == '{' {
				if err := d.key(); err != nil {
					return err
				}
			}
			continue
		case c == '"':
			if _, _, err := d.scanString(); err != nil {
				return err
			}
		case c == '-' || '0' <= c && c <= '9':
			if _, err := d.number(); err != nil {
				return err
			}
		case c == 't':
			err = d.literal("true")
		case c == 'f':
			err = d.literal("false")
		case c == 'n':
			err = d.literal("null")
		default:
			return d.syntaxError("looking for beginning of value")
		}
		if err != nil {
			return err
		}
		// What follows the value: close containers until a comma.
		for {
			if len(d.stack) == 0 {
				return nil
			}
			c, err := d.next()
			if err != nil {
				return err
			}
			d.pos++
			obj := d.stack[len(d.stack)-1]
			if c == ',' {
				if obj {
					if err := d.key(); err != nil {
						return err
					}
				}
				break
			}
			if obj && c == '}' || !obj && c == ']' {
				d.stack = d.stack[:len(d.stack)-1]
				continue
			}
			d.pos--
			if obj {
				return d.syntaxError("after object key:value pair")
			}
			return d.syntaxError("after array element")
		}
	}
}

// key consumes an object key and its colon.
func (d *kvDecoder) key() error {
	c, err := d.next()
	if err != nil {
		return err
	}
	if c != '"' {
		return d.syntaxError("looking for beginning of object key string")
	}
	if _, _, err := d.scanString(); err != nil {
		return err
	}
	if c, err = d.next(); err != nil {
		return err
	}
	if c != ':' {
		return d.syntaxError("after object key")
	}
	d.pos++
	return nil
}

// next skips whitespace and returns the next byte, not consuming it.
func (d *kvDecoder) next() (byte, error) {
	if d.pos < d.end {
		if c := d.buf[d.pos]; c > ' ' {
			return c, nil
		}
	}
	return d.nextSlow()
}

func (d *kvDecoder) nextSlow() (byte, error) {
	for {
		for d.pos < d.end {
			c := d.buf[d.pos]
			if c > ' ' || !(c == ' ' || c == '\t' || c == '\n' || c == '\r') {
				return c, nil
			}
			d.pos++
		}
		if !d.more() {
			return 0, d.eof()
		}
	}
}

// atEnd checks that only whitespace follows the list.
func (d *kvDecoder) atEnd() error {
	if _, err := d.next(); err != nil {
		if d.rerr == io.EOF {
			return nil
		}
		return err
	}
	return d.syntaxError("after top-level value")
}

// literal consumes lit (true, false, null), whose first byte is next.
func (d *kvDecoder) literal(lit string) error {
	for d.end-d.pos < len(lit) {
		if !d.more() {
			if string(d.buf[d.pos:d.end]) == lit[:d.end-d.pos] {
				return d.eof()
			}
			break
		}
	}
	for i := 0; i < len(lit) && d.pos+i < d.end; i++ {
		if d.buf[d.pos+i] != lit[i] {
			d.pos += i
			return d.syntaxError("in literal " + lit)
		}
	}
	d.pos += len(lit)
	return nil
}

// at returns the byte k bytes past pos, reading more as needed; false at
// the end of the input.
func (d *kvDecoder) at(k int) (byte, bool) {
	for d.pos+k >= d.end {
		if !d.more() {
			return 0, false
		}
	}
	return d.buf[d.pos+k], true
}

// number consumes a JSON number and returns its text, valid until the next
// read.
func (d *kvDecoder) number() ([]byte, error) {
	// The fast path: an integer, and the byte after it, in the buffer.
	if buf := d.buf[d.pos:d.end]; len(buf) > 0 {
		k := 0
		if buf[0] == '-' {
			k++
		}
		if k < len(buf) && '1' <= buf[k] && buf[k] <= '9' {
			k++
			for k < len(buf) && '0' <= buf[k] && buf[k] <= '9' {
				k++
			}
		} else if k < len(buf) && buf[k] == '0' {
			k++
		} else {
			k = len(buf)
		}
		if k < len(buf) && buf[k] != '.' && buf[k] != 'e' && buf[k] != 'E' {
			d.pos += k
			return buf[:k], nil
		}
	}
	k := 0
	c, ok := d.at(k)
	if c == '-' {
		k++
		if c, ok = d.at(k); !ok {
			return nil, d.eof()
		}
	}
	switch {
	case c == '0':
		k++
	case '1' <= c && c <= '9':
		k++
		for c, ok = d.at(k); ok && '0' <= c && c <= '9'; c, ok = d.at(k) {
			k++
		}
	default:
		d.pos += k
		return nil, d.syntaxError("in numeric literal")
	}
	if c, ok = d.at(k); ok && c == '.' {
		k++
		if k, ok = d.digits(k); !ok {
			return nil, d.eofOr(k, "after decimal point in numeric literal")
		}
	}
	if c, ok = d.at(k); ok && (c == 'e' || c == 'E') {
		k++
		if c, ok = d.at(k); ok && (c == '+' || c == '-') {
			k++
		}
		if k, ok = d.digits(k); !ok {
			return nil, d.eofOr(k, "in exponent of numeric literal")
		}
	}
	if d.rerr != nil && d.rerr != io.EOF {
		return nil, d.rerr
	}
	raw := d.buf[d.pos : d.pos+k]
	d.pos += k
	return raw, nil
}

// digits consumes one or more digits from k; false when there is none.
func (d *kvDecoder) digits(k int) (int, bool) {
	start := k
	for c, ok := d.at(k); ok && '0' <= c && c <= '9'; c, ok = d.at(k) {
		k++
	}
	return k, k > start
}

// eofOr is the error for a missing byte at k: the end of the input, or a
// syntax error.
func (d *kvDecoder) eofOr(k int, msg string) error {
	if _, ok := d.at(k); !ok {
		return d.eof()
	}
	d.pos += k
	return d.syntaxError(msg)
}

// scanString consumes the string whose quote is next and returns its raw content,
// valid until the next read. plain means that the content is its own
// unquoting: no escape, nothing over 0x7f.
func (d *kvDecoder) scanString() (raw []byte, plain bool, err error) {
	// The fast path: a plain string whole in the buffer.
	if rest := d.buf[d.pos+1 : d.end]; len(rest) > 0 {
		if q := bytes.IndexByte(rest, '"'); q >= 0 && plainLen(rest[:q]) == q {
			d.pos += q + 2
			return rest[:q], true, nil
		}
	}
	plain = true
	k := 1 // past the quote
	for {
		buf := d.buf[d.pos:d.end]
		// Eight bytes at a time until one of them is special: a quote, a
		// backslash, a control character or a byte over 0x7f.
		for k+8 <= len(buf) {
			x := binary.LittleEndian.Uint64(buf[k:])
			q := x ^ (lsb * '"')
			b := x ^ (lsb * '\\')
			if ((x-lsb*0x20)&^x|(q-lsb)&^q|(b-lsb)&^b|x)&msb != 0 {
				break
			}
			k += 8
		}
		for k < len(buf) {
			c := buf[k]
			switch {
			case c == '"':
				d.pos += k + 1
				return buf[1:k], plain, nil
			case c == '\\':
				plain = false
				if k+1 >= len(buf) {
					goto more
				}
				switch buf[k+1] {
				case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
					k += 2
				case 'u':
					if k+6 > len(buf) {
						goto more
					}
					for _, h := range buf[k+2 : k+6] {
						if !('0' <= h && h <= '9' || 'a' <= h && h <= 'f' || 'A' <= h && h <= 'F') {
							d.pos += k
							return nil, false, d.syntaxError("in \\u hexadecimal character escape")
						}
					}
					k += 6
				default:
					d.pos += k + 1
					return nil, false, d.syntaxError("in string escape code")
				}
			case c < ' ':
				d.pos += k
				return nil, false, d.syntaxError("in string literal")
			default:
				if c >= utf8.RuneSelf {
					plain = false
				}
				k++
			}
			if k+8 <= len(buf) && buf[k] != '\\' {
				break // back to eight at a time
			}
		}
		if k < len(buf) {
			continue
		}
	more:
		if !d.more() {
			// An escape cut by the end of the input is still checked: a bad
			// one is a syntax error, as in encoding/json.
			if err := d.badEscapeAtEnd(k); err != nil {
				return nil, false, err
			}
			return nil, false, d.eof()
		}
	}
}

// plainLen is the length of b's prefix without a backslash, a control
// character or a byte over 0x7f.
func plainLen(b []byte) int {
	k := 0
	for ; k+8 <= len(b); k += 8 {
		x := binary.LittleEndian.Uint64(b[k:])
		bs := x ^ (lsb * '\\')
		if ((x-lsb*0x20)&^x|(bs-lsb)&^bs|x)&msb != 0 {
			break
		}
	}
	for ; k < len(b); k++ {
		if c := b[k]; c < ' ' || c == '\\' || c >= utf8.RuneSelf {
			break
		}
	}
	return k
}

// badEscapeAtEnd is the syntax error in an escape cut short by the end of
// the input at d.buf[d.pos+k:d.end], if it has one.
func (d *kvDecoder) badEscapeAtEnd(k int) error {
	rest := d.buf[d.pos+k : d.end]
	if len(rest) < 2 || rest[0] != '\\' {
		return nil
	}
	switch rest[1] {
	case 'u':
		for i, h := range rest[2:] {
			if !('0' <= h && h <= '9' || 'a' <= h && h <= 'f' || 'A' <= h && h <= 'F') {
				d.pos += k + 2 + i
				return d.syntaxError("in \\u hexadecimal character escape")
			}
		}
		return nil
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		return nil
	}
	d.pos += k + 1
	return d.syntaxError("in string escape code")
}

// unquote returns the unquoting of raw, a string's content that scanned as
// JSON, as encoding/json's unquoteBytes does it, in d.str.
func (d *kvDecoder) unquote(raw []byte) []byte {
	b := d.str[:0]
	for r := 0; r < len(raw); {
		switch c := raw[r]; {
		case c == '\\':
			switch e := raw[r+1]; e {
			case 'b':
				b = append(b, '\b')
			case 'f':
				b = append(b, '\f')
			case 'n':
				b = append(b, '\n')
			case 'r':
				b = append(b, '\r')
			case 't':
				b = append(b, '\t')
			case 'u':
				rr := getu4(raw[r:])
				r += 6
				if utf16.IsSurrogate(rr) {
					if dec := utf16.DecodeRune(rr, getu4(raw[r:])); dec != unicode.ReplacementChar {
						r += 6
						b = utf8.AppendRune(b, dec)
						continue
					}
					rr = unicode.ReplacementChar
				}
				b = utf8.AppendRune(b, rr)
				continue
			default: // " \ /
				b = append(b, e)
			}
			r += 2
		case c < utf8.RuneSelf:
			b = append(b, c)
			r++
		default:
			rr, size := utf8.DecodeRune(raw[r:])
			r += size
			b = utf8.AppendRune(b, rr)
		}
	}
	d.str = b
	return b
}

// getu4 decodes \uXXXX at the start of s, or returns -1.
func getu4(s []byte) rune {
	if len(s) < 6 || s[0] != '\\' || s[1] != 'u' {
		return -1
	}
	var r rune
	for _, c := range s[2:6] {
		switch {
		case '0' <= c && c <= '9':
			c = c - '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r*16 + rune(c)
	}
	return r
}

// more reads into the buffer, keeping buf[pos:end] (moved to the front) and
// growing the buffer when it is full. It returns false, with d.rerr set,
// when the input has ended or failed.
func (d *kvDecoder) more() bool {
	if d.rerr != nil {
		return false
	}
	if d.pos > 0 {
		d.base += int64(d.pos)
		d.end = copy(d.buf, d.buf[d.pos:d.end])
		d.pos = 0
	}
	if d.end == len(d.buf) {
		d.buf = append(d.buf, make([]byte, len(d.buf))...)
	}
	for range 100 {
		n, err := d.r.Read(d.buf[d.end:])
		d.end += n
		if err != nil {
			d.rerr = err
			return n > 0
		}
		if n > 0 {
			return true
		}
	}
	d.rerr = io.ErrNoProgress
	return false
}

// eof is the error for input that ends (or fails) before the list does.
func (d *kvDecoder) eof() error {
	if d.rerr == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return d.rerr
}

func (d *kvDecoder) off() int64 { return d.base + int64(d.pos) }

func (d *kvDecoder) syntaxError(what string) error {
	near := d.buf[d.pos:min(d.end, d.pos+kvErrorContext)]
	return &kvSyntaxError{msg: fmt.Sprintf("invalid JSON %s near %q", what, near), Offset: d.off()}
}

func (d *kvDecoder) typeError(field int, c byte) error {
	var kind string
	switch {
	case c == '"':
		kind = "string"
	case c == '{':
		kind = "object"
	case c == '[':
		kind = "array"
	case c == 't' || c == 'f':
		kind = "bool"
	case c == '-' || '0' <= c && c <= '9':
		kind = "number"
	default:
		return d.syntaxError("looking for beginning of value")
	}
	return &kvSyntaxError{msg: fmt.Sprintf("cannot decode a JSON %s into %s", kind, kvFieldNames[field]), Offset: d.off()}
}

func (d *kvDecoder) numberError(field int, raw []byte) error {
	return &kvSyntaxError{msg: fmt.Sprintf("%s: %q is not an unsigned integer in range", kvFieldNames[field], raw), Offset: d.off() - int64(len(raw))}
}
