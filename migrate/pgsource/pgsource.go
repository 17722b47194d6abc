// Package pgsource is store2: migrate.Source on a component's PostgreSQL
// record table, through pgx.
//
// A snapshot is one REPEATABLE READ, READ ONLY transaction on its own
// connection; Scan streams the table in byte order with constant memory.
// A connection left idle is kept for the next use (Source.connect). A
// missing database (3D000) or table (42P01) is migrate.ErrNeverUsed;
// connection failures, server restarts and timeouts are migrate.Transient.
// The password never appears in an error.
package pgsource

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/apcera/deployhook/migrate"
)

// Config says where store2 is.
type Config struct {
	// URL is a libpq connection string (URL or keyword/value). Empty, or
	// for what it leaves out, libpq's PG* environment and .pgpass apply.
	URL string
	// Database is used when neither URL nor PGDATABASE names one: the
	// component's database (jmdb, pmdb, asdb).
	Database string
	// Table is the record table as migrate.ParseTable reads it, possibly
	// schema-qualified and quoted (default migrate.DefaultTable).
	Table string
	// ConnectTimeout applies when the URL sets none (default 10s).
	ConnectTimeout time.Duration
	// FreezeLockTimeout bounds one attempt of the freeze (and of the
	// change capture) to wait for the writers in flight (default
	// DefaultFreezeLockTimeout); the server's deadlock_timeout plus 200 ms
	// when that is longer, so that an autovacuum in the way is cancelled.
	FreezeLockTimeout time.Duration
}

// Source reads one component's store2.
type Source struct {
	conn     *pgx.ConnConfig
	table    migrate.Table
	quoted   string // quoted for SQL
	password string // to scrub from errors

	freezeLockTimeout time.Duration

	mu   sync.Mutex
	idle *pgx.Conn // released outside a transaction, for the next connect
}

var _ migrate.Source = (*Source)(nil)

// New checks cfg; it does no I/O (connections are opened when needed).
func New(ctx context.Context, cfg Config) (*Source, error) {
	name := cfg.Table
	if name == "" {
		name = migrate.DefaultTable
	}
	table, err := migrate.ParseTable(name)
	if err != nil {
		return nil, err
	}
	cc, err := parse(cfg.URL, cfg.Database)
	if err != nil {
		return nil, err
	}
	if cc.Database == "" {
		return nil, errors.New("store2 connection names no database, and no default was given")
	}
	if cc.ConnectTimeout == 0 {
		cc.ConnectTimeout = cfg.ConnectTimeout
		if cc.ConnectTimeout <= 0 {
			cc.ConnectTimeout = 10 * time.Second
		}
	}
	if _, ok := cc.RuntimeParams["application_name"]; !ok {
		cc.RuntimeParams["application_name"] = "deployhook"
	}
	src := &Source{conn: cc, table: table, quoted: pgx.Identifier(table.Parts()).Sanitize(), password: cc.Password, freezeLockTimeout: cfg.FreezeLockTimeout}
	if src.freezeLockTimeout <= 0 {
		src.freezeLockTimeout = DefaultFreezeLockTimeout
	}
	return src, nil
}

// parse parses connString, naming db when the connection string and the
// environment name no database. It parses again rather than set the field,
// so that the .pgpass lookup sees the database.
func parse(connString, db string) (*pgx.ConnConfig, error) {
	cc, err := pgx.ParseConfig(connString)
	if err != nil {
		return nil, fmt.Errorf("parse store2 connection string: %s", scrubText(err.Error(), ""))
	}
	if cc.Database != "" || db == "" {
		return cc, nil
	}
	switch {
	case strings.HasPrefix(connString, "postgres://") || strings.HasPrefix(connString, "postgresql://"):
		u, err := url.Parse(connString)
		if err != nil {
			return nil, errors.New("parse store2 connection URL: malformed")
		}
		u.Path, u.RawPath = "/"+db, ""
		connString = u.String()
	default:
		connString = strings.TrimSpace(connString + " dbname='" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(db) + "'")
	}
	cc, err = pgx.ParseConfig(connString)
	if err != nil {
		return nil, fmt.Errorf("parse store2 connection string: %s", scrubText(err.Error(), ""))
	}
	return cc, nil
}

