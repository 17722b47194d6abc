//go:build integration

package consulkv_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/consul/api"

	"github.com/apcera/deployhook/integration/harness"
	"github.com/apcera/deployhook/migrate"
	"github.com/apcera/deployhook/migrate/consulkv"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestLimits(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts []harness.ConsulOption
		want migrate.Limits
	}{
		{"defaults", nil, migrate.Limits{MaxOps: 128, MaxBody: 524288, MaxValue: 524288, FromServer: true}},
		{"txn larger", []harness.ConsulOption{harness.WithLimits(300000, 100000)},
			migrate.Limits{MaxOps: 128, MaxBody: 300000, MaxValue: 100000, FromServer: true}},
		{"value larger", []harness.ConsulOption{harness.WithLimits(100000, 200000)},
			migrate.Limits{MaxOps: 128, MaxBody: 200000, MaxValue: 200000, FromServer: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := shared
			if tt.opts != nil {
				c = harness.StartConsul(t, tt.opts...)
			}
			got := newStore(t, c, "").Limits(ctxT(t))
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("Limits (-want +got):\n%s", d)
			}
		})
	}
}

func TestTxnOpsLimit(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	s := newStore(t, shared, "")
	p := prefix(t)
	lock, err := s.TryLock(ctx, p+"migration/.lock", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Unlock(ctx)
	fence := migrate.Fence{LockKey: p + "migration/.lock", Session: lock.Session()}
	sets := func(n int) []migrate.Op {
		ops := make([]migrate.Op, n)
		for i := range ops {
			ops[i] = migrate.Op{Verb: migrate.VerbSet, Key: fmt.Sprintf("%sk/%03d", p, i), Value: []byte("v")}
		}
		return ops
	}
	if err := s.Txn(ctx, migrate.Fence{}, sets(128)); err != nil {
		t.Errorf("128 ops: %v", err)
	}
	if err := s.Txn(ctx, fence, sets(127)); err != nil {
		t.Errorf("fence and 127 ops: %v", err)
	}
	for name, err := range map[string]error{
		"129 ops":           s.Txn(ctx, migrate.Fence{}, sets(129)),
		"fence and 128 ops": s.Txn(ctx, fence, sets(128)),
	} {
		if !errors.Is(err, migrate.ErrTooLarge) || !strings.Contains(err.Error(), "Transaction contains too many operations (129 > 128)") {
			t.Errorf("%s: %v, want ErrTooLarge: too many operations (129 > 128)", name, err)
		}
		if migrate.IsTransient(err) {
			t.Errorf("%s: transient", name)
		}
	}
}

// encodedSize is the size of the body consul/api sends for ops.
func encodedSize(t *testing.T, ops api.TxnOps) int {
	var b bytes.Buffer
	if err := json.NewEncoder(&b).Encode(ops); err != nil {
		t.Fatal(err)
	}
	return b.Len()
}

func TestTxnBodyLimit(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	c := harness.StartConsul(t, harness.WithLimits(100000, 60000))
	s := newStore(t, c, "")
	limits := s.Limits(ctx)
	if limits.MaxBody != 100000 {
		t.Fatalf("MaxBody = %d, want 100000", limits.MaxBody)
	}
	const lockKey = "apcera/store3/jmdb/migration/.lock"
	lock, err := s.TryLock(ctx, lockKey, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Unlock(ctx)
	fence := migrate.Fence{LockKey: lockKey, Session: lock.Session()}

	// A fenced set whose body is exactly MaxBody: value 60000 bytes (at
	// kv_max_value_size) and a key padded to the last byte.
	value := bytes.Repeat([]byte{0xff}, 60000)
	op := func(key string) api.TxnOps {
		return api.TxnOps{
			{KV: &api.KVTxnOp{Verb: api.KVCheckSession, Key: fence.LockKey, Session: fence.Session}},
			{KV: &api.KVTxnOp{Verb: api.KVSet, Key: key, Value: value, Flags: math.MaxUint64}},
		}
	}
	key := "apcera/store3/jmdb/big/"
	key += strings.Repeat("k", limits.MaxBody-encodedSize(t, op(key)))
	if n := encodedSize(t, op(key)); n != limits.MaxBody {
		t.Fatalf("body %d bytes, want %d", n, limits.MaxBody)
	}
	// The migration's own size model agrees with consul/api's encoding.
	fenceOp := encodedSize(t, op(key)[:1]) - len("[]\n")
	if got := migrate.BodySize(2, fenceOp+migrate.OpSize(key, len(value))); got != limits.MaxBody {
		t.Errorf("migrate.BodySize = %d, consul/api encodes %d", got, limits.MaxBody)
	}
	set := migrate.Op{Verb: migrate.VerbSet, Key: key, Value: value, Flags: math.MaxUint64}
	if err := s.Txn(ctx, fence, []migrate.Op{set}); err != nil {
		t.Errorf("body of exactly MaxBody: %v", err)
	}
	set.Key += "k"
	err = s.Txn(ctx, fence, []migrate.Op{set})
	if !errors.Is(err, migrate.ErrTooLarge) || !strings.Contains(err.Error(), "Request body(100001 bytes) too large, max size: 100000 bytes") {
		t.Errorf("body of MaxBody+1: %v, want ErrTooLarge", err)
	}
	// A value over kv_max_value_size in a body that fits.
	set = migrate.Op{Verb: migrate.VerbSet, Key: "apcera/store3/jmdb/big/v", Value: make([]byte, 60001)}
	err = s.Txn(ctx, fence, []migrate.Op{set})
	t.Logf("value over kv_max_value_size: %v", err)
	if err == nil {
		t.Errorf("a value of 60001 bytes was stored with kv_max_value_size 60000")
	}
}

func TestFence(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	s := newStore(t, shared, "")
	p := prefix(t)
	lockKey := p + "migration/.lock"
	lock, err := s.TryLock(ctx, lockKey, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	fence := migrate.Fence{LockKey: lockKey, Session: lock.Session()}
	set := func(k string) []migrate.Op {
		return []migrate.Op{{Verb: migrate.VerbSet, Key: p + k, Value: []byte(k), Flags: 7}}
	}
	if err := s.Txn(ctx, fence, set("before")); err != nil {
		t.Fatalf("fenced txn under the lock: %v", err)
	}
	pair, err := s.Get(ctx, lockKey)
	if err != nil || pair == nil || pair.Session != lock.Session() {
		t.Fatalf("lock key = %+v, %v; want held by %s", pair, err, lock.Session())
	}

	if err := s.DestroySession(ctx, lock.Session()); err != nil {
		t.Fatal(err)
	}
	err = s.Txn(ctx, fence, append(set("after"), set("after2")...))
	var te *migrate.TxnError
	if !errors.Is(err, migrate.ErrLockLost) || !errors.As(err, &te) {
		t.Fatalf("fenced txn after DestroySession: %v, want ErrLockLost and *TxnError", err)
	}
	t.Logf("fence error: %v", err)
	for _, k := range []string{"after", "after2"} {
		if p, err := s.Get(ctx, p+k); err != nil || p != nil {
			t.Errorf("%s written by a fenced txn without the lock: %+v, %v", k, p, err)
		}
	}
	select {
	case <-lock.Lost():
	case <-time.After(10 * time.Second):
		t.Error("Lost() not closed 10s after the session was destroyed")
	}
	if err := lock.Unlock(ctx); err != nil {
		t.Errorf("Unlock of a lost lock: %v", err)
	}

	// A check that fails is a TxnError, not a lost lock.
	lock2, err := s.TryLock(ctx, p+"other/.lock", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer lock2.Unlock(ctx)
	err = s.Txn(ctx, migrate.Fence{LockKey: p + "other/.lock", Session: lock2.Session()},
		[]migrate.Op{{Verb: migrate.VerbCheckNotExists, Key: p + "before"}, {Verb: migrate.VerbSet, Key: p + "x"}})
	if !errors.As(err, &te) || errors.Is(err, migrate.ErrLockLost) {
		t.Errorf("failed check-not-exists: %v, want *TxnError and not ErrLockLost", err)
	}
	if got, _ := s.Get(ctx, p+"x"); got != nil {
		t.Errorf("a rolled-back txn wrote %+v", got)
	}
}

func TestLockBusyAndRelease(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	s := newStore(t, shared, "")
	key := prefix(t) + "migration/.lock"
	a, err := s.TryLock(ctx, key, 0)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := s.TryLock(ctx, key, 300*time.Millisecond); !errors.Is(err, migrate.ErrLockBusy) {
		t.Fatalf("second TryLock: %v, want ErrLockBusy", err)
	}
	if d := time.Since(start); d < 250*time.Millisecond || d > 5*time.Second {
		t.Errorf("TryLock waited %v for a wait of 300ms", d)
	}

	// A waiter gets the lock when the holder releases it.
	got := make(chan error, 1)
	go func() {
		b, err := s.TryLock(ctx, key, 20*time.Second)
		if err == nil {
			err = b.Unlock(ctx)
		}
		got <- err
	}()
	time.Sleep(100 * time.Millisecond) // let it block; correctness does not depend on it
	session := a.Session()
	if err := a.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Errorf("waiter: %v", err)
	}
	info, _, err := shared.Client().Session().Info(session, nil)
	if err != nil || info != nil {
		t.Errorf("session after Unlock: %+v, %v; want destroyed", info, err)
	}

	// ctx stops a waiting TryLock at once.
	c, err := s.TryLock(ctx, key, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Unlock(ctx)
	cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	start = time.Now()
	if _, err := s.TryLock(cctx, key, 30*time.Second); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("TryLock with an expiring ctx: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("TryLock returned %v after ctx expired", d)
	}
}

func TestKVReads(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	s := newStore(t, shared, "")
	p := prefix(t)
	var ops []migrate.Op
	for _, k := range []string{"b/2", "a/1", "a/0", "c"} {
		ops = append(ops, migrate.Op{Verb: migrate.VerbSet, Key: p + k, Value: []byte(k), Flags: 42})
	}
	if err := s.Txn(ctx, migrate.Fence{}, ops); err != nil {
		t.Fatal(err)
	}
	keys, err := s.Keys(ctx, p, "/")
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{p + "a/", p + "b/", p + "c"}, keys); d != "" {
		t.Errorf("Keys (-want +got):\n%s", d)
	}
	var got []string
	if err := s.Scan(ctx, p+"a/", func(pr *migrate.Pair) error {
		got = append(got, fmt.Sprintf("%s=%s/%d", pr.Key, pr.Value, pr.Flags))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{p + "a/0=a/0/42", p + "a/1=a/1/42"}, got); d != "" {
		t.Errorf("Scan (-want +got):\n%s", d)
	}
	if pr, err := s.Get(ctx, p+"nope"); pr != nil || err != nil {
		t.Errorf("Get of a missing key = %+v, %v", pr, err)
	}
}

func TestConnectionRefusedIsTransient(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	addr := harness.ClosedAddr(t)
	const token = "0b1c2d3e-secret-token-must-not-leak"
	s, err := consulkv.New(consulkv.Config{Address: addr, Token: token})
	if err != nil {
		t.Fatal(err)
	}
	_, gerr := s.Get(ctx, "k")
	terr := s.Txn(ctx, migrate.Fence{LockKey: "l", Session: "s"}, []migrate.Op{{Verb: migrate.VerbSet, Key: "k"}})
	_, lerr := s.TryLock(ctx, "l", 0)
	for name, err := range map[string]error{"get": gerr, "txn": terr, "lock": lerr} {
		if !migrate.IsTransient(err) {
			t.Errorf("%s: %v, want transient", name, err)
		}
		if err != nil && strings.Contains(err.Error(), token) {
			t.Errorf("%s: the token leaked: %v", name, err)
		}
	}
	if l := s.Limits(ctx); l.FromServer || l.MaxOps != 128 || l.ServerReason == "" {
		t.Errorf("Limits without a server = %+v", l)
	}
}

func TestACL(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	c := harness.StartConsul(t, harness.WithACL())
	const p = "apcera/store3/jmdb/"
	ro, err := c.CreateToken(`key_prefix "apcera/store3/jmdb/" { policy = "read" }`)
	if err != nil {
		t.Fatal(err)
	}
	rw, err := c.CreateToken(`key_prefix "apcera/store3/jmdb/" { policy = "write" }
session_prefix "" { policy = "write" }`)
	if err != nil {
		t.Fatal(err)
	}

	s := newStore(t, c, ro)
	err = s.Txn(ctx, migrate.Fence{}, []migrate.Op{{Verb: migrate.VerbSet, Key: p + "k"}})
	if !errors.Is(err, migrate.ErrPermissionDenied) || !strings.Contains(err.Error(), "permission denied") || migrate.IsTransient(err) {
		t.Errorf("write with a read-only token: %v, want permission denied", err)
	}
	if err != nil && strings.Contains(err.Error(), ro) {
		t.Errorf("the token leaked: %v", err)
	}
	t.Logf("read-only write: %v", err)
	if _, err := s.TryLock(ctx, p+"migration/.lock", 0); err == nil || !strings.Contains(err.Error(), "ermission denied") {
		t.Errorf("lock with a read-only token: %v", err)
	}

	// Without agent:read, the limits are assumed, and the reason says why.
	w := newStore(t, c, rw)
	l := w.Limits(ctx)
	if l.FromServer || !strings.Contains(l.ServerReason, "permission denied") || l.MaxBody != migrate.DefaultLimits.MaxBody {
		t.Errorf("Limits without agent:read = %+v", l)
	}
	lock, err := w.TryLock(ctx, p+"migration/.lock", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Txn(ctx, migrate.Fence{LockKey: p + "migration/.lock", Session: lock.Session()},
		[]migrate.Op{{Verb: migrate.VerbSet, Key: p + "k", Value: []byte("v")}}); err != nil {
		t.Errorf("fenced write with a write token: %v", err)
	}
	if err := lock.Unlock(ctx); err != nil {
		t.Error(err)
	}
	// The dry run's permission probe: check-index that fails, then a set.
	probe := []migrate.Op{{Verb: migrate.VerbCheckIndex, Key: p + "migration/.probe", Index: math.MaxUint64 >> 1}, {Verb: migrate.VerbSet, Key: p + "migration/.probe"}}
	if err := w.Txn(ctx, migrate.Fence{}, probe); !errors.As(err, new(*migrate.TxnError)) {
		t.Errorf("probe with a write token: %v, want a rolled-back txn", err)
	}
	if err := s.Txn(ctx, migrate.Fence{}, probe); !errors.Is(err, migrate.ErrPermissionDenied) {
		t.Errorf("probe with a read-only token: %v, want permission denied", err)
	}
}

func TestNoLeaderIsTransient(t *testing.T) {
	if testing.Short() {
		t.Skip("three servers")
	}
	t.Parallel()
	ctx := ctxT(t)
	cl := harness.StartConsulCluster(t, 3)
	survivor := cl.Servers[2]
	for _, c := range cl.Servers[:2] {
		if err := c.Kill(); err != nil {
			t.Fatal(err)
		}
	}
	s := newStore(t, survivor, "")
	var err error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		err = s.Txn(ctx, migrate.Fence{}, []migrate.Op{{Verb: migrate.VerbSet, Key: "k"}})
		if err != nil {
			break
		}
	}
	if !migrate.IsTransient(err) {
		t.Errorf("txn without a quorum: %v, want transient", err)
	}
	t.Logf("txn without a quorum: %v", err)
}

// TestLeaderFailover: while a leader is elected, writes through a surviving
// server fail as Transient, then succeed, and the lock survives.
func TestLeaderFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("three servers")
	}
	t.Parallel()
	ctx := ctxT(t)
	cl := harness.StartConsulCluster(t, 3)
	leader, err := cl.Leader()
	if err != nil {
		t.Fatal(err)
	}
	var via *harness.Consul
	for _, c := range cl.Servers {
		if c != leader {
			via = c
		}
	}
	s := newStore(t, via, "")
	const lockKey = "apcera/store3/jmdb/migration/.lock"
	lock, err := s.TryLock(ctx, lockKey, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Unlock(ctx)
	fence := migrate.Fence{LockKey: lockKey, Session: lock.Session()}
	if _, err := cl.KillLeader(); err != nil {
		t.Fatal(err)
	}
	var transient int
	for i := 0; ; i++ {
		err := s.Txn(ctx, fence, []migrate.Op{{Verb: migrate.VerbSet, Key: fmt.Sprintf("apcera/store3/jmdb/k/%d", i)}})
		if err == nil {
			break
		}
		if !migrate.IsTransient(err) {
			t.Fatalf("txn during the election: %v, want transient", err)
		}
		transient++
		if ctx.Err() != nil {
			t.Fatalf("no new leader: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("%d transient errors during the election", transient)
	select {
	case <-lock.Lost():
		t.Error("lock lost over a leader election")
	default:
	}
}

// Consul's HTTP server cleans request paths: a list of "a/." would answer
// for "a/". Such reads must fail loudly instead of returning other keys.
func TestDotSegmentsRefused(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	s := newStore(t, shared, "")
	p := prefix(t)
	if err := s.Txn(ctx, migrate.Fence{}, []migrate.Op{{Verb: migrate.VerbSet, Key: p + "a/x", Value: []byte("x")}}); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{p + "a/.", p + "a/..", p + "a/./x"} {
		if err := s.Scan(ctx, k, func(*migrate.Pair) error { return nil }); err == nil {
			t.Errorf("Scan(%q): no error", k)
		}
		if ks, err := s.Keys(ctx, k, "/"); err == nil {
			t.Errorf("Keys(%q) = %q, want an error", k, ks)
		}
		if pr, err := s.Get(ctx, k); err == nil {
			t.Errorf("Get(%q) = %+v, want an error", k, pr)
		}
	}
	n := 0
	if err := s.Scan(ctx, p+"a/.x", func(*migrate.Pair) error { n++; return nil }); err != nil || n != 0 {
		t.Errorf(`Scan("a/.x") = %d pairs, %v; want none and no error`, n, err)
	}
}

// After its holder's session is destroyed, a lock key is free but refused
// for the lock delay: a single attempt is busy, an attempt that may wait
// gets the lock once the delay is over.
func TestLockAfterLockDelay(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	s := newStore(t, shared, "")
	key := prefix(t) + "migration/.lock"
	a, err := s.TryLock(ctx, key, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DestroySession(ctx, a.Session()); err != nil {
		t.Fatal(err)
	}
	<-a.Lost()
	if _, err := s.TryLock(ctx, key, 0); !errors.Is(err, migrate.ErrLockBusy) {
		t.Fatalf("TryLock during the lock delay: %v, want ErrLockBusy", err)
	}
	b, err := s.TryLock(ctx, key, 10*time.Second)
	if err != nil {
		t.Fatalf("TryLock waiting out the lock delay: %v", err)
	}
	if err := b.Unlock(ctx); err != nil {
		t.Error(err)
	}
}

// Scan's listing is consul/api's request like any other: over https with
// CONSUL_CACERT, with the token, CONSUL_HTTP_AUTH's basic auth, and
// uncompressed. A TLS proxy in front of the shared server records the
// listing requests that reach it.
func TestRequestsOverHTTPSWithAuth(t *testing.T) {
	ctx := ctxT(t)
	target, err := url.Parse("http://" + shared.Addr())
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	var mu sync.Mutex
	var listings, txns []http.Header
	var txnBodies [][]byte
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		switch {
		case strings.HasPrefix(r.URL.Path, "/v1/kv/") && r.URL.Query().Has("recurse"):
			listings = append(listings, r.Header.Clone())
		case r.URL.Path == "/v1/txn":
			txns = append(txns, r.Header.Clone())
			b, err := io.ReadAll(r.Body)
			if err != nil {
				t.Error(err)
			}
			txnBodies = append(txnBodies, b)
			r.Body = io.NopCloser(bytes.NewReader(b))
		}
		mu.Unlock()
		proxy.ServeHTTP(w, r)
	}))
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CONSUL_CACERT", ca)
	t.Setenv("CONSUL_HTTP_AUTH", "deploy:hook-secret")
	const token = "5e1f0c2a-scan-token"
	s, err := consulkv.New(consulkv.Config{Address: srv.URL, Token: token}) // https://127.0.0.1:port
	if err != nil {
		t.Fatal(err)
	}
	p := prefix(t)
	ops := []migrate.Op{{Verb: migrate.VerbSet, Key: p + "a", Value: []byte("1")}, {Verb: migrate.VerbSet, Key: p + "b", Value: []byte("2")}}
	if err := s.Txn(ctx, migrate.Fence{}, ops); err != nil {
		t.Fatal(err)
	}
	var got []string
	if err := s.Scan(ctx, p, func(pr *migrate.Pair) error { got = append(got, pr.Key+"="+string(pr.Value)); return nil }); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{p + "a=1", p + "b=2"}, got); d != "" {
		t.Errorf("Scan over https (-want +got):\n%s", d)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(listings) != 1 {
		t.Fatalf("%d listing requests reached the proxy, want 1", len(listings))
	}
	if len(txns) != 1 {
		t.Fatalf("%d transactions reached the proxy, want 1", len(txns))
	}
	// The transaction's body is written by migrate.AppendTxn, not by
	// consul/api, and goes with the same headers; no answer is compressed.
	if want := migrate.AppendTxn(nil, migrate.Fence{}, ops); !bytes.Equal(txnBodies[0], want) {
		t.Errorf("transaction body %q, want %q", txnBodies[0], want)
	}
	wantAuth := "Basic " + base64.StdEncoding.EncodeToString([]byte("deploy:hook-secret"))
	for what, h := range map[string]http.Header{"listing": listings[0], "transaction": txns[0]} {
		if h.Get("X-Consul-Token") != token || h.Get("Authorization") != wantAuth || h.Get("Accept-Encoding") != "identity" {
			t.Errorf("%s request headers: token %q, authorization %q, accept-encoding %q; want the token, %q, identity",
				what, h.Get("X-Consul-Token"), h.Get("Authorization"), h.Get("Accept-Encoding"), wantAuth)
		}
	}
}

// ProbeSession asks Consul, through consul/api like every request, whether
// the token may create the lock's session.
func TestProbeSession(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	c := harness.StartConsul(t, harness.WithACL(), harness.WithUnixSocket())
	may, err := c.CreateToken(`agent_prefix "" { policy = "read" }
session_prefix "" { policy = "write" }`)
	if err != nil {
		t.Fatal(err)
	}
	mayNot, err := c.CreateToken(`agent_prefix "" { policy = "read" }`)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, addr, token string
		ok                bool
	}{
		{"allowed", c.Addr(), may, true},
		{"allowed over unix", c.UnixAddr(), may, true},
		{"denied", c.Addr(), mayNot, false},
		{"denied over unix", c.UnixAddr(), mayNot, false},
		{"ACLs disabled", shared.Addr(), "", true},
	} {
		ok, reason, err := newStoreAt(t, tt.addr, tt.token).ProbeSession(ctx)
		if err != nil || ok != tt.ok {
			t.Errorf("%s: ProbeSession = %t, %q, %v; want %t", tt.name, ok, reason, err, tt.ok)
		}
	}
}

// newStoreAt is a Store on addr with token.
func newStoreAt(t *testing.T, addr, token string) *consulkv.Store {
	t.Helper()
	s, err := consulkv.New(consulkv.Config{Address: addr, Token: token})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestTxnRefusesAnUnknownVerb: Txn refuses a verb that is not the
// migration's before it reaches the server.
func TestTxnRefusesAnUnknownVerb(t *testing.T) {
	s := newStore(t, shared, "")
	err := s.Txn(ctxT(t), migrate.Fence{}, []migrate.Op{{Verb: migrate.Verb(api.KVCAS), Key: prefix(t) + "k"}})
	if err == nil || !strings.Contains(err.Error(), `unsupported verb "cas"`) {
		t.Fatalf("txn with verb cas: %v, want unsupported verb", err)
	}
}
