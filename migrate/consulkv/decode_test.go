package consulkv

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/hashicorp/consul/api"

	"github.com/apcera/deployhook/migrate"
)

// refPair is what decodeKVList must agree with: the fields Scan reads,
// decoded by encoding/json.
type refPair struct {
	Key         string
	Flags       uint64
	Value       []byte
	ModifyIndex uint64
	Session     string
}

// refDecode is the reference: json.Unmarshal into a slice of refPair.
func refDecode(data []byte) ([]migrate.Pair, error) {
	var ps []refPair
	if err := json.Unmarshal(data, &ps); err != nil {
		return nil, err
	}
	out := make([]migrate.Pair, len(ps))
	for i, p := range ps {
		out[i] = migrate.Pair{Key: p.Key, Value: p.Value, Flags: p.Flags, ModifyIndex: p.ModifyIndex, Session: p.Session}
	}
	return out, nil
}

// decodeAll runs decodeKVList over r and keeps a deep copy of every pair,
// as a caller must.
func decodeAll(r io.Reader) ([]migrate.Pair, error) {
	var out []migrate.Pair
	err := decodeKVList(r, func(p *migrate.Pair) error {
		q := *p
		if p.Value != nil {
			q.Value = append([]byte{}, p.Value...)
		}
		out = append(out, q)
		return nil
	})
	return out, err
}

// samePairs compares two decodings, nil and empty values told apart.
func samePairs(a, b []migrate.Pair) string {
	if len(a) != len(b) {
		return fmt.Sprintf("%d pairs, want %d", len(a), len(b))
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.Key != y.Key || x.Flags != y.Flags || x.ModifyIndex != y.ModifyIndex || x.Session != y.Session ||
			!bytes.Equal(x.Value, y.Value) || (x.Value == nil) != (y.Value == nil) {
			return fmt.Sprintf("pair %d: %+v (nil value %t), want %+v (nil value %t)", i, x, x.Value == nil, y, y.Value == nil)
		}
	}
	return ""
}

// checkAgainstRef decodes data with decodeKVList, from one buffer and one
// byte at a time: both must agree on acceptance, and what decodeKVList
// accepts, encoding/json must decode to the same pairs. It returns whether
// decodeKVList accepted data.
func checkAgainstRef(t *testing.T, data []byte) (accepted bool) {
	t.Helper()
	got, err := decodeAll(bytes.NewReader(data))
	got1, err1 := decodeAll(iotest.OneByteReader(bytes.NewReader(data)))
	if (err == nil) != (err1 == nil) || samePairs(got, got1) != "" {
		t.Fatalf("decodeKVList(%q): whole %v, bytewise %v", data, err, err1)
	}
	if err != nil {
		return false
	}
	want, werr := refDecode(data)
	if werr != nil {
		t.Fatalf("decodeKVList accepts %q, encoding/json does not: %v", data, werr)
	}
	if d := samePairs(got, want); d != "" {
		t.Fatalf("decodeKVList(%q): %s", data, d)
	}
	return true
}

