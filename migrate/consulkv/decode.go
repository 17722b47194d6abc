package consulkv

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"unicode/utf8"

	"github.com/apcera/deployhook/migrate"
)

// decodeKVList decodes the body of Consul's KV listing (GET
// /v1/kv/<prefix>?recurse) as it arrives and calls fn for every pair, in
// order, so that memory stays constant however many pairs the body holds.
//
// It is strict: it accepts what Consul writes, encoding/json's encoding of
// KV entries (an array of objects with the fields LockIndex, Key, Flags,
// Value, Session, Namespace, Partition, CreateIndex and ModifyIndex, named
// exactly so; unsigned integers; strings; Value base64 or null), and fails
// with errMalformed on anything else. What it accepts, encoding/json
// decodes to the same pairs (FuzzKVList). A body cut short is
// io.ErrUnexpectedEOF; fn's error and a read error come back as they are.
// The pair, its Value included, is only valid during fn.
func decodeKVList(r io.Reader, fn func(*migrate.Pair) error) error {
	d := &listDecoder{r: bufio.NewReaderSize(r, 32<<10), val: make([]byte, 0, 512)}
	return d.list(fn)
}

// errMalformed is a listing that is not what Consul writes.
var errMalformed = errors.New("malformed KV listing")

type listDecoder struct {
	r    *bufio.Reader
	off  int64  // bytes consumed
	raw  []byte // the current string, unquoted but not unescaped
	val  []byte // the current Value, decoded
	pair migrate.Pair
}

// errorf is errMalformed at the byte just read.
func (d *listDecoder) errorf(format string, args ...any) error {
	return fmt.Errorf("%w at byte %d: %s", errMalformed, d.off-1, fmt.Sprintf(format, args...))
}

// readByte reads one byte; the end of the body is io.ErrUnexpectedEOF.
func (d *listDecoder) readByte() (byte, error) {
	c, err := d.r.ReadByte()
	if err == io.EOF {
		return 0, io.ErrUnexpectedEOF
	}
	d.off++
	return c, err
}

// next reads past whitespace and returns the byte after it.
func (d *listDecoder) next() (byte, error) {
	for {
		c, err := d.readByte()
		if err != nil || (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
			return c, err
		}
	}
}

// want reads past whitespace and the byte want.
func (d *listDecoder) want(want byte) error {
	c, err := d.next()
	if err == nil && c != want {
		err = d.errorf("want %q, got %q", want, c)
	}
	return err
}

func (d *listDecoder) list(fn func(*migrate.Pair) error) error {
	err := d.want('[')
	if err == nil {
		err = d.items(']', func(i int, c byte) error {
			if c != '{' {
				return d.errorf("pair %d: want an object, got %q", i, c)
			}
			d.pair = migrate.Pair{}
			if err := d.items('}', d.field); err != nil {
				return err
			}
			return fn(&d.pair)
		})
	}
	if err != nil {
		return err
	}
	// Nothing but whitespace may follow. Reading to the end also lets the
	// connection be reused.
	if c, err := d.next(); err == nil {
		return d.errorf("data after the array: %q", c)
	} else if err != io.ErrUnexpectedEOF {
		return err
	}
	return nil
}

// items reads the items of an array or object whose opening is read, up
// to close, calling item with the first byte of each.
func (d *listDecoder) items(close byte, item func(i int, c byte) error) error {
	for i := 0; ; i++ {
		c, err := d.next()
		if err != nil || (i == 0 && c == close) {
			return err
		}
		if err := item(i, c); err != nil {
			return err
		}
		if c, err = d.next(); err != nil || c == close {
			return err
		}
		if c != ',' {
			return d.errorf("want ',' or %q, got %q", close, c)
		}
	}
}

