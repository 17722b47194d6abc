// Command writer is a stand-in for a platform component that keeps writing
// to store2 while deployhook migrates it: inserts, updates (version + 1) and
// deletes, each in a transaction of its own, at a fixed rate, over several
// connections, until SIGTERM or SIGINT. It never stops on a refused write:
// a component that has not been restarted keeps trying.
//
// Every write is logged as one JSON line to -log:
//
//	{"worker":2,"seq":17,"start":<unix ns>,"end":<unix ns>,"op":"update",
//	 "bucket":"jobs","key":"k000042::/app é","version":3,"sha256":"<hex>",
//	 "outcome":"acked","sqlstate":"","message":""}
//
// outcome is "acked" (COMMIT returned success), "refused" (PostgreSQL
// returned an error with an SQLSTATE: sqlstate and message say which) or
// "error" (no answer, e.g. a broken connection: the write may or may not
// have committed). start and end are wall-clock times taken before BEGIN
// and after the outcome is known. version and sha256 describe the record
// the write leaves (for a delete: the version deleted, no hash).
//
// Each worker owns a disjoint set of keys (the existing records whose
// index modulo -conns is its number, and the keys it inserts), so that the
// writes to one key are sequential and the last acked one is the key's
// state.
//
//	writer -url postgres://postgres@127.0.0.1:5432/jmdb -log w.jsonl -rate 150 -conns 4
//
// The password comes from PGPASSFILE or PGPASSWORD, never the arguments.
package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

type config struct {
	url     string
	table   string
	logPath string
	rate    float64
	conns   int
	buckets []string
	hold    time.Duration
	holdPct int
}

// entry is one logged write.
type entry struct {
	Worker   int    `json:"worker"`
	Seq      int    `json:"seq"`
	Start    int64  `json:"start"`
	End      int64  `json:"end"`
	Op       string `json:"op"`
	Bucket   string `json:"bucket"`
	Key      string `json:"key"`
	Version  int64  `json:"version"`
	SHA256   string `json:"sha256,omitempty"`
	Outcome  string `json:"outcome"`
	SQLState string `json:"sqlstate,omitempty"`
	Message  string `json:"message,omitempty"`
}

func main() {
	var cfg config
	var buckets string
	flag.StringVar(&cfg.url, "url", "", "store2 database URL (password from PGPASSFILE or PGPASSWORD)")
	flag.StringVar(&cfg.table, "table", "store2_records", "store2 record table")
	flag.StringVar(&cfg.logPath, "log", "", "write one JSON line per write to this file (required)")
	flag.Float64Var(&cfg.rate, "rate", 150, "writes per second over all connections")
	flag.IntVar(&cfg.conns, "conns", 4, "connections, each writing its own keys")
	flag.StringVar(&buckets, "buckets", "jobs,routes,packages,policies", "buckets the inserts go to, comma-separated")
	flag.DurationVar(&cfg.hold, "hold", 20*time.Millisecond, "how long a holding write keeps its transaction open after the write")
	flag.IntVar(&cfg.holdPct, "hold-percent", 20, "percentage of writes that hold their transaction open (writes in flight at the freeze)")
	flag.Parse()
	cfg.buckets = strings.Split(buckets, ",")
	if cfg.url == "" || cfg.logPath == "" || cfg.rate <= 0 || cfg.conns < 1 || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: writer -url URL -log FILE [-rate N] [-conns N] [-table T] [-buckets a,b] [-hold D] [-hold-percent P]")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "writer:", err)
		os.Exit(1)
	}
}

// logFile serializes lines from the workers and flushes each one, so that
// a reader polling the file sees every write that has an outcome.
type logFile struct {
	mu sync.Mutex
	f  *os.File
	w  *bufio.Writer
}

func (l *logFile) write(e *entry) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.w.Write(b)
	l.w.WriteByte('\n')
	return l.w.Flush()
}

func run(ctx context.Context, cfg config) error {
	f, err := os.OpenFile(cfg.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open log: %w", err)
	}
	defer f.Close()
	lf := &logFile{f: f, w: bufio.NewWriter(f)}

	owned, err := loadKeys(ctx, cfg)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	errs := make([]error, cfg.conns)
	for i := range cfg.conns {
		w := &worker{id: i, cfg: cfg, log: lf, keys: owned[i], rng: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(i)))}
		wg.Go(func() { errs[i] = w.loop(ctx) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

type recKey struct{ bucket, key string }

// loadKeys reads the existing keys and deals them out to the workers.
func loadKeys(ctx context.Context, cfg config) ([][]recKey, error) {
	c, err := pgx.Connect(ctx, cfg.url)
	if err != nil {
		return nil, fmt.Errorf("connect to store2: %w", err)
	}
	defer c.Close(context.Background())
	rows, err := c.Query(ctx, `SELECT bucket, key FROM `+pgx.Identifier{cfg.table}.Sanitize()+` ORDER BY bucket COLLATE "C", key COLLATE "C"`)
	if err != nil {
		return nil, fmt.Errorf("list keys of %s: %w", cfg.table, err)
	}
	owned := make([][]recKey, cfg.conns)
	i := 0
	for rows.Next() {
		var k recKey
		if err := rows.Scan(&k.bucket, &k.key); err != nil {
			return nil, fmt.Errorf("list keys of %s: %w", cfg.table, err)
		}
		owned[i%cfg.conns] = append(owned[i%cfg.conns], k)
		i++
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list keys of %s: %w", cfg.table, err)
	}
	return owned, nil
}

type worker struct {
	id   int
	cfg  config
	log  *logFile
	keys []recKey
	rng  *rand.Rand
	conn *pgx.Conn
	seq  int
	ins  int
}

func (w *worker) loop(ctx context.Context) error {
	defer func() {
		if w.conn != nil {
			w.conn.Close(context.Background())
		}
	}()
	interval := time.Duration(float64(time.Second) * float64(w.cfg.conns) / w.cfg.rate)
	next := time.Now()
	for {
		next = next.Add(interval)
		if d := time.Until(next); d > 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(d):
			}
		} else if ctx.Err() != nil {
			return nil
		} else if d < -time.Second {
			next = time.Now() // fell behind: do not burst to catch up
		}
		if err := w.one(); err != nil {
			return err
		}
	}
}