// String names the source for messages: user, host, port, database and
// table, never the password.
func (s *Source) String() string {
	return fmt.Sprintf("%s.%s on %s", s.conn.Database, s.table, s.server())
}

func (s *Source) server() string {
	host := s.conn.Host
	if strings.HasPrefix(host, "/") {
		return fmt.Sprintf("%s@%s (socket, port %d)", s.conn.User, host, s.conn.Port)
	}
	return fmt.Sprintf("%s@%s", s.conn.User, net.JoinHostPort(host, strconv.Itoa(int(s.conn.Port))))
}

// connect returns the idle connection, when there is one and it answers,
// else a new one; release gives it back. A migration uses one connection
// after another (the checks before the lock, the change capture, the
// snapshot, the freeze) and opening each cost PostgreSQL a process and an
// authentication: about 20 ms on loopback, where the copy of 100,000
// records takes under 3 s, and round trips more over a network.
func (s *Source) connect(ctx context.Context) (*pgx.Conn, error) {
	s.mu.Lock()
	c := s.idle
	s.idle = nil
	s.mu.Unlock()
	if c != nil {
		pctx, cancel := context.WithTimeout(ctx, s.conn.ConnectTimeout)
		err := c.Ping(pctx)
		cancel()
		if err == nil {
			return c, nil
		}
		c.Close(context.Background()) // gone meanwhile (a restart, a timeout): a new one
	}
	c, err := pgx.ConnectConfig(ctx, s.conn.Copy())
	if err != nil {
		return nil, s.wrap(ctx, "connect to store2 "+s.server(), err)
	}
	return c, nil
}

// release keeps c for the next connect when it is open, idle and outside
// any transaction, and no other connection is kept; it closes it otherwise.
func (s *Source) release(c *pgx.Conn) {
	if c.IsClosed() {
		return
	}
	if pc := c.PgConn(); pc.TxStatus() == 'I' && !pc.IsBusy() {
		s.mu.Lock()
		kept := s.idle == nil
		if kept {
			s.idle = c
		}
		s.mu.Unlock()
		if kept {
			return
		}
	}
	c.Close(context.Background())
}

// Close closes the idle connection. Snapshots have their own connections
// and are closed on their own.
func (s *Source) Close() error {
	s.mu.Lock()
	c := s.idle
	s.idle = nil
	s.mu.Unlock()
	if c != nil {
		return c.Close(context.Background())
	}
	return nil
}

// HasRecords reports whether the table holds at least one record: the
// cheap check of `run`. A database or table that does not exist is an error
// wrapping migrate.ErrNeverUsed (no records).
func (s *Source) HasRecords(ctx context.Context) (bool, error) {
	c, err := s.connect(ctx)
	if err != nil {
		return false, err
	}
	defer s.release(c)
	var ok bool
	if err := c.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM "+s.quoted+")").Scan(&ok); err != nil {
		return false, s.wrap(ctx, "check for records in "+s.String(), err)
	}
	return ok, nil
}

// Snapshot implements migrate.Source.
func (s *Source) Snapshot(ctx context.Context) (migrate.Snapshot, error) {
	c, err := s.connect(ctx)
	if err != nil {
		return nil, err
	}
	tx, err := c.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err == nil {
		// The first statement fixes the snapshot, and finds a missing
		// table now rather than in the middle of the migration.
		_, err = tx.Exec(ctx, "SELECT 1 FROM "+s.quoted+" LIMIT 0")
	}
	if err != nil {
		s.release(c)
		return nil, s.wrap(ctx, "open a snapshot of "+s.String(), err)
	}
	return &snapshot{s: s, conn: c, tx: tx}, nil
}

type snapshot struct {
	s      *Source
	conn   *pgx.Conn
	tx     pgx.Tx
	closed bool

	// The buckets by size, as read once (sizes).
	sized   bool
	total   int64
	buckets []string // the largest first, at most maxBucketPasses+1
}

