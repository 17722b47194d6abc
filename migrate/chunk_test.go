package migrate

import (
	"maps"
	"math/rand/v2"
	"path"
	"slices"
	"strings"
	"testing"
)

// Consul's HTTP server cleans request paths, so listing a prefix whose last
// segment is "." or ".." lists another prefix. The verification chunks must
// never be such a prefix, and every key must fall in exactly one chunk.
func TestChunksAvoidDotSegments(t *testing.T) {
	prefixes := chunkPrefixes("jobs/")
	for _, p := range prefixes {
		last := p[strings.LastIndexByte(p, '/')+1:]
		if last == "." || last == ".." || path.Clean("/"+p+"x") != "/"+p+"x" {
			t.Errorf("chunk prefix %q ends in a segment HTTP path cleaning rewrites", p)
		}
	}
	for _, key := range []string{".a", "..a", "...", ".-", "a", "=2E", "=2E=2E", "job=3A=3Aweb", "-", "..."} {
		rel := "jobs/" + key
		if _, err := UnescapeSegment(key); err != nil {
			t.Fatalf("test key %q is not an escaped key: %v", key, err)
		}
		id := chunkID(rel)
		if !strings.HasPrefix(rel, id) {
			t.Errorf("chunkID(%q) = %q, not a prefix of the key", rel, id)
		}
		n := 0
		for _, p := range prefixes {
			if strings.HasPrefix(rel, p) {
				n++
				if p != id {
					t.Errorf("key %q lies in chunk %q, chunkID says %q", rel, p, id)
				}
			}
		}
		if n != 1 {
			t.Errorf("key %q lies in %d chunks, want 1", rel, n)
		}
	}
	if !slices.IsSorted(prefixes) {
		t.Errorf("chunk prefixes not in key order")
	}
}

// chunkStat's stem and counts are exact in whatever order the keys come.
func TestChunkStatIsExactInAnyOrder(t *testing.T) {
	keys := []string{"jobs/job=3Aa1", "jobs/job=3Aa2", "jobs/job=3Ab", "jobs/job=3A", "jobs/job=3Aa1x", "jobs/jo"}
	for _, n := range []int{1, 2, 3, 4, 5, 6} {
		for range 20 {
			perm := rand.Perm(len(keys))
			var s chunkStat
			for _, i := range perm[:n] {
				s.add(keys[i])
			}
			// By brute force, on the same keys.
			seen := make([]string, 0, n)
			for _, i := range perm[:n] {
				seen = append(seen, keys[i])
			}
			stem := seen[0]
			for _, k := range seen[1:] {
				for !strings.HasPrefix(k, stem) {
					stem = stem[:len(stem)-1]
				}
			}
			next := map[byte]int64{}
			var end int64
			for _, k := range seen {
				if k == stem {
					end++
				} else {
					next[k[len(stem)]]++
				}
			}
			if s.n != int64(n) || s.stem != stem || !maps.Equal(s.next, next) || s.end != end {
				t.Fatalf("keys %q: n %d stem %q next %v end %d, want %d %q %v %d", seen, s.n, s.stem, s.next, s.end, n, stem, next, end)
			}
		}
	}
}
