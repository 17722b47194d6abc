package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/apcera/deployhook/integration/harness"
)

// writerPrefix starts the keys the writers insert, so that the reset can
// delete them and store2 holds the seeded records again.
const writerPrefix = "writer::"

// sqlReadOnly is what a write to a frozen store2 gets (DESIGN.md "Online
// migration and cutover").
const sqlReadOnly = "25006"

// writerSet is a component's writes during an online migration: paced at a
// rate over a few connections, one transaction per write, half updates of
// seeded records, a quarter inserts of new keys, a quarter deletes of the
// keys inserted before.
type writerSet struct {
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	start   time.Time
	applied atomic.Int64
	refused atomic.Int64 // 25006: store2 frozen
	mu      sync.Mutex
	err     error
	stats   writerStats
}

type writerStats struct {
	applied, refused int64
	took             time.Duration
	err              error
}

func (s writerStats) String() string {
	return fmt.Sprintf("%d writes in %v (%.0f/s): %d applied, %d refused because store2 was frozen",
		s.applied+s.refused, s.took.Round(time.Millisecond), float64(s.applied+s.refused)/s.took.Seconds(), s.applied, s.refused)
}

func startWriters(ctx context.Context, pg *harness.Postgres, n, rate, conns int, tag string, vals [][]byte) (*writerSet, error) {
	if rate <= 0 || conns <= 0 {
		return nil, fmt.Errorf("writers: rate %d, connections %d: want both > 0", rate, conns)
	}
	ctx, cancel := context.WithCancel(ctx)
	w := &writerSet{cancel: cancel}
	var cs []*pgx.Conn
	for range conns {
		c, err := pg.Connect(ctx, database)
		if err != nil {
			cancel()
			for _, c := range cs {
				c.Close(context.Background())
			}
			return nil, fmt.Errorf("writers: connect to %s: %w", database, err)
		}
		cs = append(cs, c)
	}
	tokens := make(chan int64)
	w.start = time.Now()
	w.wg.Go(func() {
		defer close(tokens)
		interval := time.Second / time.Duration(rate)
		for seq := int64(0); ; seq++ {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Until(w.start.Add(time.Duration(seq) * interval))):
			}
			select {
			case <-ctx.Done():
				return
			case tokens <- seq:
			}
		}
	})
	for i, c := range cs {
		w.wg.Go(func() {
			defer c.Close(context.Background())
			rng := rand.New(rand.NewPCG(uint64(i), uint64(time.Now().UnixNano())))
			var mine []string // keys this connection inserted and has not deleted
			for seq := range tokens {
				var err error
				var key string
				switch op := seq % 4; {
				case op == 3 && len(mine) > 0:
					key = mine[0]
					if err = execSQL(ctx, c, `DELETE FROM `+pgx.Identifier{table}.Sanitize()+` WHERE bucket = 'jobs' AND key = $1`, key); err == nil {
						mine = mine[1:]
					}
				case op >= 2:
					key = fmt.Sprintf("%s%s-%d-%08d", writerPrefix, tag, i, seq)
					if err = execSQL(ctx, c, `INSERT INTO `+pgx.Identifier{table}.Sanitize()+` (bucket, key, version, data) VALUES ('jobs', $1, 1, $2)`,
						key, vals[seq%26]); err == nil {
						mine = append(mine, key)
					}
				default:
					j := rng.IntN(n)
					r := record(j, nil)
					key = r.Key
					// A value other than the record's, so that the change shows.
					err = execSQL(ctx, c, `UPDATE `+pgx.Identifier{table}.Sanitize()+` SET data = $1, version = version + 1, updated_at = now() WHERE bucket = $2 AND key = $3`,
						vals[(j%26+1+int(seq%25))%26], r.Bucket, r.Key)
				}
				var pgErr *pgconn.PgError
				switch {
				case err == nil:
					w.applied.Add(1)
				case errors.As(err, &pgErr) && pgErr.Code == sqlReadOnly:
					w.refused.Add(1)
				case ctx.Err() != nil:
					return
				default:
					w.mu.Lock()
					w.err = errors.Join(w.err, fmt.Errorf("write %q: %w", key, err))
					w.mu.Unlock()
					return
				}
			}
		})
	}
	return w, nil
}

func execSQL(ctx context.Context, c *pgx.Conn, sql string, args ...any) error {
	_, err := c.Exec(ctx, sql, args...)
	return err
}

// stop stops the writers and returns what they did.
func (w *writerSet) stop() writerStats {
	w.cancel()
	w.wg.Wait()
	return writerStats{applied: w.applied.Load(), refused: w.refused.Load(), took: time.Since(w.start), err: w.err}
}

// count is the number of records in store2.
func count(ctx context.Context, pg *harness.Postgres) (int64, error) {
	c, err := pg.Connect(ctx, database)
	if err != nil {
		return 0, fmt.Errorf("count store2: %w", err)
	}
	defer c.Close(context.Background())
	var n int64
	if err := c.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{table}.Sanitize()).Scan(&n); err != nil {
		return 0, fmt.Errorf("count store2: %w", err)
	}
	return n, nil
}

// deleteWriterKeys deletes the records the writers inserted.
func deleteWriterKeys(ctx context.Context, pg *harness.Postgres) error {
	c, err := pg.Connect(ctx, database)
	if err != nil {
		return fmt.Errorf("delete the writers' records: %w", err)
	}
	defer c.Close(context.Background())
	if _, err := c.Exec(ctx, `DELETE FROM `+pgx.Identifier{table}.Sanitize()+` WHERE bucket = 'jobs' AND key LIKE $1`, writerPrefix+"%"); err != nil {
		return fmt.Errorf("delete the writers' records: %w", err)
	}
	return nil
}
