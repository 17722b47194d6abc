//go:build integration

package reliability

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/consul/api"

	"github.com/apcera/deployhook/integration/clitest"
	"github.com/apcera/deployhook/integration/harness"
	"github.com/apcera/deployhook/migrate"
)

// hostileKeys are record keys built from every byte PostgreSQL text
// accepts (valid UTF-8 without NUL) and the shapes that break naive
// escaping.
func hostileKeys() []string {
	var keys []string
	var all strings.Builder
	for b := 0x01; b <= 0x7F; b++ {
		keys = append(keys, string(rune(b)))
		all.WriteByte(byte(b))
	}
	keys = append(keys, all.String(), "..", "/leading", "//", "a//b", "=3D", "%2F", "%", "=", "./..", " ", "trailing/",
		strings.Repeat("k", 2000), strings.Repeat("é", 1000), strings.Repeat("/", 2000))
	for _, r := range []rune{0x80, 0xE9, 0x7FF, 0x800, 0x2028, 0x2029, 0xD7FF, 0xE000, 0xFFFD, 0xFFFF, 0x10000, 0x1F600, 0x10FFFF} {
		keys = append(keys, string(r), "x"+string(r)+"/"+string(r))
	}
	// Every rune of a few ranges, in keys of at most 1,500 bytes
	// (PostgreSQL's btree refuses index rows over 2,704 bytes).
	for _, rg := range [][2]rune{{0x80, 0x7FF}, {0x800, 0xFFF}, {0xFF00, 0xFFFF}, {0x1F300, 0x1F6FF}} {
		var b strings.Builder
		for r := rg[0]; r <= rg[1]; r++ {
			if utf8.ValidRune(r) {
				b.WriteRune(r)
			}
			if b.Len() >= 1500 || r == rg[1] {
				keys = append(keys, b.String())
				b.Reset()
			}
		}
	}
	seen := map[string]bool{}
	out := keys[:0]
	for _, k := range keys {
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	return out
}

// fencedLimit derives, independently of the product, the largest value a
// fenced transaction can carry for one record: consul/api's own encoding
// (json.Encoder over api.TxnOps, plus its newline) of the check-session
// op on the lock key and the set of the record must fit
// max(txn_max_req_len, kv_max_value_size), and the value kv_max_value_size
// (both 512 KiB by default, Consul 1.16's agent/txn_endpoint.go).
func fencedLimit(t testing.TB, prefix, storeKey string, version int64) int {
	t.Helper()
	const maxBody, maxValue = 512 * 1024, 512 * 1024
	size := func(n int) int {
		ops := api.TxnOps{
			{KV: &api.KVTxnOp{Verb: api.KVCheckSession, Key: prefix + "migration/.lock", Session: "00000000-0000-0000-0000-000000000000"}},
			{KV: &api.KVTxnOp{Verb: api.KVSet, Key: storeKey, Value: make([]byte, n), Flags: uint64(version)}},
		}
		var b bytes.Buffer
		if err := json.NewEncoder(&b).Encode(ops); err != nil {
			t.Fatal(err)
		}
		return b.Len()
	}
	lo, hi := 0, maxValue
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if size(mid) <= maxBody {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return lo
}

// TestHostileKeys migrates keys of every byte PostgreSQL text accepts and
// every awkward shape, hostile bucket names, and empty values.
func TestHostileKeys(t *testing.T) {
	runs := 0
	scenario(t, "hostile-keys", 1, 1, &runs)
	pg, consul := harness.StartPostgres(t), harness.StartConsul(t)
	env := clitest.New(t, pg, consul)
	var recs []migrate.Record
	for i, k := range hostileKeys() {
		recs = append(recs, migrate.Record{Bucket: "keys", Key: k, Version: int64(i + 1), Data: []byte(k)})
	}
	for _, b := range []string{".", "..", "/", "a/b", "=", "%", "é", strings.Repeat("b", 500)} {
		recs = append(recs, migrate.Record{Bucket: b, Key: "in-" + b, Version: 1, Data: []byte("bucket " + b)})
	}
	recs = append(recs,
		migrate.Record{Bucket: "empty", Key: "zero", Version: 1, Data: []byte{}},
		migrate.Record{Bucket: "empty", Key: "one", Version: 9223372036854775807, Data: []byte{0}},
	)
	env.SeedDB("hostil", recs)
	prefix := "apcera/store3/hostil/"
	conf := env.WriteConf(clitest.Conf{Database: "hostil", Prefix: prefix, Name: "hostil.conf"})
	if r := env.Run("migrate", "-f", conf, "--hostname", "hostile-host"); r.Code != 0 {
		t.Errorf("hostile keys and empty values: exit %d, want 0\n%.3000s", r.Code, r.Stderr)
	}
	mustDone(t, env, prefix, store2(t, env, "hostil"))
	runs++
}

// TestValueSizeLimit: a value exactly at the largest a fenced transaction
// can carry must migrate; one byte more must be a named record failure
// with no .done. The limit is derived independently (fencedLimit, from
// consul/api's encoding) and proved on the live server (probeLimit), not
// taken from the product's migrate.MaxRecordData, which is only logged.
func TestValueSizeLimit(t *testing.T) {
	runs := 0
	scenario(t, "value-size-limit", 2, 2, &runs)
	pg, consul := harness.StartPostgres(t), harness.StartConsul(t)
	env := clitest.New(t, pg, consul)

	// Same-length prefixes, so the limit is the same for all three.
	atPrefix, overPrefix := "apcera/store3/atlim_/", "apcera/store3/toobig/"
	const bucket, limitKey, version = "big", "at-limit", 7
	limit := fencedLimit(t, atPrefix, clitest.ExpectedKey(atPrefix, bucket, limitKey), version)
	product := migrate.MaxRecordData(migrate.DefaultLimits, clitest.ExpectedKey(atPrefix, bucket, limitKey))
	t.Logf("largest value of %s/%s (version %d) in a fenced transaction: %d bytes derived from consul/api's encoding and proved on the server; the product's MaxRecordData says %d", bucket, limitKey, version, limit, product)
	probeLimit(t, consul, "apcera/store3/probe_/", bucket, limitKey, version, limit)

	at := []migrate.Record{
		{Bucket: "jobs", Key: "small", Version: 1, Data: []byte("ok")},
		{Bucket: bucket, Key: limitKey, Version: version, Data: bytes.Repeat([]byte{0xFF, 0x00, '"', '<'}, limit/4+1)[:limit]},
	}
	env.SeedDB("atlim", at)
	conf := env.WriteConf(clitest.Conf{Database: "atlim", Prefix: atPrefix, Name: "atlim.conf"})
	if r := env.Run("migrate", "-f", conf, "--hostname", "hostile-host"); r.Code != 0 {
		t.Errorf("a value of exactly %d bytes, which a fenced transaction carries: exit %d, want 0\n%.3000s", limit, r.Code, r.Stderr)
	}
	mustDone(t, env, atPrefix, at)
	runs++

	over := []migrate.Record{
		{Bucket: "jobs", Key: "small", Version: 1, Data: []byte("ok")},
		{Bucket: bucket, Key: limitKey, Version: version, Data: bytes.Repeat([]byte("x"), limit+1)},
	}
	env.SeedDB("toobig", over)
	conf = env.WriteConf(clitest.Conf{Database: "toobig", Prefix: overPrefix, Name: "toobig.conf"})
	r := env.Run("migrate", "-f", conf, "--hostname", "hostile-host")
	if r.Code != 5 {
		t.Errorf("a value one byte over the limit: exit %d, want 5\n%.3000s", r.Code, r.Stderr)
	}
	if !strings.Contains(r.Stderr, fmt.Sprintf("bucket %q, key %q", bucket, limitKey)) {
		t.Errorf("the record failure does not name bucket %q key %q:\n%.3000s", bucket, limitKey, r.Stderr)
	}
	if checkInvariant(t, env, overPrefix, over) {
		t.Errorf(".done written although a record could not be stored")
	}
	st := readStatus(t, consul.Addr(), "", overPrefix)
	if st == nil || st.State != "failed" || len(st.Failed) != 1 || st.Failed[0].Key != limitKey {
		t.Errorf(".status does not list the failed record: %+v", st)
	}
	runs++
}

// TestHostileBigBucket is 100,000 records in one bucket: one Consul
// listing of that bucket would hold them all.
func TestHostileBigBucket(t *testing.T) {
	runs := 0
	scenario(t, "hostile-100k-one-bucket", 1, 1, &runs)
	pg, consul := harness.StartPostgres(t), harness.StartConsul(t)
	env := clitest.New(t, pg, consul)
	const n = 100000
	recs := seedGen(t, env, "jmdb", n, seqRecords("one", n))
	env.MustRun(0, "migrate", "-f", env.WriteConf(clitest.Conf{}), "--hostname", "big-host")
	mustDone(t, env, clitest.DefaultPrefix("job_manager"), recs)
	runs++
}

// TestHostileValidateInputs feeds validate a 50 MB cluster.conf, one
// nested 10,000 levels deep, and one with a 1 MB line: each gives a clear
// error or a correct result within 60 s; none crashes or hangs.
func TestHostileValidateInputs(t *testing.T) {
	runs := 0
	scenario(t, "hostile-validate-inputs", 3, 3, &runs)
	env := clitest.New(t, nil, nil)
	base, err := os.ReadFile(filepath.Join("..", "..", "fixtures", "validate", "valid-runbook.conf"))
	if err != nil {
		t.Fatal(err)
	}
	var big bytes.Buffer
	big.Write(base)
	big.WriteString("\nbulk: {\n")
	for i := 0; big.Len() < 50<<20; i++ {
		fmt.Fprintf(&big, "  key%08d: \"%s\"\n", i, strings.Repeat("v", 100))
	}
	big.WriteString("}\n")
	deep := string(base) + "\ndeep: " + strings.Repeat("{ a: ", 10000) + "1" + strings.Repeat(" }", 10000) + "\n"
	long := string(base) + "\nlong: \"" + strings.Repeat("x", 1<<20) + "\"\n"

	for _, tc := range []struct {
		name string
		src  []byte
	}{{"50MB", big.Bytes()}, {"nested-10000", []byte(deep)}, {"line-1MB", []byte(long)}} {
		path := filepath.Join(env.Dir, tc.name+".conf")
		if err := os.WriteFile(path, tc.src, 0o600); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		p := clitest.StartProc(t, env, "validate", path)
		code := p.Wait(t, 60*time.Second)
		out := p.Stdout.String() + p.Stderr.String()
		t.Logf("validate %s (%d bytes): exit %d in %v, %d bytes of output: %.300s", tc.name, len(tc.src), code, time.Since(start).Round(time.Millisecond), len(out), out)
		switch {
		case code != 0 && code != 3:
			t.Errorf("validate %s: exit %d (crash?), want 0 or 3:\n%.3000s", tc.name, code, out)
		case code == 3 && strings.TrimSpace(out) == "":
			t.Errorf("validate %s: exit 3 without a message", tc.name)
		case strings.Contains(out, "goroutine ") || strings.Contains(out, "panic:"):
			t.Errorf("validate %s: panicked:\n%.3000s", tc.name, out)
		}
		runs++
	}
}

// probeLimit proves the derived limit on the live server, with a prefix of
// the same length: a fenced transaction holding a value of limit bytes
// commits, one of limit+1 bytes is refused.
func probeLimit(t testing.TB, c *harness.Consul, prefix, bucket, key string, version int64, limit int) {
	t.Helper()
	cl := c.Client()
	lockKey := prefix + "migration/.lock"
	id, _, err := cl.Session().Create(&api.SessionEntry{TTL: "10s", Behavior: api.SessionBehaviorRelease, LockDelay: time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Session().Destroy(id, nil)
	if ok, _, err := cl.KV().Acquire(&api.KVPair{Key: lockKey, Session: id}, nil); err != nil || !ok {
		t.Fatalf("acquire probe lock: %v %v", ok, err)
	}
	storeKey := clitest.ExpectedKey(prefix, bucket, key)
	for _, n := range []int{limit, limit + 1} {
		ops := api.TxnOps{
			{KV: &api.KVTxnOp{Verb: api.KVCheckSession, Key: lockKey, Session: id}},
			{KV: &api.KVTxnOp{Verb: api.KVSet, Key: storeKey, Value: bytes.Repeat([]byte("x"), n), Flags: uint64(version)}},
		}
		ok, resp, _, err := cl.Txn().Txn(ops, nil)
		committed := err == nil && ok
		if committed != (n == limit) {
			t.Fatalf("probe of a fenced txn with a %d-byte value (derived limit %d): committed=%t err=%v resp=%+v", n, limit, committed, err, resp)
		}
	}
	if _, err := cl.KV().DeleteTree(prefix, nil); err != nil {
		t.Fatal(err)
	}
}
