package runitlog

import (
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// taiOffset is what libtai's tai_unix adds to a Unix time to get a TAI64
// label: 2^62, plus the 10 seconds TAI was ahead of UTC in 1970. libtai
// applies no leap-second table, so neither do we: the label of a Unix second
// s is 2^62 + 10 + s. Checked against the real svlogd, which named a file
// rotated at Unix time 1795648161.149021500 "@400000006b076aab08e1e33c.s"
// (0x6b076aab = 1795648161 + 10, 0x08e1e33c = 149021500).
const taiOffset = 1<<62 + 10

// TAI64N returns t as svlogd writes it in the names of rotated files:
// "@", then 24 lower-case hex digits, the 8-byte TAI64 label and the 4-byte
// nanosecond count, big endian.
func TAI64N(t time.Time) string {
	var b [25]byte
	b[0] = '@'
	appendTAI64N(b[1:1], t)
	return string(b[:])
}

func appendTAI64N(dst []byte, t time.Time) []byte {
	var raw [12]byte
	label := uint64(t.Unix() + taiOffset)
	nano := uint32(t.Nanosecond())
	for i := 0; i < 8; i++ {
		raw[i] = byte(label >> (56 - 8*i))
	}
	for i := 0; i < 4; i++ {
		raw[8+i] = byte(nano >> (24 - 8*i))
	}
	return hex.AppendEncode(dst, raw[:])
}

// ErrTAI64N is wrapped by the errors of ParseTAI64N.
var ErrTAI64N = errors.New("not a TAI64N label")

// ParseTAI64N parses what TAI64N returns ("@" and 24 hex digits, either case)
// into a UTC time. The "@" is optional; a file name suffix such as ".s" is
// not accepted: trim it first.
func ParseTAI64N(s string) (time.Time, error) {
	h := s
	if len(h) > 0 && h[0] == '@' {
		h = h[1:]
	}
	if len(h) != 24 {
		return time.Time{}, fmt.Errorf("parse %q: %w: want 24 hex digits", s, ErrTAI64N)
	}
	var raw [12]byte
	if _, err := hex.Decode(raw[:], []byte(h)); err != nil {
		return time.Time{}, fmt.Errorf("parse %q: %w: %v", s, ErrTAI64N, err)
	}
	var label uint64
	for _, c := range raw[:8] {
		label = label<<8 | uint64(c)
	}
	var nano uint32
	for _, c := range raw[8:] {
		nano = nano<<8 | uint32(c)
	}
	// Labels of 2^63 and above are reserved by the TAI64 definition.
	if label >= 1<<63 {
		return time.Time{}, fmt.Errorf("parse %q: %w: label beyond 2^63", s, ErrTAI64N)
	}
	if nano >= 1e9 {
		return time.Time{}, fmt.Errorf("parse %q: %w: nanoseconds %d out of range", s, ErrTAI64N, nano)
	}
	return time.Unix(int64(label)-taiOffset, int64(nano)).UTC(), nil
}