// Count implements migrate.Snapshot, in the scan that also finds the
// buckets StreamByBucket reads one by one, largest first: one scan of the
// table rather than two before the copy's first record (at 100,000
// records, the count alone took 60 to 95 ms).
func (sn *snapshot) Count(ctx context.Context) (int64, error) {
	if err := sn.sizes(ctx); err != nil {
		return 0, err
	}
	return sn.total, nil
}

// sizes reads the number of records and the largest buckets, once.
func (sn *snapshot) sizes(ctx context.Context) error {
	if sn.sized {
		return nil
	}
	what := "count the records of " + sn.s.String() + " by bucket"
	rows, err := sn.tx.Query(ctx, "SELECT bucket, count(*) FROM "+sn.s.quoted+" GROUP BY bucket ORDER BY count(*) DESC, bucket")
	if err != nil {
		return sn.s.wrap(ctx, what, err)
	}
	defer rows.Close()
	var total int64
	var buckets []string
	for rows.Next() {
		var b string
		var n int64
		if err := rows.Scan(&b, &n); err != nil {
			return sn.s.wrap(ctx, what, err)
		}
		total += n
		if len(buckets) <= maxBucketPasses {
			buckets = append(buckets, b)
		}
	}
	if err := rows.Err(); err != nil {
		return sn.s.wrap(ctx, what, err)
	}
	sn.sized, sn.total, sn.buckets = true, total, buckets
	return nil
}

// Scan streams the rows in (bucket, key) byte order.
func (sn *snapshot) Scan(ctx context.Context, fn func(*migrate.Record) error) error {
	return sn.scan(ctx, ` ORDER BY bucket COLLATE "C", key COLLATE "C"`, fn)
}

// Stream streams the rows in the table's own order: no sort.
func (sn *snapshot) Stream(ctx context.Context, fn func(*migrate.Record) error) error {
	return sn.scan(ctx, "", fn)
}

// maxBucketPasses is the most buckets StreamByBucket reads one by one:
// each pass over a large bucket is a scan of the whole table (the
// buckets' rows are interleaved), so PostgreSQL reads up to that many
// times what one scan reads; the apcera components have a handful.
const maxBucketPasses = 8

// StreamByBucket implements migrate.Snapshot: one query per bucket,
// the largest first, each of which PostgreSQL plans as it sees fit (a scan
// of the whole table for a large bucket, of the primary key's index for a
// small one); nothing is sorted. Beyond maxBucketPasses buckets, one scan.
func (sn *snapshot) StreamByBucket(ctx context.Context, fn func(*migrate.Record) error, end func(bucket string) error) error {
	if err := sn.sizes(ctx); err != nil {
		return err
	}
	if len(sn.buckets) > maxBucketPasses {
		return sn.Stream(ctx, fn)
	}
	for _, b := range sn.buckets {
		if err := sn.scan(ctx, " WHERE bucket = $1", fn, b); err != nil {
			return err
		}
		if err := end(b); err != nil {
			return err
		}
	}
	return nil
}

// Mark implements migrate.Snapshot: the snapshot, as
// txid_current_snapshot writes it ("xmin:xmax:in-progress,...", 64-bit
// transaction ids).
func (sn *snapshot) Mark(ctx context.Context) (migrate.Mark, error) {
	var m string
	if err := sn.tx.QueryRow(ctx, "SELECT txid_current_snapshot()::text").Scan(&m); err != nil {
		return "", sn.s.wrap(ctx, "read the snapshot of "+sn.s.String(), err)
	}
	return migrate.Mark(m), nil
}

// maxMarkAge is how many transactions may have begun since a Mark for
// Unchanged to date row versions against it: a row's xmin is 32 bits, and
// read modulo 2^32 from the mark's xmin, exactly while the two lie less
// than 2^31 apart.
const maxMarkAge = 1 << 30

