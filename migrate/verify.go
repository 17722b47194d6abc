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

// maxForeignPerChunk bounds the foreign keys one listing reports by name.
const maxForeignPerChunk = 100

// maxListRecords is the most records one listing is expected to return: a
// chunk the copy put more records in is listed in parts (chunkStat).
// Consul builds a listing's answer whole before it sends a byte; at
// 1,000,000 records (4 chunks of 250,000, since the keys of a bucket tend to
// share their first bytes) the 4 answers took 3.4 to 3.6 s and 5.0 to 5.2 s
// of the server's CPU, 36 parts of about 27,500 took 1.8 to 2.7 s and 2.1
// to 3.8 s.
var maxListRecords int64 = 1 << 15

// chunkStat is what the copy saw of one chunk's keys (relative keys, all
// starting with the chunk id): how many, their longest common prefix (the
// stem), and how many continue with each byte after the stem (end: how
// many are the stem itself). Exact in any order the keys come in: when the
// stem shortens, every key seen so far continues with the byte of the old
// stem where the new one ends.
type chunkStat struct {
	n    int64
	stem string
	next map[byte]int64 // nil until the second key: most chunks are small
	end  int64
}

func (s *chunkStat) add(rel string) {
	if s.n == 0 {
		s.n, s.stem, s.end = 1, rel, 1
		return
	}
	l := 0
	for l < len(s.stem) && l < len(rel) && s.stem[l] == rel[l] {
		l++
	}
	if l < len(s.stem) {
		s.next = map[byte]int64{s.stem[l]: s.n}
		s.end = 0
		s.stem = s.stem[:l]
	}
	s.n++
	switch {
	case len(rel) == len(s.stem):
		s.end++
	case s.next == nil:
		s.next = map[byte]int64{rel[len(s.stem)]: 1}
	default:
		s.next[rel[len(s.stem)]]++
	}
}

// chunkStats are chunkStat by chunk id.
type chunkStats map[string]*chunkStat

func (c chunkStats) add(rel string) {
	id := chunkID(rel)
	s := c[id]
	if s == nil {
		s = &chunkStat{}
		c[id] = s
	}
	s.add(rel)
}

// of returns the stats of the chunks of one bucket directory (relative to
// the prefix).
func (c chunkStats) of(dir string) chunkStats {
	out := chunkStats{}
	for _, p := range chunkPrefixes(dir) {
		if s := c[p]; s != nil {
			out[p] = s
		}
	}
	return out
}

// listJob is one listing of scanStore, of chunk id: the keys under scan;
// or, for a chunk listed in parts, the key that is the stem itself, once
// a keys listing has shown that no key under the chunk lies outside the
// stem (else the whole chunk, and the parts are ignored).
type listJob struct {
	id, scan, stem string
	size           int64 // records expected: the order of the listings
}

// listJobs are the listings of the chunks stats knows. A chunk of at most
// maxListRecords records is one listing. A larger one is listed in parts:
// under its stem, one listing per byte of the escaped alphabet, and the
// stem's own key; a stem-check job first makes sure no key of the chunk
// lies elsewhere. Keys with a byte outside the escaped alphabet right
// after a stem are not listed: only a writer that ignores the escaping
// and the lock can put them there (as for a bucket's first byte).
func listJobs(prefix string, stats chunkStats) []listJob {
	var jobs []listJob
	for id, st := range stats {
		if st.n <= maxListRecords {
			jobs = append(jobs, listJob{id: id, scan: prefix + id, size: st.n})
			continue
		}
		jobs = append(jobs, listJob{id: id, stem: st.stem, size: st.n})
		for i := 0; i < len(EscapedAlphabet); i++ {
			b := EscapedAlphabet[i]
			jobs = append(jobs, listJob{id: id, scan: prefix + st.stem + string(b), size: st.next[b]})
		}
	}
	slices.SortFunc(jobs, func(a, b listJob) int {
		return cmp.Or(cmp.Compare(b.size, a.size), strings.Compare(a.scan, b.scan), strings.Compare(a.stem, b.stem))
	})
	return jobs
}

// foreignKey is a key under the prefix that no record can produce.
type foreignKey struct{ key, why string }

// scanScope narrows scanStore.
type scanScope struct {
	// only, when set, is the one bucket directory to list (stats must
	// hold its chunks alone); the buckets are not searched for.
	only string
	// reuse are bucket directories not to list: their checks stand.
	reuse map[string]*bucketCheck
	// top, when set, is the keys listing that finds the buckets, started
	// earlier (alongside the reads of the checks' indexes).
	top *topKeys
}

