package migrate

import (
	"crypto/sha256"
	"fmt"
	"math/big"
	"strconv"
	"testing"
)

// bigDigest is the obvious way: math/big per record.
type bigDigest struct{ sum *big.Int }

var mod256 = new(big.Int).Lsh(big.NewInt(1), 256)

func (d *bigDigest) add(relKey string, version int64, data []byte) {
	if d.sum == nil {
		d.sum = new(big.Int)
	}
	h := sha256.New()
	h.Write([]byte(relKey + "\x00" + strconv.FormatInt(version, 10) + "\x00"))
	h.Write(data)
	d.sum.Add(d.sum, new(big.Int).SetBytes(h.Sum(nil)))
	d.sum.Mod(d.sum, mod256)
}

func (d *bigDigest) String() string { return fmt.Sprintf("sha256:%064x", d.sum) }

func TestDigestMatchesBig(t *testing.T) {
	var tl Tally
	var bd bigDigest
	for i := range 2000 {
		k := fmt.Sprintf("jobs/k%d", i)
		data := []byte(k + "-data")
		tl.Add(k, int64(i)-5, data)
		bd.add(k, int64(i)-5, data)
	}
	if tl.Digest.String() != bd.String() || tl.Count != 2000 {
		t.Fatalf("digest %s count %d, math/big says %s", tl.Digest, tl.Count, bd.String())
	}
	d, err := ParseDigest(tl.Digest.String())
	if err != nil || d != tl.Digest {
		t.Fatalf("ParseDigest: %v, %v", d, err)
	}
}

func TestDigestCarriesAndWraps(t *testing.T) {
	all := Digest{^uint64(0), ^uint64(0), ^uint64(0), ^uint64(0)}
	d := all
	d.Add(Digest{1})
	if d != (Digest{}) {
		t.Fatalf("2^256-1 + 1 = %v, want 0", d)
	}
	d = Digest{^uint64(0)}
	d.Add(Digest{1})
	if d != (Digest{0, 1}) {
		t.Fatalf("carry: %v", d)
	}
}

func TestTallyOrderIndependentAndMerge(t *testing.T) {
	var a, b, parts1, parts2 Tally
	recs := []string{"a/1", "a/2", "b/=3A", "c/x"}
	for i, k := range recs {
		a.Add(k, int64(i), []byte(k))
	}
	for i := len(recs) - 1; i >= 0; i-- {
		b.Add(recs[i], int64(i), []byte(recs[i]))
	}
	parts1.Add(recs[0], 0, []byte(recs[0]))
	parts1.Add(recs[3], 3, []byte(recs[3]))
	parts2.Add(recs[2], 2, []byte(recs[2]))
	parts2.Add(recs[1], 1, []byte(recs[1]))
	parts1.Merge(parts2)
	if !a.Equal(b) || !a.Equal(parts1) {
		t.Fatalf("tallies differ: %v %v %v", a.Digest, b.Digest, parts1.Digest)
	}
	var c Tally
	c.Add("a/1", 0, []byte("a/1x"))
	if c.Digest == (Digest{}) || c.Equal(a) {
		t.Fatal("digest ignores data")
	}
}

func BenchmarkDigest(b *testing.B) {
	data := make([]byte, 200)
	b.Run("Tally", func(b *testing.B) {
		b.ReportAllocs()
		var tl Tally
		for i := 0; b.Loop(); i++ {
			tl.Add("jobs/job=3A=3Aweb", int64(i), data)
		}
	})
	b.Run("math-big", func(b *testing.B) {
		b.ReportAllocs()
		var bd bigDigest
		for i := 0; b.Loop(); i++ {
			bd.add("jobs/job=3A=3Aweb", int64(i), data)
		}
	})
}
