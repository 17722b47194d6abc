package migrate

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/hashicorp/consul/api"
)

// apiBody is the request body consul/api sends for ops behind fence.
func apiBody(t testing.TB, fence Fence, ops []Op) []byte {
	var txn api.TxnOps
	if fence.Session != "" {
		txn = append(txn, &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVCheckSession, Key: fence.LockKey, Session: fence.Session}})
	}
	for _, op := range ops {
		txn = append(txn, &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVOp(op.Verb), Key: op.Key, Value: op.Value, Flags: op.Flags, Index: op.Index}})
	}
	var b bytes.Buffer
	if err := json.NewEncoder(&b).Encode(txn); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestOpSizeMatchesConsulAPI(t *testing.T) {
	keys := []string{"a", "apcera/store3/jmdb/jobs/job=3A=3Aweb", "x<y>&\"\\\n\t\b\f\x01é\u2028\xff", strings.Repeat("k", 300)}
	for _, key := range keys {
		for _, n := range []int{0, 1, 2, 3, 4, 5, 100, 4096, 393216} {
			for _, flags := range []uint64{0, 7, math.MaxInt64, math.MaxUint64} {
				var v []byte
				if n > 0 {
					v = make([]byte, n)
				}
				op := Op{Verb: VerbSet, Key: key, Value: v, Flags: flags}
				body := apiBody(t, Fence{}, []Op{op})
				got := BodySize(1, opSize(VerbSet, key, n, flags, 0, ""))
				if got != len(body) {
					t.Fatalf("key %q n %d flags %d: computed %d, consul/api sends %d", key, n, flags, got, len(body))
				}
				if ub := BodySize(1, OpSize(key, n)); ub < len(body) {
					t.Fatalf("OpSize is not an upper bound: %d < %d", ub, len(body))
				}
			}
		}
	}
	// An empty, non-nil value is "" (shorter than null, still bounded).
	body := apiBody(t, Fence{}, []Op{{Verb: VerbSet, Key: "k", Value: []byte{}}})
	if ub := BodySize(1, OpSize("k", 0)); ub < len(body) {
		t.Fatalf("empty value: %d < %d", ub, len(body))
	}
}

func TestBatcherRespectsLimits(t *testing.T) {
	fence := Fence{LockKey: "apcera/store3/jmdb/migration/.lock", Session: "0b6b7a7e-4b8c-5b77-6f6c-111111111111"}
	for _, size := range []int{0, 10, 200, 4096, 60000, 392000} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			l := DefaultLimits
			b := NewBatcher(l, fence, 2)
			var batches []*Batch
			total, count := 0, 600
			if size > 10000 {
				count = 12
			}
			for i := range count {
				key := fmt.Sprintf("apcera/store3/jmdb/jobs/k%05d", i)
				data := bytes.Repeat([]byte{byte(i)}, size)
				if len(data) > b.MaxData(key, uint64(i)) {
					t.Fatalf("%d bytes do not fit (max %d)", size, b.MaxData(key, uint64(i)))
				}
				if full := b.Add(key, uint64(i), data); full != nil {
					batches = append(batches, full)
				}
			}
			if last := b.Flush(); last != nil {
				batches = append(batches, last)
			}
			for i, x := range batches {
				total += len(x.Ops)
				body := apiBody(t, fence, x.Ops)
				if x.Body != len(body) {
					t.Fatalf("batch %d: Body %d, consul/api sends %d", i, x.Body, len(body))
				}
				if len(body) > l.MaxBody || len(x.Ops)+1 > l.MaxOps {
					t.Fatalf("batch %d: %d bytes, %d ops", i, len(body), len(x.Ops)+1)
				}
				for j, op := range x.Ops {
					if len(op.Value) != size || (size > 0 && op.Value[0] != byte(op.Flags)) {
						t.Fatalf("batch %d op %d: value not copied", i, j)
					}
				}
			}
			if total != count {
				t.Fatalf("%d ops batched, want %d", total, count)
			}
			if size == 200 && len(batches[0].Ops) != 127 {
				t.Fatalf("small records: %d ops per batch, want 127", len(batches[0].Ops))
			}
		})
	}
}