// Unchanged implements migrate.Snapshot, in one scan of the table that
// sends three numbers back. Every row version this snapshot sees was
// written by a transaction the marked snapshot saw as committed (its
// xmin), and there are n of them: then each was visible to the marked
// snapshot too (a delete that snapshot saw would hide it here as well), so
// this snapshot holds a subset of that one's n rows, of the same size: the
// same rows. Any insert or update since writes a row version whose writer
// the marked snapshot did not see; a delete alone lowers the count.
//
// A row is dated by age(): older than the mark's xmin, its writer had
// ended (committed, since the row is visible) before the mark; otherwise
// its xmin, widened to 64 bits from the mark's, is checked against the
// mark (txid_visible_in_snapshot), which holds the transactions in flight
// then. A row whose xmin reads as frozen (1 or 2: PostgreSQL before 9.4
// overwrote it when freezing, later ones keep it) cannot be dated and
// counts as new, as does everything once maxMarkAge transactions have
// passed: the answer is then false, and the caller reads the records.
func (sn *snapshot) Unchanged(ctx context.Context, m migrate.Mark, n int64) (bool, error) {
	xmin, _, _ := strings.Cut(string(m), ":")
	x64, err := strconv.ParseInt(xmin, 10, 64)
	if err != nil {
		return false, fmt.Errorf("compare %s with an earlier snapshot: a mark %q that is not PostgreSQL's", sn.s, m)
	}
	x32 := x64 & 0xFFFFFFFF
	var rows, newer, since int64
	err = sn.tx.QueryRow(ctx, `SELECT count(*),
			count(*) FILTER (WHERE xmin = '1'::xid OR xmin = '2'::xid OR age(xmin) <= age($1::text::xid)
				AND NOT txid_visible_in_snapshot($2 + (xmin::text::bigint - $3 + 4294967296) % 4294967296, $4::txid_snapshot)),
			txid_snapshot_xmax(txid_current_snapshot()) - $2
		FROM `+sn.s.quoted, strconv.FormatInt(x32, 10), x64, x32, string(m)).Scan(&rows, &newer, &since)
	if err != nil {
		return false, sn.s.wrap(ctx, "compare "+sn.s.String()+" with an earlier snapshot", err)
	}
	return rows == n && newer == 0 && since >= 0 && since < maxMarkAge, nil
}

// scan streams the rows, filtered and ordered by order (with args). Their raw binary values are
// used in place: nothing but the two strings is allocated per row, and
// Data points into pgx's read buffer until the next row.
func (sn *snapshot) scan(ctx context.Context, order string, fn func(*migrate.Record) error, args ...any) error {
	what := "scan " + sn.s.String()
	rows, err := sn.tx.Query(ctx,
		`SELECT bucket, key, version, data FROM `+sn.s.quoted+order,
		append([]any{pgx.QueryResultFormats{pgx.BinaryFormatCode, pgx.BinaryFormatCode, pgx.BinaryFormatCode, pgx.BinaryFormatCode}}, args...)...)
	if err != nil {
		return sn.s.wrap(ctx, what, err)
	}
	defer rows.Close()
	var rec migrate.Record
	for rows.Next() {
		raw := rows.RawValues()
		if len(raw) != 4 || raw[0] == nil || raw[1] == nil || raw[2] == nil || raw[3] == nil {
			return fmt.Errorf("%s: a row with a NULL column", what)
		}
		v, err := version(raw[2])
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		rec.Bucket = string(raw[0])
		rec.Key = string(raw[1])
		rec.Version = v
		rec.Data = raw[3]
		if err := fn(&rec); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return sn.s.wrap(ctx, what, err)
	}
	return nil
}

// version decodes a binary bigint.
func version(raw []byte) (int64, error) {
	if len(raw) != 8 {
		return 0, fmt.Errorf("version of %d bytes, want a binary bigint", len(raw))
	}
	return int64(binary.BigEndian.Uint64(raw)), nil
}

func (sn *snapshot) Close(ctx context.Context) error {
	if sn.closed {
		return nil
	}
	sn.closed = true
	err := sn.tx.Rollback(ctx)
	if errors.Is(err, pgx.ErrTxClosed) || sn.conn.IsClosed() && err != nil {
		err = nil // the transaction ended, or the connection, and with it the transaction, is gone
	}
	if err != nil {
		err = errors.Join(err, sn.conn.Close(ctx))
		return sn.s.wrap(ctx, "close the snapshot of "+sn.s.String(), err)
	}
	sn.s.release(sn.conn)
	return nil
}
