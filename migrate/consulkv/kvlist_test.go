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

// refPair is what decodeKVList must agree with: the fields ScanPairs reads,
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
// as a caller that respects the PairScanner contract must.
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
// byte at a time, and compares both with the reference.
func checkAgainstRef(t *testing.T, data []byte) (accepted bool) {
	t.Helper()
	want, wantErr := refDecode(data)
	for _, rd := range []struct {
		name string
		r    io.Reader
	}{
		{"whole", bytes.NewReader(data)},
		{"bytewise", iotest.OneByteReader(bytes.NewReader(data))},
	} {
		got, err := decodeAll(rd.r)
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("%s: decodeKVList(%q) error %v; encoding/json error %v", rd.name, data, err, wantErr)
		}
		if err != nil {
			continue
		}
		if d := samePairs(got, want); d != "" {
			t.Fatalf("%s: decodeKVList(%q): %s", rd.name, data, d)
		}
	}
	return wantErr == nil
}

func TestKVListTable(t *testing.T) {
	elem := `{"LockIndex":0,"Key":"apcera/store3/jmdb/jobs/job=3A=3Aweb","Flags":7,"Value":"aGVsbG8=","CreateIndex":12,"ModifyIndex":12}`
	tests := []struct {
		name string
		in   string
		ok   bool
		want []migrate.Pair // checked when not nil, besides the reference
	}{
		{"consul", `[` + elem + `]`, true, []migrate.Pair{{Key: "apcera/store3/jmdb/jobs/job=3A=3Aweb", Value: []byte("hello"), Flags: 7, ModifyIndex: 12}}},
		{"two", `[` + elem + `,` + elem + `]`, true, nil},
		{"empty array", `[]`, true, []migrate.Pair{}},
		{"empty array spaced", " \t\r\n[ \t\r\n] \n", true, []migrate.Pair{}},
		{"top null", `null`, true, []migrate.Pair{}},
		{"null element", `[null]`, true, []migrate.Pair{{}}},
		{"empty object", `[{}]`, true, []migrate.Pair{{}}},
		{"whitespace everywhere", " [ { \"Key\" : \"k\" , \"Flags\"\t:\n1 ,\r\"Value\" : \"AA==\" } , { } ] ", true,
			[]migrate.Pair{{Key: "k", Flags: 1, Value: []byte{0}}, {}}},
		{"other order", `[{"Value":"AQID","ModifyIndex":9,"Session":"s-1","Flags":3,"Key":"k"}]`, true,
			[]migrate.Pair{{Key: "k", Value: []byte{1, 2, 3}, Flags: 3, ModifyIndex: 9, Session: "s-1"}}},
		{"value null", `[{"Key":"k","Value":null}]`, true, []migrate.Pair{{Key: "k"}}},
		{"value absent", `[{"Key":"k"}]`, true, []migrate.Pair{{Key: "k"}}},
		{"value empty", `[{"Key":"k","Value":""}]`, true, []migrate.Pair{{Key: "k", Value: []byte{}}}},
		{"value newline escaped", `[{"Value":"AQ\nI\r\nD"}]`, true, []migrate.Pair{{Value: []byte{1, 2, 3}}}},
		{"value escaped letters", `[{"Value":"\u0041QID"}]`, true, []migrate.Pair{{Value: []byte{1, 2, 3}}}},
		{"value array", `[{"Value":[1,2,255]}]`, true, []migrate.Pair{{Value: []byte{1, 2, 255}}}},
		{"value empty array", `[{"Value":[]}]`, true, []migrate.Pair{{Value: []byte{}}}},
		{"value array over base64", `[{"Value":"AQID","Value":[9,null,null,null]}]`, true, []migrate.Pair{{Value: []byte{9, 2, 3, 0}}}},
		{"value array shorter", `[{"Value":[5,6,7],"Value":[8],"Value":[null,null,null]}]`, true, nil},
		{"value array 256", `[{"Value":[256]}]`, false, nil},
		{"value array negative", `[{"Value":[-1]}]`, false, nil},
		{"value array string", `[{"Value":["a"]}]`, false, nil},
		{"value array nested", `[{"Value":[[1]]}]`, false, nil},
		{"value then null", `[{"Value":"AQID","Value":null}]`, true, []migrate.Pair{{}}},
		{"key null keeps", `[{"Key":"a","Key":null}]`, true, []migrate.Pair{{Key: "a"}}},
		{"duplicate last wins", `[{"Key":"a","Key":"b","Flags":1,"Flags":2}]`, true, []migrate.Pair{{Key: "b", Flags: 2}}},
		{"flags null", `[{"Flags":null,"ModifyIndex":null}]`, true, []migrate.Pair{{}}},
		{"huge flags", `[{"Flags":18446744073709551615,"ModifyIndex":18446744073709551615}]`, true,
			[]migrate.Pair{{Flags: 1<<64 - 1, ModifyIndex: 1<<64 - 1}}},
		{"flags overflow", `[{"Flags":18446744073709551616}]`, false, nil},
		{"flags overflow long", `[{"Flags":100000000000000000000}]`, false, nil},
		{"flags negative", `[{"Flags":-1}]`, false, nil},
		{"flags minus zero", `[{"Flags":-0}]`, false, nil},
		{"flags fraction", `[{"Flags":1.0}]`, false, nil},
		{"flags exponent", `[{"Flags":1e3}]`, false, nil},
		{"flags string", `[{"Flags":"1"}]`, false, nil},
		{"flags bool", `[{"Flags":true}]`, false, nil},
		{"flags leading zero", `[{"Flags":01}]`, false, nil},
		{"key number", `[{"Key":1}]`, false, nil},
		{"key object", `[{"Key":{}}]`, false, nil},
		{"session array", `[{"Session":[]}]`, false, nil},
		{"value number", `[{"Value":1}]`, false, nil},
		{"value bool", `[{"Value":false}]`, false, nil},
		{"value object", `[{"Value":{}}]`, false, nil},
		{"bad base64", `[{"Value":"AQI"}]`, false, nil},
		{"bad base64 char", `[{"Value":"AQ!D"}]`, false, nil},
		{"base64 no padding", `[{"Value":"AQ"}]`, false, nil},
		{"base64 non ascii", `[{"Value":"AQ\u00e9D"}]`, false, nil},
		{"raw newline in value", "[{\"Value\":\"AQ\nID\"}]", false, nil},
		{"escapes", `[{"Key":"a\"b\\c\/d\be\ff\ng\rh\ti\u0000j\u003ck\u003el\u0026m"}]`, true,
			[]migrate.Pair{{Key: "a\"b\\c/d\be\ff\ng\rh\ti\x00j<k>l&m"}}},
		{"surrogate pair", `[{"Key":"\ud83d\ude00"}]`, true, []migrate.Pair{{Key: "😀"}}},
		{"lone high surrogate", `[{"Key":"\ud83dx"}]`, true, []migrate.Pair{{Key: "\uFFFDx"}}},
		{"lone low surrogate", `[{"Key":"\ude00\ud83d\ude00"}]`, true, []migrate.Pair{{Key: "\uFFFD😀"}}},
		{"high then bmp", `[{"Key":"\ud83d\u0041"}]`, true, []migrate.Pair{{Key: "\uFFFDA"}}},
		{"invalid utf8", "[{\"Key\":\"a\xffb\xed\xa0\x80c\"}]", true, []migrate.Pair{{Key: "a\uFFFDb\uFFFD\uFFFD\uFFFDc"}}},
		{"valid utf8", `[{"Key":"jöb/日本"}]`, true, []migrate.Pair{{Key: "jöb/日本"}}},
		{"case insensitive", `[{"key":"a","FLAGS":2,"vAlUe":"AA==","modifyindex":3,"SESSION":"s"}]`, true,
			[]migrate.Pair{{Key: "a", Flags: 2, Value: []byte{0}, ModifyIndex: 3, Session: "s"}}},
		{"kelvin sign key", "[{\"\u212aey\":\"a\"}]", true, []migrate.Pair{{Key: "a"}}},
		{"long s session", "[{\"Se\u017f\u017fion\":\"s\"}]", true, []migrate.Pair{{Session: "s"}}},
		{"escaped field name", `[{"\u004bey":"a","Fl\u0061gs":4}]`, true, []migrate.Pair{{Key: "a", Flags: 4}}},
		{"dotless i", "[{\"Modify\u0131ndex\":5}]", true, []migrate.Pair{{}}},
		{"unknown nested", `[{"Key":"k","X":{"a":[1,{"b":null},true,false,-1.5e+3,"s\u0041",[]],"c":{}},"Namespace":"default","Partition":"default","Y":[[[]]]}]`, true,
			[]migrate.Pair{{Key: "k"}}},
		{"unknown bad nested", `[{"X":{"a":[1,]}}]`, false, nil},
		{"unknown bad literal", `[{"X":tru}]`, false, nil},
		{"unknown bad number", `[{"X":1.}]`, false, nil},
		{"unknown bad exponent", `[{"X":1e}]`, false, nil},
		{"unknown bad escape", `[{"X":"\x"}]`, false, nil},
		{"unknown bad unicode escape", `[{"X":"\u12G4"}]`, false, nil},
		{"control char in string", "[{\"X\":\"a\tb\"}]", false, nil},
		{"truncated", `[{"Key":"k"`, false, nil},
		{"truncated string", `[{"Key":"k`, false, nil},
		{"truncated escape", `[{"Key":"k\u00`, false, nil},
		{"truncated after elem", `[{"Key":"k"},`, false, nil},
		{"truncated array", `[{"Key":"k"}`, false, nil},
		{"truncated number", `[{"Flags":1`, false, nil},
		{"truncated null", `[nul`, false, nil},
		{"empty input", ``, false, nil},
		{"only space", `  `, false, nil},
		{"trailing comma", `[{"Key":"k"},]`, false, nil},
		{"trailing comma object", `[{"Key":"k",}]`, false, nil},
		{"missing colon", `[{"Key" "k"}]`, false, nil},
		{"missing comma", `[{"Key":"k" "Flags":1}]`, false, nil},
		{"trailing garbage", `[] x`, false, nil},
		{"two arrays", `[][]`, false, nil},
		{"top object", `{}`, false, nil},
		{"top string", `"x"`, false, nil},
		{"number element", `[1]`, false, nil},
		{"array element", `[[]]`, false, nil},
		{"string element", `["k"]`, false, nil},
		{"single quotes", `[{'Key':'k'}]`, false, nil},
		{"bom", "\ufeff[]", false, nil},
		{"nul byte ws", "[\x00]", false, nil},
		{"non-string key", `[{1:2}]`, false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if ok := checkAgainstRef(t, []byte(tt.in)); ok != tt.ok {
				t.Fatalf("encoding/json accepts %q: %t, the table says %t", tt.in, ok, tt.ok)
			}
			if tt.want == nil {
				return
			}
			got, err := decodeAll(strings.NewReader(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if d := samePairs(got, tt.want); d != "" {
				t.Fatal(d)
			}
		})
	}
}

// Nesting in an unknown field is limited as encoding/json limits it: 10000
// levels in all, the list and the element included.
func TestKVListDepth(t *testing.T) {
	for _, n := range []int{9997, 9998, 9999, 10000} {
		for _, open := range []string{"[", `{"a":`} {
			closeStr := "]"
			if open != "[" {
				closeStr = "}"
			}
			in := `[{"X":` + strings.Repeat(open, n) + `1` + strings.Repeat(closeStr, n) + `}]`
			ok := checkAgainstRef(t, []byte(in))
			if want := n <= 9998; ok != want {
				t.Errorf("%d levels of %s: accepted %t, want %t", n, open, ok, want)
			}
		}
	}
}

// Keys and values longer than the read buffer, across many reads.
func TestKVListLongTokens(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var pairs []*api.KVPair
	for i, n := range []int{0, 1, 1000, kvSlabMaxValue, kvSlabMaxValue + 1, kvReadSize, 3 * kvReadSize, 700 << 10} {
		v := make([]byte, n)
		for j := range v {
			v[j] = byte(rng.Uint32())
		}
		pairs = append(pairs, &api.KVPair{Key: fmt.Sprintf("k/%d/%s", i, strings.Repeat("<&>", n/7)), Value: v, Flags: uint64(n)})
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

// A caller that keeps the Pair (not only during fn) still sees its value:
// value memory is never written again.
func TestKVListRetainedValues(t *testing.T) {
	var ps []*api.KVPair
	for i := range 2000 {
		ps = append(ps, &api.KVPair{Key: fmt.Sprint(i), Value: bytes.Repeat([]byte{byte(i)}, i%300)})
	}
	data, _ := json.Marshal(ps)
	var kept []migrate.Pair
	if err := decodeKVList(bytes.NewReader(data), func(p *migrate.Pair) error { kept = append(kept, *p); return nil }); err != nil {
		t.Fatal(err)
	}
	want, _ := refDecode(data)
	if d := samePairs(kept, want); d != "" {
		t.Fatal(d)
	}
}

// fn's error stops the decoding and comes back as is; a read error comes
// back wrapped or as is; a truncated body is io.ErrUnexpectedEOF; a reader
// that makes no progress does not hang.
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

	for _, in := range []string{`[{"Key":"a"}`, `[{"Key":"a`, `[`, `[{"Flags":12`, `[{"Key":nu`, `[{"Key":"\u00`} {
		err = decodeKVList(strings.NewReader(in), func(*migrate.Pair) error { return nil })
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("truncated %q: got %v, want io.ErrUnexpectedEOF", in, err)
		}
	}

	err = decodeKVList(strings.NewReader(`[{"Key":"a"} x`), func(*migrate.Pair) error { return nil })
	var se *kvSyntaxError
	if !errors.As(err, &se) || se.Offset != 13 || strings.Contains(err.Error(), "EOF") {
		t.Errorf("syntax error: got %v", err)
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
	add(nil)
	add([]*api.KVPair{})
	add([]*api.KVPair{{Key: "apcera/store3/jmdb/jobs/job=3A=3Aweb", Flags: 7, Value: []byte("some record"), CreateIndex: 12, ModifyIndex: 12}})
	add([]*api.KVPair{
		{Key: "apcera/store3/jmdb/migration/.lock", Flags: 0x3304, Session: "4ca8e74b-6350-7587-addf-a18084928f3c", LockIndex: 1, CreateIndex: 5, ModifyIndex: 6},
		{Key: "apcera/store3/jmdb/x<y>&z", Value: []byte{}, Flags: 1<<64 - 1, ModifyIndex: 1<<64 - 1, Namespace: "default", Partition: "default"},
		{Key: "apcera/store3/jmdb/\u2028\x00\xff😀", Value: []byte{0, 0xff, '"', '\\'}, Flags: 1},
	})
	for _, s := range []string{
		`[{"Value":"AQID","Value":[9,null,null,null]}]`,
		`[{"Value":[5,6,7],"Value":[8],"Value":[null,null,null]}]`,
		`[{"Key":"\ud83d\ude00\ud83d\u0041\ude00","kEY":"x","\u212aey":"y"}]`,
		`[{"Value":"AQ\nID","X":{"a":[1,{"b":null},true,false,-1.5e+3,"s\u0041",[]]}}, null, {}]`,
		`null`, `[]`, ` [ ] `, `[{"Flags":18446744073709551616}]`, `[{"Flags":1e3}]`, `[{"Value":"AQI"}]`,
	} {
		seeds = append(seeds, []byte(s))
	}
	return seeds
}

func FuzzKVList(f *testing.F) {
	for _, s := range kvSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkAgainstRef(t, data)
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

func BenchmarkKVList(b *testing.B) {
	data := benchListing(b, benchPairs)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	var sum uint64
	for b.Loop() {
		n := 0
		err := decodeKVList(bytes.NewReader(data), func(p *migrate.Pair) error {
			n++
			sum += p.Flags + uint64(len(p.Value)) + uint64(len(p.Key))
			return nil
		})
		if err != nil || n != benchPairs {
			b.Fatal(n, err)
		}
	}
}

// BenchmarkKVListEncodingJSON is what ScanPairs did before decodeKVList: a
// json.Decoder, one Decode per element.
func BenchmarkKVListEncodingJSON(b *testing.B) {
	data := benchListing(b, benchPairs)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	var sum uint64
	for b.Loop() {
		n := 0
		dec := json.NewDecoder(bytes.NewReader(data))
		if _, err := dec.Token(); err != nil {
			b.Fatal(err)
		}
		for dec.More() {
			var p struct {
				Key         string
				Flags       uint64
				Value       []byte
				ModifyIndex uint64
				Session     string
			}
			if err := dec.Decode(&p); err != nil {
				b.Fatal(err)
			}
			pair := migrate.Pair{Key: p.Key, Value: p.Value, Flags: p.Flags, ModifyIndex: p.ModifyIndex, Session: p.Session}
			n++
			sum += pair.Flags + uint64(len(pair.Value)) + uint64(len(pair.Key))
		}
		if _, err := dec.Token(); err != nil || n != benchPairs {
			b.Fatal(n, err)
		}
	}
}
