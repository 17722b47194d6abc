package migrate

import (
	"context"
	"crypto/sha256"
	"fmt"
	"slices"
	"strings"
)

// Store3 is read in chunks, one (bucket, first escaped byte of the key) at
// a time: Consul's list has no pagination, and the escaped alphabet
// partitions a bucket's keys, so memory stays bounded by the largest chunk.

// chunkID names a chunk: "<escaped bucket>/<first escaped byte>". A key
// that starts with "." takes one more byte, two more for "..": a listed
// prefix must never end in a "." or ".." path segment, which Consul's HTTP
// server cleans away (listing "jobs/." would list all of "jobs/"). Escaping
// guarantees no key is exactly "." or "..", so the longer ids exist.
func chunkID(relKey string) string {
	i := strings.IndexByte(relKey, '/') + 1
	n := 1
	for n < 3 && i+n < len(relKey) && relKey[i+n-1] == '.' {
		n++
	}
	return relKey[:min(i+n, len(relKey))]
}

// chunkPrefixes lists the chunks of one bucket directory in key order:
// every first escaped byte, with "." split as chunkID splits it.
func chunkPrefixes(dir string) []string {
	var out []string
	var walk func(p string, depth int)
	walk = func(p string, depth int) {
		for i := 0; i < len(EscapedAlphabet); i++ {
			c := p + EscapedAlphabet[i:i+1]
			if EscapedAlphabet[i] == '.' && depth < 2 {
				walk(c, depth+1)
				continue
			}
			out = append(out, c)
		}
	}
	walk(dir, 0)
	return out
}

// scanStore calls fn for every pair under prefix outside migration/, with
// the chunk it was listed in, and foreign for every key no record can
// produce that it finds. One chunk is listed at a time, and streamed when
// the KV can (PairScanner), so memory stays constant. Keys under a bucket
// whose first byte lies outside the escaped alphabet are not listed: only a
// writer that ignores the escaping and the lock can put them there.
func scanStore(ctx context.Context, kv KV, prefix string, fn func(chunk string, p *Pair) error, foreign func(key string)) error {
	top, err := kv.Keys(ctx, prefix, "/")
	if err != nil {
		return fmt.Errorf("list %q: %w", prefix, err)
	}
	for _, dir := range top {
		if dir == migrationDir(prefix) {
			continue
		}
		eb, ok := strings.CutSuffix(dir[len(prefix):], "/")
		if !ok || strings.Contains(eb, "/") {
			foreign(dir)
			continue
		}
		if _, err := UnescapeSegment(eb); err != nil {
			foreign(dir)
			continue
		}
		// The empty record key, the one key a chunk cannot hold.
		if p, err := kv.Get(ctx, dir); err != nil {
			return fmt.Errorf("read %q: %w", dir, err)
		} else if p != nil {
			foreign(dir)
		}
		for _, chunk := range chunkPrefixes(dir) {
			id := chunk[len(prefix):]
			err := scanPairs(ctx, kv, chunk, func(p *Pair) error { return fn(id, p) })
			if err != nil {
				return fmt.Errorf("list %q: %w", chunk, err)
			}
		}
	}
	return nil
}

// scanPairs streams the pairs under prefix when kv can, else lists them.
func scanPairs(ctx context.Context, kv KV, prefix string, fn func(*Pair) error) error {
	if s, ok := kv.(PairScanner); ok {
		return s.ScanPairs(ctx, prefix, fn)
	}
	pairs, err := kv.List(ctx, prefix)
	if err != nil {
		return err
	}
	for i := range pairs {
		if err := fn(&pairs[i]); err != nil {
			return err
		}
	}
	return nil
}

// maxForeign bounds the foreign keys a tally names; it counts them all.
const maxForeign = 5

// tallyStore counts and digests what store3 holds under prefix. It names
// at most maxForeign foreign keys, and counts them all.
func tallyStore(ctx context.Context, kv KV, prefix string) (Tally, []string, int, error) {
	var t Tally
	var foreign []string
	nForeign := 0
	addForeign := func(k string) {
		if nForeign++; len(foreign) < maxForeign {
			foreign = append(foreign, k)
		}
	}
	err := scanStore(ctx, kv, prefix, func(_ string, p *Pair) error {
		if _, _, err := ParseStoreKey(prefix, p.Key); err != nil {
			addForeign(p.Key)
			return nil
		}
		t.Add(p.Key[len(prefix):], int64(p.Flags), p.Value)
		return nil
	}, addForeign)
	return t, foreign, nForeign, err
}

// The kinds of difference Verify reports.
const (
	DiffMissing   = "missing"   // in store2, not in store3
	DiffExtra     = "extra"     // in store3, not in store2
	DiffDifferent = "different" // in both, with another version or data
)

// DiffEntry is one record that differs.
type DiffEntry struct {
	Kind     string
	Bucket   string // decoded; empty for a foreign key
	Key      string
	StoreKey string
	Detail   string
}

// Diff is what Verify found.
type Diff struct {
	Prefix        string
	Source, Store Tally // count and digest of each side
	Entries       []DiffEntry
	Omitted       int // entries beyond max
}