func TestMaxRecordData(t *testing.T) {
	key := "apcera/store3/jmdb/jobs/big"
	n := MaxRecordData(DefaultLimits, key)
	if n < 392000 || n > 393216 {
		t.Fatalf("MaxRecordData at the defaults = %d, want about 393 KB", n)
	}
	fence := Fence{LockKey: "apcera/store3/jmdb/migration/.lock", Session: "0b6b7a7e-4b8c-5b77-6f6c-111111111111"}
	// The limit depends on the record's version (Flags): each is exact
	// for its own, and one byte more does not fit.
	for _, flags := range []uint64{0, 7, 1 << 40, math.MaxUint64} {
		exact := NewBatcher(DefaultLimits, fence, 0).MaxData(key, flags)
		if exact < n {
			t.Fatalf("flags %d: exact %d < conservative %d", flags, exact, n)
		}
		if body := apiBody(t, fence, []Op{{Verb: VerbSet, Key: key, Value: make([]byte, exact), Flags: flags}}); len(body) > DefaultLimits.MaxBody {
			t.Fatalf("flags %d: %d bytes of data make a %d-byte body", flags, exact, len(body))
		}
		if body := apiBody(t, fence, []Op{{Verb: VerbSet, Key: key, Value: make([]byte, exact+1), Flags: flags}}); len(body) <= DefaultLimits.MaxBody {
			t.Fatalf("flags %d: MaxData %d is not the largest: %d bytes still fit", flags, exact, exact+1)
		}
	}
	small := Limits{MaxOps: 128, MaxBody: 512 * 1024, MaxValue: 1000}
	if got := MaxRecordData(small, key); got != 1000 {
		t.Fatalf("MaxValue not applied: %d", got)
	}
	if r := sizeFailure(small, 2000, 1000); !strings.Contains(r, "kv_max_value_size") {
		t.Fatalf("reason %q", r)
	}
	if r := sizeFailure(DefaultLimits, 400000, n); !strings.Contains(r, "txn_max_req_len") {
		t.Fatalf("reason %q", r)
	}
}

// naiveBatch is the obvious way: marshal the candidate transaction with
// consul/api to see whether one more op fits.
func naiveBatch(b *testing.B, fence Fence, keys []string, data []byte) int {
	var n int
	var cur []Op
	for i, k := range keys {
		next := append(cur, Op{Verb: VerbSet, Key: k, Value: append([]byte(nil), data...), Flags: uint64(i)})
		if len(next)+1 > 128 || len(apiBody(b, fence, next)) > DefaultLimits.MaxBody {
			n++
			cur = []Op{next[len(next)-1]}
			continue
		}
		cur = next
	}
	return n
}

func BenchmarkBatch(b *testing.B) {
	fence := Fence{LockKey: "apcera/store3/jmdb/migration/.lock", Session: "0b6b7a7e-4b8c-5b77-6f6c-111111111111"}
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = fmt.Sprintf("apcera/store3/jmdb/jobs/job=3A=3Aweb%05d", i)
	}
	data := make([]byte, 200)
	b.Run("Batcher", func(b *testing.B) {
		b.ReportAllocs()
		bt := NewBatcher(DefaultLimits, fence, 4)
		for b.Loop() {
			for i, k := range keys {
				if full := bt.Add(k, uint64(i), data); full != nil {
					bt.Recycle(full)
				}
			}
		}
		b.ReportMetric(float64(b.N*len(keys))/b.Elapsed().Seconds(), "records/s")
	})
	b.Run("marshal-each", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			naiveBatch(b, fence, keys, data)
		}
		b.ReportMetric(float64(b.N*len(keys))/b.Elapsed().Seconds(), "records/s")
	})
}