// one does one write and logs it. Only a failure to log is an error: a
// write that fails is what the log is for.
func (w *worker) one() error {
	w.seq++
	e := &entry{Worker: w.id, Seq: w.seq, Start: time.Now().UnixNano()}
	if w.conn == nil || w.conn.IsClosed() {
		// The write's own timeout must not be the shared context's: a
		// write in flight when SIGTERM comes still gets its outcome.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, err := pgx.Connect(ctx, w.cfg.url)
		cancel()
		if err != nil {
			e.Op, e.Outcome, e.Message = "connect", "error", err.Error()
			e.End = time.Now().UnixNano()
			return w.log.write(e)
		}
		w.conn = c
	}
	var data []byte
	idx := -1
	switch p := w.rng.IntN(100); {
	case len(w.keys) == 0 || p < 40:
		w.ins++
		e.Op = "insert"
		e.Bucket = w.cfg.buckets[w.rng.IntN(len(w.cfg.buckets))]
		e.Key = fmt.Sprintf("w%d/%d-%06d::/new é", os.Getpid(), w.id, w.ins)
		e.Version = 1
		data = w.data()
	case p < 80:
		idx = w.rng.IntN(len(w.keys))
		e.Op, e.Bucket, e.Key = "update", w.keys[idx].bucket, w.keys[idx].key
		data = w.data()
	default:
		idx = w.rng.IntN(len(w.keys))
		e.Op, e.Bucket, e.Key = "delete", w.keys[idx].bucket, w.keys[idx].key
	}
	if data != nil {
		s := sha256.Sum256(data)
		e.SHA256 = hex.EncodeToString(s[:])
	}
	err := w.write(e, data)
	e.End = time.Now().UnixNano()
	var pgErr *pgconn.PgError
	switch {
	case err == nil:
		e.Outcome = "acked"
		switch e.Op {
		case "insert":
			w.keys = append(w.keys, recKey{e.Bucket, e.Key})
		case "delete":
			w.keys[idx] = w.keys[len(w.keys)-1]
			w.keys = w.keys[:len(w.keys)-1]
		}
	case errors.As(err, &pgErr):
		e.Outcome, e.SQLState, e.Message = "refused", pgErr.Code, pgErr.Message
	default:
		e.Outcome, e.Message = "error", err.Error()
		w.conn.Close(context.Background())
		w.conn = nil
	}
	return w.log.write(e)
}

// write runs the write in a transaction of its own; some hold it open for
// a while after the write, as a component's longer transactions do.
func (w *worker) write(e *entry, data []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tx, err := w.conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.Background())
	table := pgx.Identifier{w.cfg.table}.Sanitize()
	switch e.Op {
	case "insert":
		_, err = tx.Exec(ctx, `INSERT INTO `+table+` (bucket, key, version, data) VALUES ($1, $2, $3, $4)`, e.Bucket, e.Key, e.Version, data)
	case "update":
		err = tx.QueryRow(ctx, `UPDATE `+table+` SET version = version + 1, data = $3, updated_at = now()
			WHERE bucket = $1 AND key = $2 RETURNING version`, e.Bucket, e.Key, data).Scan(&e.Version)
	case "delete":
		err = tx.QueryRow(ctx, `DELETE FROM `+table+` WHERE bucket = $1 AND key = $2 RETURNING version`, e.Bucket, e.Key).Scan(&e.Version)
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%s %s/%s: the key this writer owns is gone: %w", e.Op, e.Bucket, e.Key, err)
	}
	if err != nil {
		return err
	}
	if w.rng.IntN(100) < w.cfg.holdPct {
		if _, err := tx.Exec(ctx, `SELECT pg_sleep($1)`, w.cfg.hold.Seconds()); err != nil {
			return err
		}
	}
	return tx.Commit(ctx)
}

// data is a record body of 20 to 300 bytes, not all of it valid UTF-8.
func (w *worker) data() []byte {
	b := make([]byte, 20+w.rng.IntN(281))
	for i := range b {
		b[i] = byte(w.rng.UintN(256))
	}
	return b
}
