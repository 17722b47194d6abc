package consulkv

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
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
// a list of KV entries (an array of objects with the fields LockIndex, Key,
// Flags, Value, Session, Namespace, Partition, CreateIndex and
// ModifyIndex, named exactly so; unsigned decimal integers; strings; Value
// base64 or null), with JSON whitespace anywhere, and fails with a
// *listError on anything else: another field or type, a null Consul never
// writes, data after the array. What it accepts, encoding/json decodes to
// the same pairs (FuzzKVList checks it). A body cut short is
// io.ErrUnexpectedEOF; a read error comes back as is.
//
// fn's error is returned as is. The pair, its Value included, is reused:
// it is only valid during fn. Memory is bounded by the longest string.
func decodeKVList(r io.Reader, fn func(*migrate.Pair) error) error {
	d := &listDecoder{r: bufio.NewReaderSize(r, 32<<10), val: make([]byte, 0, 512)}
	return d.list(fn)
}

// listError is a body that is not what Consul writes.
type listError struct {
	msg    string
	offset int64 // of the offending byte
}

func (e *listError) Error() string {
	return fmt.Sprintf("malformed KV listing at byte %d: %s", e.offset, e.msg)
}

type listDecoder struct {
	r    *bufio.Reader
	off  int64  // bytes consumed
	raw  []byte // the current string, unquoted but not unescaped
	val  []byte // the current Value, decoded
	pair migrate.Pair
}

// cut turns the end of the body inside the listing into
// io.ErrUnexpectedEOF.
func cut(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

func (d *listDecoder) errorf(format string, args ...any) error {
	return &listError{msg: fmt.Sprintf(format, args...), offset: d.off - 1}
}

// next consumes whitespace and returns the byte after it, consumed; the
// end of the body is io.ErrUnexpectedEOF.
func (d *listDecoder) next() (byte, error) {
	for {
		c, err := d.r.ReadByte()
		if err != nil {
			return 0, cut(err)
		}
		d.off++
		if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			return c, nil
		}
	}
}

// want consumes the byte want, after whitespace.
func (d *listDecoder) want(want byte, what string) error {
	c, err := d.next()
	if err == nil && c != want {
		err = d.errorf("want %s, got %q", what, c)
	}
	return err
}

func (d *listDecoder) list(fn func(*migrate.Pair) error) error {
	if err := d.want('[', "an array"); err != nil {
		return err
	}
	c, err := d.next()
	for i := 0; err == nil && c != ']'; i++ {
		if c != '{' {
			return d.errorf("pair %d: want an object, got %q", i, c)
		}
		if err := d.object(); err != nil {
			return err
		}
		if err := fn(&d.pair); err != nil {
			return err
		}
		if c, err = d.next(); err == nil && c == ',' {
			if c, err = d.next(); err == nil && c == ']' {
				return d.errorf("want an object after ',', got ']'")
			}
		} else if err == nil && c != ']' {
			return d.errorf("want ',' or ']' after pair %d, got %q", i, c)
		}
	}
	if err != nil {
		return err
	}
	// Nothing but whitespace may follow: reading to the end also lets the
	// connection be reused.
	if c, err = d.next(); err == nil {
		return d.errorf("data after the array: %q", c)
	} else if err != io.ErrUnexpectedEOF {
		return err
	}
	return nil
}

// object decodes one pair; its '{' is consumed.
func (d *listDecoder) object() error {
	d.pair = migrate.Pair{}
	c, err := d.next()
	if err != nil || c == '}' {
		return err
	}
	for {
		if c != '"' {
			return d.errorf("want a field name, got %q", c)
		}
		name, err := d.string()
		if err == nil {
			err = d.want(':', "':'")
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
			return d.errorf("unexpected field %q", name)
		}
		if err != nil {
			return err
		}
		if c, err = d.next(); err != nil || c == '}' {
			return err
		}
		if c != ',' {
			return d.errorf("want ',' or '}', got %q", c)
		}
		if c, err = d.next(); err != nil {
			return err
		}
	}
}

// string reads a string whose opening quote is consumed, and returns its
// bytes, escapes as they are, valid until the next read.
func (d *listDecoder) string() ([]byte, error) {
	d.raw = d.raw[:0]
	for {
		chunk, err := d.r.ReadSlice('"')
		d.off += int64(len(chunk))
		d.raw = append(d.raw, chunk...)
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			return nil, cut(err)
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
	if err := d.want('"', "a string"); err != nil {
		return "", err
	}
	raw, err := d.string()
	if err != nil {
		return "", err
	}
	plain := true
	for _, c := range raw {
		if c < 0x20 {
			return "", d.errorf("control character %q in a string", c)
		}
		plain = plain && c != '\\'
	}
	if !utf8.Valid(raw) {
		return "", d.errorf("invalid UTF-8 in a string")
	}
	if plain {
		return string(raw), nil
	}
	// Escapes, rare in keys: encoding/json's own unquoting.
	var s string
	if err := json.Unmarshal(slices.Concat([]byte{'"'}, raw, []byte{'"'}), &s); err != nil {
		return "", d.errorf("string: %v", err)
	}
	return s, nil
}

// uint reads an unsigned decimal integer within uint64.
func (d *listDecoder) uint() (uint64, error) {
	c, err := d.next()
	if err != nil {
		return 0, err
	}
	if c < '0' || c > '9' {
		return 0, d.errorf("want an unsigned integer, got %q", c)
	}
	n, first := uint64(c-'0'), c
	for {
		c, err := d.r.ReadByte()
		if err != nil {
			return 0, cut(err)
		}
		d.off++
		if c < '0' || c > '9' {
			d.r.UnreadByte()
			d.off--
			return n, nil
		}
		if first == '0' {
			return 0, d.errorf("integer with a leading zero")
		}
		if n > (math.MaxUint64-uint64(c-'0'))/10 {
			return 0, d.errorf("integer over 2^64-1")
		}
		n = n*10 + uint64(c-'0')
	}
}

// value reads Value: null, or a string of padded standard base64.
func (d *listDecoder) value() error {
	c, err := d.next()
	if err != nil {
		return err
	}
	switch c {
	case 'n':
		var ull [3]byte
		n, err := io.ReadFull(d.r, ull[:])
		d.off += int64(n)
		if err != nil {
			return cut(err)
		}
		if string(ull[:]) != "ull" {
			return d.errorf("want null, got %q", "n"+string(ull[:]))
		}
		d.pair.Value = nil
		return nil
	case '"':
		raw, err := d.string()
		if err != nil {
			return err
		}
		// base64 skips CR and LF, which JSON forbids raw; Consul never
		// escapes base64.
		if bytes.ContainsAny(raw, "\\\r\n") {
			return d.errorf("escape or line break in Value")
		}
		d.val = slices.Grow(d.val[:0], base64.StdEncoding.DecodedLen(len(raw)))
		n, err := base64.StdEncoding.Decode(d.val[:cap(d.val)], raw)
		if err != nil {
			return d.errorf("Value: %v", err)
		}
		d.pair.Value = d.val[:n]
		return nil
	}
	return d.errorf("want a base64 string or null for Value, got %q", c)
}