func TestBatcherDeletesMatchConsulAPI(t *testing.T) {
	fence := Fence{LockKey: "apcera/store3/jmdb/migration/.lock", Session: "0b6b7a7e-4b8c-5b77-6f6c-111111111111"}
	b := NewBatcher(DefaultLimits, fence, 0)
	var batches []*Batch
	for i := range 400 {
		key := fmt.Sprintf("apcera/store3/jmdb/jobs/k=3A%05d", i)
		var full *Batch
		if i%3 == 0 {
			full = b.AddDelete(key)
		} else {
			full = b.Add(key, uint64(i), bytes.Repeat([]byte{1}, 100))
		}
		if full != nil {
			batches = append(batches, full)
		}
	}
	batches = append(batches, b.Flush())
	n, dels := 0, 0
	for i, x := range batches {
		n += len(x.Ops)
		if body := apiBody(t, fence, x.Ops); x.Body != len(body) || len(x.Ops)+1 > DefaultLimits.MaxOps {
			t.Fatalf("batch %d: Body %d, consul/api sends %d; %d ops", i, x.Body, len(body), len(x.Ops))
		}
		for _, op := range x.Ops {
			if op.Verb == VerbDelete && op.Value == nil {
				dels++
			}
		}
	}
	if n != 400 || dels != 134 || int(batches[0].Records) != 127 {
		t.Fatalf("%d ops, first batch %d records", n, batches[0].Records)
	}
}

func TestAppendTxnIsConsulAPIsBody(t *testing.T) {
	keys := []string{"a", "", "apcera/store3/jmdb/jobs/job=3A=3Aweb", "x<y>&\"\\\n\t\b\f\x01é\u2028\xff", strings.Repeat("k", 300)}
	values := [][]byte{nil, {}, {0}, []byte("hello"), bytes.Repeat([]byte{0xff, 1, '"'}, 700)}
	fences := []Fence{{}, {LockKey: "apcera/store3/jmdb/migration/.lock", Session: "0b6b7a7e-4b8c-5b77-6f6c-111111111111"}, {LockKey: "l<&>\x00", Session: "s\"\u2029"}}
	var ops []Op
	for i, key := range keys {
		for j, v := range values {
			verb := []Verb{VerbSet, VerbDelete, VerbDeleteTree, VerbCheckNotExists, VerbCheckIndex}[(i+j)%5]
			ops = append(ops, Op{Verb: verb, Key: key, Value: v, Flags: []uint64{0, 7, math.MaxUint64}[j%3], Index: uint64(i * j * 1000003)})
		}
	}
	for _, fence := range fences {
		for n := 1; n <= len(ops); n += 6 {
			want := apiBody(t, fence, ops[:n])
			if got := AppendTxn(nil, fence, ops[:n]); !bytes.Equal(got, want) {
				t.Fatalf("fence %+v, %d ops:\nAppendTxn %s\nconsul/api %s", fence, n, got, want)
			}
		}
	}
	// What AppendTxn writes is what the batches' sizes count.
	fence := fences[1]
	b := NewBatcher(DefaultLimits, fence, 0)
	for i := range 300 {
		full := b.Add(fmt.Sprintf("apcera/store3/jmdb/jobs/k=3A%05d", i), uint64(i), bytes.Repeat([]byte{byte(i)}, i))
		if full == nil {
			continue
		}
		if got := AppendTxn(nil, fence, full.Ops); len(got) != full.Body {
			t.Fatalf("batch of %d ops: Body %d, AppendTxn wrote %d bytes", len(full.Ops), full.Body, len(got))
		}
	}
}

// BenchmarkTxnBody writes the body of a full transaction of the copy (the
// fence and 127 sets of 200-byte values): AppendTxn against the obvious
// way, consul/api's encoding/json over api.TxnOps.
func BenchmarkTxnBody(b *testing.B) {
	fence := Fence{LockKey: "apcera/store3/jmdb/migration/.lock", Session: "0b6b7a7e-4b8c-5b77-6f6c-111111111111"}
	ops := make([]Op, 127)
	for i := range ops {
		ops[i] = Op{Verb: VerbSet, Key: fmt.Sprintf("apcera/store3/jmdb/jobs/job=3A=3A=2Fsandbox=2Fteam-%d=3A=3Aapp-%08d", i%97, i),
			Value: bytes.Repeat([]byte{byte(i)}, 200), Flags: uint64(i%1000 + 1)}
	}
	size := len(AppendTxn(nil, fence, ops))
	b.Run("AppendTxn", func(b *testing.B) {
		b.SetBytes(int64(size))
		b.ReportAllocs()
		for b.Loop() {
			AppendTxn(nil, fence, ops)
		}
	})
	b.Run("consulapi-json", func(b *testing.B) {
		b.SetBytes(int64(size))
		b.ReportAllocs()
		for b.Loop() {
			apiBody(b, fence, ops)
		}
	})
}
