package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/apcera/deployhook/integration/harness"
	"github.com/apcera/deployhook/migrate"
)

// sqlstateReadOnly is read_only_sql_transaction: what the freeze of store2
// refuses a write with (DESIGN.md, "Online migration and cutover").
const sqlstateReadOnly = "25006"

// writer stands for a component that keeps running on store2 while the
// deploy migrates it: a few writes per second to its store2 table, in turn
// an insert of a new record, an update of a seeded one and a delete of
// another seeded one, each committed on its own, until store2 refuses one
// or the writer is stopped.
type writer struct {
	db    string
	table string
	recs  []migrate.Record // the seeded records it updates and deletes

	mu                        sync.Mutex
	inserts, updates, deletes int
	refusal                   *pgconn.PgError // the write store2 refused, nil if none
	err                       error           // any other failure
}

// writeEvery is the writers' pace: a few writes per second each.
const writeEvery = 200 * time.Millisecond

// run writes until ctx ends or store2 refuses a write.
func (w *writer) run(ctx context.Context, pg *harness.Postgres) {
	conn, err := pg.Connect(ctx, w.db)
	if err != nil {
		w.fail(fmt.Errorf("connect to %s: %w", w.db, err))
		return
	}
	defer conn.Close(context.Background())
	tick := time.NewTicker(writeEvery)
	defer tick.Stop()
	table := pgx.Identifier{w.table}.Sanitize()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		n := i / 3
		var err error
		switch i % 3 {
		case 0:
			first := w.recs[0]
			_, err = conn.Exec(ctx, "INSERT INTO "+table+" (bucket, key, version, data) VALUES ($1, $2, 1, $3)",
				first.Bucket, fmt.Sprintf("deploy-writer-%03d", n), []byte(fmt.Sprintf(`{"written_during_the_deploy":%d}`, n)))
		case 1:
			r := w.recs[n%len(w.recs)]
			_, err = conn.Exec(ctx, "UPDATE "+table+" SET version = version + 1, updated_at = now() WHERE bucket = $1 AND key = $2",
				r.Bucket, r.Key)
		case 2:
			r := w.recs[len(w.recs)-1-n%len(w.recs)]
			_, err = conn.Exec(ctx, "DELETE FROM "+table+" WHERE bucket = $1 AND key = $2", r.Bucket, r.Key)
		}
		if ctx.Err() != nil {
			return
		}
		var pgErr *pgconn.PgError
		switch {
		case errors.As(err, &pgErr) && pgErr.Code == sqlstateReadOnly:
			w.mu.Lock()
			w.refusal = pgErr
			w.mu.Unlock()
			return
		case err != nil:
			w.fail(fmt.Errorf("write to %s: %w", w.db, err))
			return
		}
		w.mu.Lock()
		switch i % 3 {
		case 0:
			w.inserts++
		case 1:
			w.updates++
		case 2:
			w.deletes++
		}
		w.mu.Unlock()
	}
}

func (w *writer) fail(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.err = err
}

// summary says what the writer did, for the demo's narration.
func (w *writer) summary() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := fmt.Sprintf("%s: %d writes committed (inserts %d, updates %d, deletes %d)",
		w.db, w.inserts+w.updates+w.deletes, w.inserts, w.updates, w.deletes)
	switch {
	case w.err != nil:
		s += "; then " + w.err.Error()
	case w.refusal != nil:
		s += "; the next one was refused: " + pgErrorText(w.refusal)
	default:
		s += "; stopped, none refused"
	}
	return s
}

// pgErrorText renders a server error as psql does, on one line.
func pgErrorText(e *pgconn.PgError) string {
	return fmt.Sprintf("%s: %s (SQLSTATE %s)", e.Severity, e.Message, e.Code)
}

// writers runs one writer per database until stop is called; stop waits
// for them and returns their summaries.
func startWriters(ctx context.Context, pg *harness.Postgres, ws []*writer) (stop func() []string) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, w := range ws {
		wg.Go(func() { w.run(ctx, pg) })
	}
	return func() []string {
		// A writer whose store2 is frozen stops at its next write; give
		// them that long before stopping the others.
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(3 * writeEvery):
		}
		cancel()
		wg.Wait()
		var out []string
		for _, w := range ws {
			out = append(out, w.summary())
		}
		return out
	}
}