// field reads one field of a pair; c is its first byte.
func (d *listDecoder) field(_ int, c byte) error {
	if c != '"' {
		return d.errorf("want a field name, got %q", c)
	}
	name, err := d.string()
	if err == nil {
		err = d.want(':')
	}
	if err != nil {
		return err
	}
	switch string(name) {
	case "Key":
		d.pair.Key, err = d.text()
	case "Session":
		d.pair.Session, err = d.text()
	case "Namespace", "Partition":
		_, err = d.text()
	case "Flags":
		d.pair.Flags, err = d.uint()
	case "ModifyIndex":
		d.pair.ModifyIndex, err = d.uint()
	case "LockIndex", "CreateIndex":
		_, err = d.uint()
	case "Value":
		err = d.value()
	default:
		err = d.errorf("unexpected field %q", name)
	}
	return err
}

// string reads a string whose opening quote is read, and returns its
// bytes, escapes as they are, valid until the next read.
func (d *listDecoder) string() ([]byte, error) {
	d.raw = d.raw[:0]
	for {
		chunk, err := d.r.ReadSlice('"')
		d.off += int64(len(chunk))
		d.raw = append(d.raw, chunk...)
		switch {
		case err == bufio.ErrBufferFull:
			continue
		case err == io.EOF:
			return nil, io.ErrUnexpectedEOF
		case err != nil:
			return nil, err
		}
		// The quote ends the string unless an odd run of backslashes
		// escapes it.
		n := len(d.raw) - 1
		i := n
		for i > 0 && d.raw[i-1] == '\\' {
			i--
		}
		if (n-i)%2 == 0 {
			d.raw = d.raw[:n]
			return d.raw, nil
		}
	}
}

// text reads a string value.
func (d *listDecoder) text() (string, error) {
	if err := d.want('"'); err != nil {
		return "", err
	}
	raw, err := d.string()
	if err != nil {
		return "", err
	}
	for _, c := range raw {
		if c < 0x20 || c == '\\' || c >= utf8.RuneSelf {
			// Escapes or UTF-8, rare in keys: encoding/json's own
			// unquoting, which refuses control characters.
			var s string
			if err := json.Unmarshal(slices.Concat([]byte{'"'}, raw, []byte{'"'}), &s); err != nil {
				return "", d.errorf("string: %v", err)
			}
			return s, nil
		}
	}
	return string(raw), nil
}

// uint reads an unsigned decimal integer within uint64.
func (d *listDecoder) uint() (n uint64, err error) {
	c, err := d.next()
	i := 0
	for ; err == nil && '0' <= c && c <= '9'; i++ {
		if (i == 1 && n == 0) || n > (math.MaxUint64-uint64(c-'0'))/10 {
			return 0, d.errorf("integer with a leading zero or over 2^64-1")
		}
		n = n*10 + uint64(c-'0')
		c, err = d.readByte()
	}
	switch {
	case err != nil:
		return 0, err
	case i == 0:
		return 0, d.errorf("want an unsigned integer, got %q", c)
	}
	d.off--
	return n, d.r.UnreadByte()
}

// value reads Value: null, or a string of padded standard base64.
func (d *listDecoder) value() error {
	c, err := d.next()
	switch {
	case err != nil:
		return err
	case c == 'n':
		for _, want := range []byte("ull") {
			if c, err = d.readByte(); err != nil {
				return err
			} else if c != want {
				return d.errorf("want null, got %q", c)
			}
		}
		d.pair.Value = nil
		return nil
	case c != '"':
		return d.errorf("want a base64 string or null for Value, got %q", c)
	}
	raw, err := d.string()
	if err != nil {
		return err
	}
	// base64 skips CR and LF, which JSON forbids raw (and refuses the
	// backslash of an escape, which Consul never writes in base64).
	if bytes.IndexByte(raw, '\n') >= 0 || bytes.IndexByte(raw, '\r') >= 0 {
		return d.errorf("line break in Value")
	}
	d.val = slices.Grow(d.val[:0], base64.StdEncoding.DecodedLen(len(raw)))
	n, err := base64.StdEncoding.Decode(d.val[:cap(d.val)], raw)
	if err != nil {
		return d.errorf("Value: %v", err)
	}
	d.pair.Value = d.val[:n]
	return nil
}
