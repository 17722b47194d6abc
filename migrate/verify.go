package migrate

import (
	"cmp"
	"context"
	"crypto/sha256"
	"fmt"
	"slices"
	"strings"
	"sync"
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

// listInFlight is how many chunks verification lists at once: most are
// empty, and one at a time the round trips dominated the run.
const listInFlight = 8

// maxForeignPerChunk bounds the foreign keys one chunk reports by name.
const maxForeignPerChunk = 100

// foreignKey is a key under the prefix that no record can produce.
type foreignKey struct{ key, why string }

// scanStore tallies what store3 holds under prefix outside migration/,
// chunk by chunk, listInFlight chunks at a time, each streamed (KV.Scan),
// so memory stays bounded whatever the store holds. The chunks that sizes
// (records by chunk id, from the copy) expects records in are listed at
// once, the largest first, so that the longest listings run side by side,
// while the buckets are found (a keys listing that costs the server a walk
// of every key: 0.8 s at 1,000,000 records); then every other chunk of
// every bucket, in key order. It returns the tally of every non-empty
// chunk by chunk id, and the number of foreign keys found, calling foreign
// (from this goroutine) with those it names. Keys under a bucket whose
// first byte lies outside the escaped alphabet are not listed: only a
// writer that ignores the escaping and the lock can put them there.
func scanStore(ctx context.Context, kv KV, prefix string, sizes map[string]int64, foreign func(foreignKey)) (map[string]*Tally, int, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var first []string
	for id, n := range sizes {
		if n > 0 {
			first = append(first, prefix+id)
		}
	}
	slices.SortFunc(first, func(a, b string) int {
		return cmp.Or(cmp.Compare(sizes[b[len(prefix):]], sizes[a[len(prefix):]]), strings.Compare(a, b))
	})

	// The buckets, found while the first chunks are listed.
	type found struct {
		chunks  []string
		foreign []string
		err     error
	}
	discovered := make(chan found, 1)
	go func() {
		var f found
		defer func() { discovered <- f }()
		top, err := kv.Keys(ctx, prefix, "/")
		if err != nil {
			f.err = fmt.Errorf("list %q: %w", prefix, err)
			return
		}
		for _, dir := range top {
			if dir == migrationDir(prefix) {
				continue
			}
			eb, ok := strings.CutSuffix(dir[len(prefix):], "/")
			if !ok || strings.Contains(eb, "/") {
				f.foreign = append(f.foreign, dir)
				continue
			}
			if _, err := UnescapeSegment(eb); err != nil {
				f.foreign = append(f.foreign, dir)
				continue
			}
			// The empty record key, the one key a chunk cannot hold.
			if p, err := kv.Get(ctx, dir); err != nil {
				f.err = fmt.Errorf("read %q: %w", dir, err)
				return
			} else if p != nil {
				f.foreign = append(f.foreign, dir)
			}
			f.chunks = append(f.chunks, chunkPrefixes(dir)...)
		}
	}()

	type result struct {
		id       string
		t        Tally
		foreign  []foreignKey
		nForeign int
		err      error
	}
	jobs := make(chan string)
	results := make(chan *result)
	var wg sync.WaitGroup
	for range listInFlight {
		wg.Go(func() {
			for chunk := range jobs {
				res := &result{id: chunk[len(prefix):]}
				res.err = kv.Scan(ctx, chunk, func(p *Pair) error {
					if _, _, err := ParseStoreKey(prefix, p.Key); err != nil {
						if res.nForeign++; len(res.foreign) < maxForeignPerChunk {
							res.foreign = append(res.foreign, foreignKey{p.Key, "foreign key: " + err.Error()})
						}
						return nil
					}
					res.t.Add(p.Key[len(prefix):], int64(p.Flags), p.Value)
					return nil
				})
				if res.err != nil {
					res.err = fmt.Errorf("list %q: %w", chunk, res.err)
				}
				results <- res
			}
		})
	}
	var disc found // written before jobs is closed, read after results is
	go func() {
		defer close(jobs)
		send := func(c string) bool {
			select {
			case jobs <- c:
				return true
			case <-ctx.Done():
				return false
			}
		}
		for _, c := range first {
			if !send(c) {
				return
			}
		}
		select {
		case disc = <-discovered:
		case <-ctx.Done():
			return
		}
		if disc.err != nil {
			cancel()
			return
		}
		listed := make(map[string]bool, len(first))
		for _, c := range first {
			listed[c] = true
		}
		for _, c := range disc.chunks {
			if !listed[c] && !send(c) {
				return
			}
		}
	}()
	go func() { wg.Wait(); close(results) }()

	tallies := map[string]*Tally{}
	var firstErr error
	nForeign := 0
	for res := range results {
		if res.err != nil {
			if firstErr == nil {
				firstErr = res.err
				cancel()
			}
			continue
		}
		nForeign += res.nForeign
		for _, f := range res.foreign {
			foreign(f)
		}
		if res.t.Count > 0 {
			tallies[res.id] = &res.t
		}
	}
	if disc.err != nil {
		return nil, 0, disc.err
	}
	if firstErr != nil {
		return nil, 0, firstErr
	}
	if err := ctx.Err(); err != nil { // cancelled while no listing ran
		return nil, 0, context.Cause(ctx)
	}
	for _, k := range disc.foreign {
		nForeign++
		foreign(foreignKey{k, "foreign key"})
	}
	return tallies, nForeign, nil
}

// maxForeign bounds the foreign keys a comparison names; it counts them all.
const maxForeign = 5

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
// a second pass. At most max entries of each kind are listed (all when
// max <= 0).
func Verify(ctx context.Context, src Source, kv KV, prefix string, max int) (*Diff, error) {
	d := &Diff{Prefix: prefix}
	listed := map[string]int{}
	add := func(e DiffEntry) {
		if max > 0 && listed[e.Kind] >= max {
			d.Omitted++
			return
		}
		listed[e.Kind]++
		d.Entries = append(d.Entries, e)
	}
	snap, err := src.Snapshot(ctx)
	if err != nil {
		return nil, fmt.Errorf("open store2 snapshot: %w", err)
	}
	defer closeSnapshot(ctx, snap, discard{})

	b := SizingBatcher(kv.Limits(ctx), prefix)
	srcChunks := map[string]*Tally{}
	err = snap.Scan(ctx, func(r *Record) error {
		key, reason := CheckRecord(prefix, r, b)
		if reason != "" {
			add(DiffEntry{Kind: DiffMissing, Bucket: r.Bucket, Key: r.Key, Detail: "cannot be stored: " + reason})
			return nil
		}
		rel := key[len(prefix):]
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

	named := 0
	sizes := make(map[string]int64, len(srcChunks))
	for c, t := range srcChunks {
		sizes[c] = t.Count
	}
	storeChunks, nForeign, err := scanStore(ctx, kv, prefix, sizes, func(f foreignKey) {
		named++
		add(DiffEntry{Kind: DiffExtra, StoreKey: f.key, Detail: f.why})
	})
	if err != nil {
		return nil, err
	}
	d.Omitted += nForeign - named
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
		err := kv.Scan(ctx, prefix+c, func(p *Pair) error {
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
		key, reason := CheckRecord(prefix, r, b)
		if reason != "" {
			return nil
		}
		rel := key[len(prefix):]
		if !differ[chunkID(rel)] {
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