// Equal reports whether both stores hold the same records.
func (d *Diff) Equal() bool { return len(d.Entries) == 0 && d.Omitted == 0 && d.Source.Equal(d.Store) }

// Verify compares store2 and store3 record by record, in bounded memory:
// one pass over store2 tallies each chunk, store3 is tallied chunk by
// chunk, and only the chunks that differ are compared record by record, on
// a second pass. At most max entries are listed (all when max <= 0).
func Verify(ctx context.Context, src Source, kv KV, prefix string, max int) (*Diff, error) {
	d := &Diff{Prefix: prefix}
	add := func(e DiffEntry) {
		if max > 0 && len(d.Entries) >= max {
			d.Omitted++
			return
		}
		d.Entries = append(d.Entries, e)
	}
	snap, err := src.Snapshot(ctx)
	if err != nil {
		return nil, fmt.Errorf("open store2 snapshot: %w", err)
	}
	defer snap.Close(context.WithoutCancel(ctx))

	srcChunks := map[string]*Tally{}
	err = snap.Scan(ctx, func(r *Record) error {
		rel, err := RelKey(r.Bucket, r.Key)
		if err == nil && r.Bucket == "migration" {
			err = fmt.Errorf(`bucket "migration" is reserved`)
		}
		if err != nil {
			add(DiffEntry{Kind: DiffMissing, Bucket: r.Bucket, Key: r.Key, Detail: "cannot be stored: " + err.Error()})
			return nil
		}
		c := chunkID(rel)
		t := srcChunks[c]
		if t == nil {
			t = &Tally{}
			srcChunks[c] = t
		}
		t.Add(rel, r.Version, r.Data)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read store2: %w", err)
	}
	for _, t := range srcChunks {
		d.Source.Merge(*t)
	}

	storeChunks := map[string]*Tally{}
	err = scanStore(ctx, kv, prefix, func(chunk string, p *Pair) error {
		if _, _, err := ParseStoreKey(prefix, p.Key); err != nil {
			add(DiffEntry{Kind: DiffExtra, StoreKey: p.Key, Detail: "foreign key: " + err.Error()})
			return nil
		}
		t := storeChunks[chunk]
		if t == nil {
			t = &Tally{}
			storeChunks[chunk] = t
		}
		t.Add(p.Key[len(prefix):], int64(p.Flags), p.Value)
		return nil
	}, func(k string) {
		add(DiffEntry{Kind: DiffExtra, StoreKey: k, Detail: "foreign key"})
	})
	if err != nil {
		return nil, err
	}
	differ := map[string]bool{}
	for c, t := range storeChunks {
		d.Store.Merge(*t)
		if s := srcChunks[c]; s == nil || !s.Equal(*t) {
			differ[c] = true
		}
	}
	for c := range srcChunks {
		if storeChunks[c] == nil {
			differ[c] = true
		}
	}
	if len(differ) == 0 {
		return d, nil
	}

	// Second pass, only over the chunks that differ.
	type held struct {
		version int64
		sum     [sha256.Size]byte
		size    int
	}
	store := map[string]held{}
	for c := range differ {
		err := scanPairs(ctx, kv, prefix+c, func(p *Pair) error {
			if _, _, err := ParseStoreKey(prefix, p.Key); err == nil {
				store[p.Key[len(prefix):]] = held{int64(p.Flags), sha256.Sum256(p.Value), len(p.Value)}
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("list %q: %w", prefix+c, err)
		}
	}
	var found []DiffEntry
	err = snap.Scan(ctx, func(r *Record) error {
		rel, err := RelKey(r.Bucket, r.Key)
		if err != nil || r.Bucket == "migration" || !differ[chunkID(rel)] {
			return nil
		}
		h, ok := store[rel]
		delete(store, rel)
		e := DiffEntry{Bucket: r.Bucket, Key: r.Key, StoreKey: prefix + rel}
		switch {
		case !ok:
			e.Kind, e.Detail = DiffMissing, fmt.Sprintf("version %d, %d bytes", r.Version, len(r.Data))
		case h.version != r.Version:
			e.Kind, e.Detail = DiffDifferent, fmt.Sprintf("version %d in store2, %d in store3", r.Version, h.version)
		case h.sum != sha256.Sum256(r.Data):
			e.Kind, e.Detail = DiffDifferent, fmt.Sprintf("data differs: %d bytes in store2, %d in store3", len(r.Data), h.size)
		default:
			return nil
		}
		found = append(found, e)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read store2: %w", err)
	}
	for rel, h := range store {
		b, k, _ := ParseStoreKey("", rel)
		found = append(found, DiffEntry{Kind: DiffExtra, Bucket: b, Key: k, StoreKey: prefix + rel,
			Detail: fmt.Sprintf("version %d, %d bytes", h.version, h.size)})
	}
	slices.SortFunc(found, func(a, b DiffEntry) int { return strings.Compare(a.StoreKey, b.StoreKey) })
	for _, e := range found {
		add(e)
	}
	return d, nil
}
