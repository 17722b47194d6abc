package migrate

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"math/bits"
	"strconv"
	"strings"
)

// Digest is the order-independent digest of a set of records: the sum
// modulo 2^256 of SHA-256(escaped key, NUL, version in decimal, NUL, data).
// The escaped key is the store key without its prefix,
// "<escaped bucket>/<escaped key>", so that the digest names the records,
// not where they were copied to. Limbs are little-endian: d[0] holds the
// least significant 64 bits.
type Digest [4]uint64

// addSum adds one big-endian SHA-256 sum.
func (d *Digest) addSum(s *[sha256.Size]byte) {
	var c uint64
	d[0], c = bits.Add64(d[0], binary.BigEndian.Uint64(s[24:]), 0)
	d[1], c = bits.Add64(d[1], binary.BigEndian.Uint64(s[16:]), c)
	d[2], c = bits.Add64(d[2], binary.BigEndian.Uint64(s[8:]), c)
	d[3], _ = bits.Add64(d[3], binary.BigEndian.Uint64(s[0:]), c)
}

// Add adds o to d, modulo 2^256.
func (d *Digest) Add(o Digest) {
	var c uint64
	d[0], c = bits.Add64(d[0], o[0], 0)
	d[1], c = bits.Add64(d[1], o[1], c)
	d[2], c = bits.Add64(d[2], o[2], c)
	d[3], _ = bits.Add64(d[3], o[3], c)
}

// String renders d as "sha256:<64 hex digits>", most significant first.
func (d Digest) String() string {
	var b [32]byte
	binary.BigEndian.PutUint64(b[0:], d[3])
	binary.BigEndian.PutUint64(b[8:], d[2])
	binary.BigEndian.PutUint64(b[16:], d[1])
	binary.BigEndian.PutUint64(b[24:], d[0])
	return "sha256:" + hex.EncodeToString(b[:])
}

// ParseDigest reads what String writes.
func ParseDigest(s string) (Digest, error) {
	var d Digest
	h, ok := strings.CutPrefix(s, "sha256:")
	b, err := hex.DecodeString(h)
	if !ok || err != nil || len(b) != 32 {
		return d, fmt.Errorf("parse digest %q: want sha256:<64 hex digits>", s)
	}
	d[3] = binary.BigEndian.Uint64(b[0:])
	d[2] = binary.BigEndian.Uint64(b[8:])
	d[1] = binary.BigEndian.Uint64(b[16:])
	d[0] = binary.BigEndian.Uint64(b[24:])
	return d, nil
}

// Tally counts records and accumulates their digest. The zero value is
// ready to use; a Tally is not safe for concurrent use (Merge per-worker
// tallies instead).
type Tally struct {
	Count  int64
	Digest Digest

	h   hash.Hash
	buf []byte
	sum [sha256.Size]byte // a field, not a local: Sum through an interface would move it to the heap
}

// Add adds one record: relKey is its escaped "<bucket>/<key>".
func (t *Tally) Add(relKey string, version int64, data []byte) {
	if t.h == nil {
		t.h = sha256.New()
		t.buf = make([]byte, 0, 128)
	}
	t.h.Reset()
	b := append(t.buf[:0], relKey...)
	b = append(b, 0)
	b = strconv.AppendInt(b, version, 10)
	b = append(b, 0)
	t.h.Write(b)
	t.h.Write(data)
	t.buf = b[:0]
	t.h.Sum(t.sum[:0])
	t.Digest.addSum(&t.sum)
	t.Count++
}

// Merge adds the records of o.
func (t *Tally) Merge(o Tally) {
	t.Count += o.Count
	t.Digest.Add(o.Digest)
}

// Equal reports whether both tallies hold the same count and digest.
func (t *Tally) Equal(o Tally) bool {
	return t.Count == o.Count && t.Digest == o.Digest
}
