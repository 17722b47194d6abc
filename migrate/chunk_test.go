package migrate

import (
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
