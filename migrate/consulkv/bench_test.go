//go:build integration

package consulkv_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/apcera/deployhook/integration/harness"
	"github.com/apcera/deployhook/migrate"
	"github.com/apcera/deployhook/migrate/consulkv"
)

// BenchmarkFencedTxn is the ceiling the migration is compared to: full
// transactions (a check-session fence and 127 sets of 200-byte values) with
// 1, 4 and 8 in flight, each level on a fresh disk-backed server. One
// iteration is one transaction; records/s is the figure to read.
func BenchmarkFencedTxn(b *testing.B) {
	for _, inflight := range []int{1, 4, 8} {
		// Started on the parent: a sub-benchmark's cleanups run after each
		// of the runs that calibrate b.N, and the server must outlive them.
		var c *harness.Consul
		b.Run(fmt.Sprintf("inflight=%d", inflight), func(sub *testing.B) {
			if c == nil {
				c = harness.StartConsul(b, harness.WithLogLevel("warn"))
			}
			benchFencedTxn(sub, c, inflight)
		})
	}
}

func benchFencedTxn(b *testing.B, c *harness.Consul, inflight int) {
	ctx := context.Background()
	s, err := consulkv.New(consulkv.Config{Address: c.Addr()})
	if err != nil {
		b.Fatal(err)
	}
	const lockKey = "apcera/store3/jmdb/migration/.lock"
	lock, err := s.TryLock(ctx, lockKey, 10*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	defer lock.Unlock(ctx)
	fence := migrate.Fence{LockKey: lockKey, Session: lock.Session()}
	const perTxn = consulkv.MaxOps - 1
	value := make([]byte, 200)

	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, inflight)
	b.ResetTimer()
	start := time.Now()
	for w := 0; w < inflight; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ops := make([]migrate.Op, perTxn)
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				for j := range ops {
					ops[j] = migrate.Op{Verb: migrate.VerbSet, Key: fmt.Sprintf("apcera/store3/jmdb/bench/%s/%09d", b.Name(), i*perTxn+int64(j)), Value: value, Flags: uint64(i)}
				}
				if err := s.Txn(ctx, fence, ops); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
	b.ReportMetric(float64(b.N*perTxn)/elapsed.Seconds(), "records/s")
}

// BenchmarkScan100k lists 100,000 pairs of 200-byte values (the size
// `make bench-migrate` migrates) from a fresh server, the way verification
// reads store3: Scan, streamed through consul/api. ListAll is the obvious
// way it replaces, consul/api's KV().List, which holds every pair. One
// iteration is one listing of the whole prefix; ns/pair is the figure to
// read.
func BenchmarkScan100k(b *testing.B) {
	const n = 100_000
	ctx := context.Background()
	c := harness.StartConsul(b, harness.WithLogLevel("warn"))
	s, err := consulkv.New(consulkv.Config{Address: c.Addr()})
	if err != nil {
		b.Fatal(err)
	}
	const prefix = "apcera/store3/jmdb/jobs/"
	seed(b, s, n, func(i int) migrate.Op {
		v := make([]byte, 200)
		for j := range v {
			v[j] = byte('a' + (i+j)%26)
		}
		return migrate.Op{Verb: migrate.VerbSet, Key: fmt.Sprintf("%sjob::=2Fsandbox=2Fteam-%d::app-%08d", prefix, i%97, i), Value: v, Flags: uint64(i%1000 + 1)}
	})
	perPair := func(b *testing.B) {
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/pair")
	}
	b.Run("Scan", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var got, size int
			if err := s.Scan(ctx, prefix, func(p *migrate.Pair) error { got++; size += len(p.Value); return nil }); err != nil || got != n || size != 200*n {
				b.Fatalf("Scan: %d pairs, %d bytes, %v", got, size, err)
			}
		}
		perPair(b)
	})
	b.Run("ListAll", func(b *testing.B) {
		b.ReportAllocs()
		kv := c.Client().KV()
		for b.Loop() {
			ps, _, err := kv.List(prefix, (&api.QueryOptions{}).WithContext(ctx))
			if err != nil || len(ps) != n {
				b.Fatalf("List: %d pairs, %v", len(ps), err)
			}
		}
		perPair(b)
	})
}

// seed writes n ops from op in transactions of MaxOps, 8 in flight.
func seed(b *testing.B, s *consulkv.Store, n int, op func(i int) migrate.Op) {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			for {
				t := int(next.Add(1)-1) * consulkv.MaxOps
				if t >= n {
					return
				}
				ops := make([]migrate.Op, 0, consulkv.MaxOps)
				for i := t; i < min(t+consulkv.MaxOps, n); i++ {
					ops = append(ops, op(i))
				}
				if err := s.Txn(context.Background(), migrate.Fence{}, ops); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
}
