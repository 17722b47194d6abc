//go:build integration

package consulkv_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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