// strayWrite is what a component still on store2 after the cutover does:
// one write and one read. It returns the write's statement, as the demo
// prints it, what the write got and what the read got.
func strayWrite(ctx context.Context, pg *harness.Postgres, db, table string, rec migrate.Record) (stmt, wrote, read string, err error) {
	conn, err := pg.Connect(ctx, db)
	if err != nil {
		return "", "", "", fmt.Errorf("connect to %s: %w", db, err)
	}
	defer conn.Close(context.Background())
	t := pgx.Identifier{table}.Sanitize()
	stmt = fmt.Sprintf("UPDATE %s SET version = version + 1 WHERE bucket = %s AND key = %s", t, quote(rec.Bucket), quote(rec.Key))
	_, werr := conn.Exec(ctx, "UPDATE "+t+" SET version = version + 1 WHERE bucket = $1 AND key = $2", rec.Bucket, rec.Key)
	var pgErr *pgconn.PgError
	switch {
	case errors.As(werr, &pgErr):
		wrote = pgErrorText(pgErr)
	case werr != nil:
		return "", "", "", fmt.Errorf("write to %s: %w", db, werr)
	default:
		wrote = "UPDATE 1: the write was accepted"
	}
	var n int64
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM "+t).Scan(&n); err != nil {
		return "", "", "", fmt.Errorf("read %s: %w", db, err)
	}
	return stmt, wrote, fmt.Sprintf("SELECT count(*) FROM %s: %d", t, n), nil
}

// quote is a SQL string literal, for printing statements.
func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// inFlight is a write transaction that a component began before the
// cutover and commits while the freeze waits for it.
type inFlight struct {
	conn *pgx.Conn
	tx   pgx.Tx
}

// captureGate is a transaction that holds the table in ROW EXCLUSIVE mode,
// as a write in flight does, from before a migration starts: the change
// capture that the migration installs before its copy waits for it. Its
// through lets the capture pass with a write of the demo's begun behind
// it, so that the next lock the migration waits for is its freeze's.
type captureGate struct {
	table, quoted string
	conn, watch   *pgx.Conn
	tx            pgx.Tx
	newConn       func() (*pgx.Conn, error)
}

// holdCapture begins the gate on db's table.
func holdCapture(ctx context.Context, pg *harness.Postgres, db, table string) (*captureGate, error) {
	g := &captureGate{table: table, quoted: pgx.Identifier{table}.Sanitize(),
		newConn: func() (*pgx.Conn, error) { return pg.Connect(ctx, db) }}
	var err error
	if g.conn, err = g.newConn(); err == nil {
		if g.watch, err = g.newConn(); err == nil {
			if g.tx, err = g.conn.Begin(ctx); err == nil {
				_, err = g.tx.Exec(ctx, "LOCK TABLE "+g.quoted+" IN ROW EXCLUSIVE MODE")
			}
		}
	}
	if err != nil {
		g.close()
		return nil, fmt.Errorf("hold %s in %s: %w", table, db, err)
	}
	return g, nil
}

func (g *captureGate) close() {
	for _, c := range []*pgx.Conn{g.conn, g.watch} {
		if c != nil {
			c.Close(context.Background())
		}
	}
}