func TestKVListTable(t *testing.T) {
	elem := `{"LockIndex":0,"Key":"apcera/store3/jmdb/jobs/job=3A=3Aweb","Flags":7,"Value":"aGVsbG8=","CreateIndex":12,"ModifyIndex":12}`
	tests := []struct {
		name string
		in   string
		want []migrate.Pair // nil: rejected
	}{
		{"consul", `[` + elem + `]`, []migrate.Pair{{Key: "apcera/store3/jmdb/jobs/job=3A=3Aweb", Value: []byte("hello"), Flags: 7, ModifyIndex: 12}}},
		{"two", `[` + elem + `,` + elem + "]\n", []migrate.Pair{{Key: "apcera/store3/jmdb/jobs/job=3A=3Aweb", Value: []byte("hello"), Flags: 7, ModifyIndex: 12}, {Key: "apcera/store3/jmdb/jobs/job=3A=3Aweb", Value: []byte("hello"), Flags: 7, ModifyIndex: 12}}},
		{"lock key", `[{"LockIndex":1,"Key":"l","Flags":3304,"Value":null,"Session":"4ca8e74b-6350","CreateIndex":5,"ModifyIndex":6}]`,
			[]migrate.Pair{{Key: "l", Flags: 3304, ModifyIndex: 6, Session: "4ca8e74b-6350"}}},
		{"enterprise fields", `[{"Key":"k","Namespace":"default","Partition":"default","Value":"AA=="}]`, []migrate.Pair{{Key: "k", Value: []byte{0}}}},
		{"empty array", `[]`, []migrate.Pair{}},
		{"pretty", " \t\r\n[ { \"Key\" : \"k\" ,\n \"Flags\"\t:\n1 ,\r\"Value\" : \"AA==\" } , { } ] \n", []migrate.Pair{{Key: "k", Flags: 1, Value: []byte{0}}, {}}},
		{"value empty", `[{"Key":"k","Value":""}]`, []migrate.Pair{{Key: "k", Value: []byte{}}}},
		{"value then null", `[{"Value":"AQID","Value":null}]`, []migrate.Pair{{}}},
		{"duplicate last wins", `[{"Key":"a","Key":"b","Flags":1,"Flags":2}]`, []migrate.Pair{{Key: "b", Flags: 2}}},
		{"huge flags", `[{"Flags":18446744073709551615,"ModifyIndex":18446744073709551615}]`, []migrate.Pair{{Flags: 1<<64 - 1, ModifyIndex: 1<<64 - 1}}},
		{"escapes", `[{"Key":"a\"b\\c\/d\be\ff\ng\rh\ti\u0000j\u003ck\u003el\u0026m\u2028"}]`, []migrate.Pair{{Key: "a\"b\\c/d\be\ff\ng\rh\ti\x00j<k>l&m\u2028"}}},
		{"escaped backslash before quote", `[{"Key":"a\\\\","Session":"s"}]`, []migrate.Pair{{Key: `a\\`, Session: "s"}}},
		{"surrogate pair", `[{"Key":"\ud83d\ude00"}]`, []migrate.Pair{{Key: "😀"}}},
		{"utf8", `[{"Key":"jöb/日本/😀"}]`, []migrate.Pair{{Key: "jöb/日本/😀"}}},

		{"top null", `null`, nil},
		{"null element", `[null]`, nil},
		{"key null", `[{"Key":null}]`, nil},
		{"flags null", `[{"Flags":null}]`, nil},
		{"unknown field", `[{"Key":"k","X":1}]`, nil},
		{"other case", `[{"key":"k"}]`, nil},
		{"escaped field name", `[{"\u004bey":"a"}]`, nil},
		{"value array", `[{"Value":[1,2,255]}]`, nil},
		{"value number", `[{"Value":1}]`, nil},
		{"value escaped", `[{"Value":"\u0041QID"}]`, nil},
		{"value line break escaped", `[{"Value":"AQ\nID"}]`, nil},
		{"value raw line break", "[{\"Value\":\"AQ\nID\"}]", nil},
		{"bad base64", `[{"Value":"AQI"}]`, nil},
		{"base64 no padding", `[{"Value":"AQ"}]`, nil},
		{"flags overflow", `[{"Flags":18446744073709551616}]`, nil},
		{"flags overflow long", `[{"Flags":100000000000000000000}]`, nil},
		{"flags negative", `[{"Flags":-1}]`, nil},
		{"flags fraction", `[{"Flags":1.0}]`, nil},
		{"flags exponent", `[{"Flags":1e3}]`, nil},
		{"flags string", `[{"Flags":"1"}]`, nil},
		{"flags leading zero", `[{"Flags":01}]`, nil},
		{"key number", `[{"Key":1}]`, nil},
		{"control char in string", "[{\"Key\":\"a\tb\"}]", nil},
		{"invalid utf8 as encoding/json coerces it", "[{\"Key\":\"a\xffb\"}]", []migrate.Pair{{Key: "a\uFFFDb"}}},
		{"truncated", `[{"Key":"k"`, nil},
		{"truncated string", `[{"Key":"k`, nil},
		{"truncated null", `[{"Value":nu`, nil},
		{"empty input", ``, nil},
		{"trailing comma", `[{"Key":"k"},]`, nil},
		{"trailing comma object", `[{"Key":"k",}]`, nil},
		{"missing colon", `[{"Key" "k"}]`, nil},
		{"missing comma", `[{"Key":"k" "Flags":1}]`, nil},
		{"trailing garbage", `[] x`, nil},
		{"two arrays", `[][]`, nil},
		{"top object", `{}`, nil},
		{"array element", `[[]]`, nil},
		{"bom", "\ufeff[]", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if ok := checkAgainstRef(t, []byte(tt.in)); ok != (tt.want != nil) {
				t.Fatalf("decodeKVList accepts %q: %t, want %t", tt.in, ok, tt.want != nil)
			}
			if tt.want == nil {
				return
			}
			got, _ := decodeAll(strings.NewReader(tt.in))
			if d := samePairs(got, tt.want); d != "" {
				t.Fatal(d)
			}
		})
	}
}