// topKeys is a keys listing of the prefix with "/" as separator: the
// bucket directories, and whatever else lies right under the prefix.
type topKeys struct {
	done chan struct{}
	keys []string
	err  error
}

// listTop starts listing the top keys of prefix.
func listTop(ctx context.Context, kv KV, prefix string) *topKeys {
	t := &topKeys{done: make(chan struct{})}
	go func() {
		defer close(t.done)
		t.keys, t.err = kv.Keys(ctx, prefix, "/")
	}()
	return t
}

func (t *topKeys) get(ctx context.Context) ([]string, error) {
	select {
	case <-t.done:
		return t.keys, t.err
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

// reused reports whether the chunk (or bucket directory) id, relative to
// the prefix, lies in a bucket whose check stands.
func (s scanScope) reused(prefix, id string) bool {
	if len(s.reuse) == 0 {
		return false
	}
	return s.reuse[prefix+id[:strings.IndexByte(id, '/')+1]] != nil
}

// found is what the search for buckets found.
type found struct {
	chunks  []string
	foreign []string
	reused  []string // the reused bucket directories that hold keys
	err     error
}

// findBuckets lists the bucket directories under prefix and returns the
// chunks of each (of scope.only alone, when set), but those of reused
// buckets, of which it returns those that still hold keys.
func findBuckets(ctx context.Context, kv KV, prefix string, scope scanScope) (f found) {
	dirs := []string{scope.only}
	if scope.only == "" {
		if scope.top == nil {
			scope.top = listTop(ctx, kv, prefix)
		}
		top, err := scope.top.get(ctx)
		if err != nil {
			f.err = fmt.Errorf("list %q: %w", prefix, err)
			return f
		}
		dirs = top
	}
	for _, dir := range dirs {
		if scope.reuse[dir] != nil {
			f.reused = append(f.reused, dir)
			continue
		}
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
			return f
		} else if p != nil {
			f.foreign = append(f.foreign, dir)
		}
		f.chunks = append(f.chunks, chunkPrefixes(dir)...)
	}
	return f
}

// scanStore tallies what store3 holds under prefix outside migration/,
// chunk by chunk, listInFlight listings at a time, each streamed
// (KV.Scan), so memory stays bounded whatever the store holds. The chunks
// stats (what the copy saw) expects records in are listed at once, the
// largest first and the large ones in parts (listJobs), so that the
// longest listings run side by side, while the buckets are found (a keys
// listing that costs the server a walk of every key: 0.8 s at 1,000,000
// records); then every other chunk of every bucket, in key order. It
// returns the tally of every non-empty chunk by chunk id, and the number of
// foreign keys found, calling foreign (from this goroutine) with those it
// names. Keys under a bucket whose first byte lies outside the escaped
// alphabet are not listed: only a writer that ignores the escaping and the
// lock can put them there. The scope narrows it to one bucket, or takes
// some buckets' tallies from earlier checks instead of listing them.
func scanStore(ctx context.Context, kv KV, prefix string, stats chunkStats, scope scanScope, foreign func(foreignKey)) (map[string]*Tally, int, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var first []listJob
	for _, j := range listJobs(prefix, stats) {
		if !scope.reused(prefix, j.id) {
			first = append(first, j)
		}
	}

	// The buckets, found while the first chunks are listed.
	discovered := make(chan found, 1)
	go func() { discovered <- findBuckets(ctx, kv, prefix, scope) }()

	type result struct {
		id       string
		whole    bool // the whole chunk, listed after a failed stem check
		t        Tally
		foreign  []foreignKey
		nForeign int
		err      error
	}
	jobs := make(chan listJob)
	results := make(chan *result)
	var wg sync.WaitGroup
	for range listInFlight {
		wg.Go(func() {
			for j := range jobs {
				res := &result{id: j.id}
				add := func(p *Pair) error {
					if _, _, err := ParseStoreKey(prefix, p.Key); err != nil {
						if res.nForeign++; len(res.foreign) < maxForeignPerChunk {
							res.foreign = append(res.foreign, foreignKey{p.Key, "foreign key: " + err.Error()})
						}
						return nil
					}
					res.t.Add(p.Key[len(prefix):], int64(p.Flags), p.Value)
					return nil
				}
				res.whole, res.err = j.list(ctx, kv, prefix, add)
				results <- res
			}
		})
	}
	var disc found // written before jobs is closed, read after results is
	go func() {
		defer close(jobs)
		send := func(j listJob) bool {
			select {
			case jobs <- j:
				return true
			case <-ctx.Done():
				return false
			}
		}
		for _, j := range first {
			if !send(j) {
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
		for _, c := range disc.chunks {
			if id := c[len(prefix):]; stats[id] == nil && !scope.reused(prefix, id) {
				if !send(listJob{id: id, scan: c}) {
					return
				}
			}
		}
	}()
	go func() { wg.Wait(); close(results) }()

	// A chunk's tally is its whole listing when a stem check failed, else
	// the sum of its listings.
	parts := map[string][]*result{}
	var firstErr error
	for res := range results {
		if res.err != nil {
			if firstErr == nil {
				firstErr = res.err
				cancel()
			}
			continue
		}
		parts[res.id] = append(parts[res.id], res)
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
	ids := make([]string, 0, len(parts))
	for id, rs := range parts {
		if i := slices.IndexFunc(rs, func(r *result) bool { return r.whole }); i >= 0 {
			parts[id] = rs[i : i+1]
		}
		ids = append(ids, id)
	}
	slices.Sort(ids)
	tallies := map[string]*Tally{}
	nForeign := 0
	for _, k := range disc.foreign {
		nForeign++
		foreign(foreignKey{k, "foreign key"})
	}
	// A reused bucket that holds no key now is empty, whatever its check
	// found: its keys can all go without moving its index, through a tree
	// delete of a shorter prefix, whose tombstone lies outside it.
	for _, dir := range disc.reused {
		c := scope.reuse[dir]
		nForeign += c.nForeign
		for _, f := range c.foreign {
			foreign(f)
		}
		for id, t := range c.tallies {
			tallies[id] = t
		}
	}
	for _, id := range ids {
		var t Tally
		for _, r := range parts[id] {
			t.Merge(r.t)
			nForeign += r.nForeign
			for _, f := range r.foreign {
				foreign(f)
			}
		}
		if t.Count > 0 {
			tallies[id] = &t
		}
	}
	return tallies, nForeign, nil
}

// list lists j, handing each pair to add. For a chunk's stem job, it
// first lists the chunk's keys with the rest of the stem as separator:
// Consul cuts every key that continues with it down to the stem, so the
// answer is the stem alone, or nothing, when no key of the chunk lies
// outside the stem; then it reads the stem's own key. Otherwise it lists
// the whole chunk, and says so (whole).
func (j listJob) list(ctx context.Context, kv KV, prefix string, add func(*Pair) error) (whole bool, err error) {
	if j.scan != "" {
		if err := kv.Scan(ctx, j.scan, add); err != nil {
			return false, fmt.Errorf("list %q: %w", j.scan, err)
		}
		return false, nil
	}
	if j.stem != j.id {
		keys, err := kv.Keys(ctx, prefix+j.id, j.stem[len(j.id):])
		if err != nil {
			return false, fmt.Errorf("list the keys of %q: %w", prefix+j.id, err)
		}
		if len(keys) > 1 || len(keys) == 1 && keys[0] != prefix+j.stem {
			if err := kv.Scan(ctx, prefix+j.id, add); err != nil {
				return true, fmt.Errorf("list %q: %w", prefix+j.id, err)
			}
			return true, nil
		}
	}
	p, err := kv.Get(ctx, prefix+j.stem)
	if err != nil {
		return false, fmt.Errorf("read %q: %w", prefix+j.stem, err)
	}
	if p != nil {
		add(p)
	}
	return false, nil
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
	srcChunks, stats := chunkTallies{}, chunkStats{}
	err = snap.Scan(ctx, func(r *Record) error {
		key, reason := CheckRecord(prefix, r, b)
		if reason != "" {
			add(DiffEntry{Kind: DiffMissing, Bucket: r.Bucket, Key: r.Key, Detail: "cannot be stored: " + reason})
			return nil
		}
		rel := key[len(prefix):]
		srcChunks.add(rel, r.Version, r.Data)
		stats.add(rel)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read store2: %w", err)
	}
	for _, t := range srcChunks {
		d.Source.Merge(*t)
	}

	named := 0
	storeChunks, nForeign, err := scanStore(ctx, kv, prefix, stats, scanScope{}, func(f foreignKey) {
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