// waitLockWaiters waits until at least want sessions wait for a lock on
// table, or exited is closed (false).
func waitLockWaiters(ctx context.Context, watch *pgx.Conn, quoted string, want int, exited <-chan struct{}) (bool, error) {
	for {
		var n int
		err := watch.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = $1::regclass
			 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`, quoted).Scan(&n)
		if err != nil {
			return false, fmt.Errorf("watch the locks on %s: %w", quoted, err)
		}
		if n >= want {
			return true, nil
		}
		select {
		case <-exited:
			return false, nil
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// through waits for the migration's change capture to wait for the gate,
// begins a write of rec (it queues behind the capture), lets the capture
// through, and returns the write, in flight: the capture records it, and
// the migration's next wait for the table is its freeze's.
func (g *captureGate) through(ctx context.Context, rec migrate.Record, exited <-chan struct{}) (*inFlight, error) {
	defer g.close()
	if ok, err := waitLockWaiters(ctx, g.watch, g.quoted, 1, exited); !ok || err != nil {
		return nil, errors.Join(err, errors.New("the migration ended before its change capture waited for the writes in flight"), g.tx.Rollback(ctx))
	}
	conn, err := g.newConn()
	if err != nil {
		return nil, errors.Join(err, g.tx.Rollback(ctx))
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		conn.Close(context.Background())
		return nil, errors.Join(err, g.tx.Rollback(ctx))
	}
	inserted := make(chan error, 1)
	go func() {
		_, err := tx.Exec(ctx, "INSERT INTO "+g.quoted+" (bucket, key, version, data) VALUES ($1, $2, $3, $4)",
			rec.Bucket, rec.Key, rec.Version, rec.Data)
		inserted <- err
	}()
	ok, err := waitLockWaiters(ctx, g.watch, g.quoted, 2, exited)
	err = errors.Join(err, g.tx.Commit(ctx))
	err = errors.Join(err, <-inserted)
	var captured bool
	if err == nil {
		err = g.watch.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = $1::regclass AND tgname = $2)",
			g.quoted, migrate.CaptureName).Scan(&captured)
	}
	if err == nil && (!ok || !captured) {
		err = errors.New("the change capture gave up its wait before the demo let it through (a busy machine): run the demo again")
	}
	if err != nil {
		tx.Rollback(context.Background())
		conn.Close(context.Background())
		return nil, fmt.Errorf("a write behind the change capture on %s: %w", g.table, err)
	}
	return &inFlight{conn: conn, tx: tx}, nil
}

// commitWhenFreezeWaits commits once another session waits for a lock on
// table (the freeze's CREATE TRIGGER waiting for the writers in flight), or
// when exited is closed first. It reports whether a waiter was seen.
func (f *inFlight) commitWhenFreezeWaits(ctx context.Context, pg *harness.Postgres, db, table string, exited <-chan struct{}) (bool, error) {
	defer f.conn.Close(context.Background())
	watch, err := pg.Connect(ctx, db)
	if err != nil {
		return false, fmt.Errorf("connect to %s: %w", db, err)
	}
	defer watch.Close(context.Background())
	seen, err := waitLockWaiters(ctx, watch, pgx.Identifier{table}.Sanitize(), 1, exited)
	return seen, errors.Join(err, f.tx.Commit(ctx))
}

// holdAfterFreeze stops a migration right after its freeze, so that the
// demo can kill it there: with a write in flight (write, begun after the
// change capture) that the freeze waits for, it queues an ACCESS EXCLUSIVE lock on table behind the
// freeze's lock, then commits the write. The freeze is granted first and
// commits; the demo's lock comes next, and the migration's next read of
// store2 waits for it. It reports whether store2 is frozen while the lock is
// held; release rolls the lock back. When the migration exits first, or
// the freeze gave up on its attempt (it retries behind the demo's lock), it
// returns false with the lock released.
func holdAfterFreeze(ctx context.Context, pg *harness.Postgres, db, table string, write *inFlight, exited <-chan struct{}) (held bool, release func(), err error) {
	t := pgx.Identifier{table}.Sanitize()
	defer write.conn.Close(context.Background())
	watch, err := pg.Connect(ctx, db)
	if err != nil {
		return false, nil, errors.Join(fmt.Errorf("connect to %s: %w", db, err), write.tx.Rollback(ctx))
	}
	defer watch.Close(context.Background())
	until := func(want int) (bool, error) { return waitLockWaiters(ctx, watch, t, want, exited) }
	if ok, err := until(1); !ok || err != nil {
		return false, nil, errors.Join(err, write.tx.Rollback(ctx))
	}
	hold, err := pg.Connect(ctx, db)
	if err != nil {
		return false, nil, errors.Join(fmt.Errorf("connect to %s: %w", db, err), write.tx.Rollback(ctx))
	}
	lockTx, err := hold.Begin(ctx)
	if err != nil {
		hold.Close(context.Background())
		return false, nil, errors.Join(fmt.Errorf("begin on %s: %w", db, err), write.tx.Rollback(ctx))
	}
	granted := make(chan error, 1)
	go func() {
		_, err := lockTx.Exec(ctx, "LOCK TABLE "+t+" IN ACCESS EXCLUSIVE MODE")
		granted <- err
	}()
	release = func() {
		lockTx.Rollback(context.Background())
		hold.Close(context.Background())
	}
	ok, err := until(2)
	if err == nil {
		err = write.tx.Commit(ctx)
	}
	if err == nil && ok {
		select {
		case err = <-granted:
		case <-exited:
			ok = false
		}
	}
	if err == nil && ok {
		err = watch.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = $1::regclass AND tgname = $2)",
			t, migrate.FreezeName).Scan(&held)
	}
	if err != nil || !held {
		release()
		return false, nil, err
	}
	return true, release, nil
}