// Keys and values longer than the read buffer, across many reads.
func TestKVListLongTokens(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var pairs []*api.KVPair
	for i, n := range []int{0, 1, 1000, 32 << 10, 100 << 10, 700 << 10} {
		v := make([]byte, n)
		for j := range v {
			v[j] = byte(rng.Uint32())
		}
		pairs = append(pairs, &api.KVPair{Key: fmt.Sprintf("k/%d/%s", i, strings.Repeat("<&>\\\"", n/7)), Value: v, Flags: uint64(n)})
	}
	data, err := json.Marshal(pairs)
	if err != nil {
		t.Fatal(err)
	}
	want, err := refDecode(data)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []io.Reader{bytes.NewReader(data), iotest.HalfReader(bytes.NewReader(data)), iotest.DataErrReader(bytes.NewReader(data))} {
		got, err := decodeAll(r)
		if err != nil {
			t.Fatal(err)
		}
		if d := samePairs(got, want); d != "" {
			t.Fatal(d)
		}
	}
}

// fn's error stops the decoding and comes back as is; a read error comes
// back as is; a truncated body is io.ErrUnexpectedEOF; anything else is
// errMalformed, with the offset of the offending byte.
func TestKVListErrors(t *testing.T) {
	stop := errors.New("stop")
	n := 0
	err := decodeKVList(strings.NewReader(`[{"Key":"a"},{"Key":"b"},{"Key":"c"}]`), func(*migrate.Pair) error {
		if n++; n == 2 {
			return stop
		}
		return nil
	})
	if err != stop || n != 2 {
		t.Errorf("fn's error: got %v after %d pairs", err, n)
	}

	boom := errors.New("connection reset by peer")
	err = decodeKVList(io.MultiReader(strings.NewReader(`[{"Key":"a"},{"Ke`), iotest.ErrReader(boom)), func(*migrate.Pair) error { return nil })
	if !errors.Is(err, boom) {
		t.Errorf("read error: got %v", err)
	}

	for _, in := range []string{`[{"Key":"a"}`, `[{"Key":"a`, `[`, `[{"Flags":12`, `[{"Value":nu`, `[{"Key":"\u00`, `[{"Key":"a\"`} {
		err = decodeKVList(strings.NewReader(in), func(*migrate.Pair) error { return nil })
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("truncated %q: got %v, want io.ErrUnexpectedEOF", in, err)
		}
	}

	err = decodeKVList(strings.NewReader(`[{"Key":"a","Flags":1} x`), func(*migrate.Pair) error { return nil })
	if !errors.Is(err, errMalformed) || !strings.Contains(err.Error(), "at byte 23") {
		t.Errorf("syntax error: got %v", err)
	}
	err = decodeKVList(strings.NewReader(`[{"Key":"a","Flag":1}]`), func(*migrate.Pair) error { return nil })
	if !errors.Is(err, errMalformed) || !strings.Contains(err.Error(), `unexpected field "Flag"`) {
		t.Errorf("unknown field: got %v", err)
	}

	err = decodeKVList(stuckReader{}, func(*migrate.Pair) error { return nil })
	if !errors.Is(err, io.ErrNoProgress) {
		t.Errorf("stuck reader: got %v", err)
	}
}

type stuckReader struct{}

func (stuckReader) Read([]byte) (int, error) { return 0, nil }

// kvSeeds are listings as Consul writes them, and edge cases.
func kvSeeds() [][]byte {
	var seeds [][]byte
	add := func(ps []*api.KVPair) {
		data, err := json.Marshal(ps)
		if err != nil {
			panic(err)
		}
		seeds = append(seeds, data)
		indented, _ := json.MarshalIndent(ps, "", "  ")
		seeds = append(seeds, indented)
	}
	add([]*api.KVPair{})
	add([]*api.KVPair{{Key: "apcera/store3/jmdb/jobs/job=3A=3Aweb", Flags: 7, Value: []byte("some record"), CreateIndex: 12, ModifyIndex: 12}})
	add([]*api.KVPair{
		{Key: "apcera/store3/jmdb/migration/.lock", Flags: 0x3304, Session: "4ca8e74b-6350-7587-addf-a18084928f3c", LockIndex: 1, CreateIndex: 5, ModifyIndex: 6},
		{Key: "apcera/store3/jmdb/x<y>&z", Value: []byte{}, Flags: 1<<64 - 1, ModifyIndex: 1<<64 - 1, Namespace: "default", Partition: "default"},
		{Key: "apcera/store3/jmdb/\u2028\x00\xff😀\\\"", Value: []byte{0, 0xff, '"', '\\'}, Flags: 1},
	})
	for _, s := range []string{
		`[{"Value":"AQID","Value":null}]`, `[{"Key":"\ud83d\ude00\ud83d\u0041\ude00"}]`,
		`null`, `[]`, ` [ ] `, `[{"Flags":18446744073709551616}]`, `[{"Flags":1e3}]`, `[{"Value":"AQI"}]`,
	} {
		seeds = append(seeds, []byte(s))
	}
	return seeds
}

