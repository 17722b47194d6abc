package migrate

import (
	"errors"
	"fmt"
	"strings"
)

// Key escaping keeps every store3 key valid under Consul's strictest key
// rules: a bucket and a record key are each escaped on their own, every byte
// outside A-Z a-z 0-9 _ . - becomes '=' and two upper-case hex digits, and a
// segment that is exactly "." or ".." becomes "=2E" or "=2E=2E".

// ErrEmptySegment is an empty bucket or record key: it has no store3 key.
var ErrEmptySegment = errors.New("empty key segment")

// EscapedAlphabet holds every byte an escaped segment can start with (and
// contain), in byte order: listing <dir><c> for each c partitions a bucket.
const EscapedAlphabet = "-.0123456789=ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"

const upperHex = "0123456789ABCDEF"

// safe[b] is true for the bytes written as they are.
var safe = func() (t [256]bool) {
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	t['_'], t['.'], t['-'] = true, true, true
	return t
}()

// escapedLen returns the escaped length of s, and whether s is written as
// it is.
func escapedLen(s string) (int, bool) {
	if s == "." || s == ".." {
		return 3 * len(s), false
	}
	n := len(s)
	for i := 0; i < len(s); i++ {
		if !safe[s[i]] {
			n += 2
		}
	}
	return n, n == len(s)
}

// appendEscaped appends the escaped s to dst.
func appendEscaped(dst []byte, s string) []byte {
	if s == "." || s == ".." {
		for range s {
			dst = append(dst, "=2E"...)
		}
		return dst
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if safe[c] {
			dst = append(dst, c)
			continue
		}
		dst = append(dst, '=', upperHex[c>>4], upperHex[c&15])
	}
	return dst
}

// EscapeSegment escapes a bucket or a record key. It does not allocate when
// s needs no escaping.
func EscapeSegment(s string) (string, error) {
	if s == "" {
		return "", ErrEmptySegment
	}
	n, same := escapedLen(s)
	if same {
		return s, nil
	}
	return unsafeString(appendEscaped(make([]byte, 0, n), s)), nil
}

// UnescapeSegment reverses EscapeSegment. It accepts only the canonical
// escaping of some string, so that escaping is a bijection and a key that
// no record can produce is recognised as foreign.
func UnescapeSegment(s string) (string, error) {
	if s == "" {
		return "", ErrEmptySegment
	}
	if s == "=2E" {
		return ".", nil
	}
	if s == "=2E=2E" {
		return "..", nil
	}
	if strings.IndexByte(s, '=') < 0 {
		if s == "." || s == ".." {
			return "", fmt.Errorf("unescape %q: bare dot segment", s)
		}
		for i := 0; i < len(s); i++ {
			if !safe[s[i]] {
				return "", fmt.Errorf("unescape %q: byte %q at %d is not in the escaped alphabet", s, s[i], i)
			}
		}
		return s, nil
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if safe[c] {
			b = append(b, c)
			continue
		}
		if c != '=' || i+2 >= len(s) {
			return "", fmt.Errorf("unescape %q: bad byte %q at %d", s, c, i)
		}
		hi, lo := unhex(s[i+1]), unhex(s[i+2])
		if hi < 0 || lo < 0 {
			return "", fmt.Errorf("unescape %q: bad escape at %d", s, i)
		}
		d := byte(hi<<4 | lo)
		if safe[d] {
			return "", fmt.Errorf("unescape %q: needless escape of %q at %d", s, d, i)
		}
		b = append(b, d)
		i += 2
	}
	return string(b), nil
}

// unhex decodes one upper-case hex digit, -1 for anything else.
func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// StoreKey returns the store3 key of a record: <prefix><escaped bucket>/<escaped key>.
func StoreKey(prefix, bucket, key string) (string, error) {
	if bucket == "" {
		return "", fmt.Errorf("bucket: %w", ErrEmptySegment)
	}
	if key == "" {
		return "", fmt.Errorf("key: %w", ErrEmptySegment)
	}
	nb, _ := escapedLen(bucket)
	nk, _ := escapedLen(key)
	b := make([]byte, 0, len(prefix)+nb+1+nk)
	b = append(b, prefix...)
	b = appendEscaped(b, bucket)
	b = append(b, '/')
	b = appendEscaped(b, key)
	return unsafeString(b), nil
}

// RelKey returns the escaped "<bucket>/<key>" of a record, the store key
// without its prefix: what the digest hashes.
func RelKey(bucket, key string) (string, error) {
	return StoreKey("", bucket, key)
}

// ParseStoreKey decodes a store3 key under prefix back to its bucket and key.
func ParseStoreKey(prefix, k string) (bucket, key string, err error) {
	rest, ok := strings.CutPrefix(k, prefix)
	if !ok {
		return "", "", fmt.Errorf("key %q is not under prefix %q", k, prefix)
	}
	eb, ek, ok := strings.Cut(rest, "/")
	if !ok {
		return "", "", fmt.Errorf("key %q has no bucket separator", k)
	}
	if bucket, err = UnescapeSegment(eb); err != nil {
		return "", "", fmt.Errorf("key %q: bucket: %w", k, err)
	}
	if key, err = UnescapeSegment(ek); err != nil {
		return "", "", fmt.Errorf("key %q: record key: %w", k, err)
	}
	return bucket, key, nil
}