// FuzzKVList: whatever decodeKVList accepts, encoding/json decodes to the
// same pairs.
func FuzzKVList(f *testing.F) {
	for _, s := range kvSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkAgainstRef(t, data)
	})
}

// FuzzKVListConsul: decodeKVList accepts what Consul writes, listings
// encoding/json makes of KV pairs, whatever their keys, values, flags,
// indexes and sessions, and decodes them as encoding/json does.
func FuzzKVListConsul(f *testing.F) {
	f.Add("apcera/store3/jmdb/jobs/job=3A=3Aweb", []byte("v"), uint64(7), uint64(12), "", 2)
	f.Add("k\x00\xff<>&\u2028\"\\", []byte{}, uint64(1<<64-1), uint64(0), "4ca8e74b", 0)
	f.Fuzz(func(t *testing.T, key string, value []byte, flags, index uint64, session string, n int) {
		ps := []*api.KVPair{{Key: key, Value: value, Flags: flags, ModifyIndex: index, CreateIndex: index / 2, LockIndex: flags % 3, Session: session}}
		for i := range n % 4 {
			ps = append(ps, &api.KVPair{Key: fmt.Sprint(key, i), Value: value[:len(value)*i/4], Flags: flags >> i, Namespace: session})
		}
		data, err := json.Marshal(ps)
		if err != nil {
			t.Fatal(err)
		}
		if !checkAgainstRef(t, data) {
			_, err := decodeAll(bytes.NewReader(data))
			t.Fatalf("decodeKVList rejects what Consul writes, %q: %v", data, err)
		}
	})
}

// benchListing is a realistic listing: n pairs, keys like the migration's,
// 200-byte values.
func benchListing(b *testing.B, n int) []byte {
	rng := rand.New(rand.NewPCG(3, 4))
	ps := make([]*api.KVPair, n)
	for i := range ps {
		v := make([]byte, 200)
		for j := range v {
			v[j] = byte(rng.Uint32())
		}
		idx := uint64(1000 + i)
		ps[i] = &api.KVPair{Key: fmt.Sprintf("apcera/store3/jmdb/jobs/job=3A=3Aweb-%06d", i), Flags: 7, Value: v, CreateIndex: idx, ModifyIndex: idx}
	}
	data, err := json.Marshal(ps)
	if err != nil {
		b.Fatal(err)
	}
	return data
}

const benchPairs = 10000

// benchDecode runs decode over a listing of benchPairs pairs per iteration;
// ns/pair is the figure to read.
func benchDecode(b *testing.B, decode func(r io.Reader, fn func(*migrate.Pair) error) error) {
	data := benchListing(b, benchPairs)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	var sum uint64
	for b.Loop() {
		n := 0
		err := decode(bytes.NewReader(data), func(p *migrate.Pair) error {
			n++
			sum += p.Flags + uint64(len(p.Value)) + uint64(len(p.Key))
			return nil
		})
		if err != nil || n != benchPairs {
			b.Fatal(n, err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchPairs), "ns/pair")
}

func BenchmarkKVList(b *testing.B) { benchDecode(b, decodeKVList) }

// BenchmarkKVListEncodingJSON is the obvious streaming alternative: a
// json.Decoder, one Decode per element.
func BenchmarkKVListEncodingJSON(b *testing.B) {
	benchDecode(b, func(r io.Reader, fn func(*migrate.Pair) error) error {
		dec := json.NewDecoder(r)
		if _, err := dec.Token(); err != nil {
			return err
		}
		for dec.More() {
			var p refPair
			if err := dec.Decode(&p); err != nil {
				return err
			}
			if err := fn(&migrate.Pair{Key: p.Key, Value: p.Value, Flags: p.Flags, ModifyIndex: p.ModifyIndex, Session: p.Session}); err != nil {
				return err
			}
		}
		_, err := dec.Token()
		return err
	})
}
