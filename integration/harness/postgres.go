package harness

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/apcera/deployhook/migrate"
)

// Postgres is a PostgreSQL server in a temporary directory, listening on
// 127.0.0.1 with password (scram-sha-256) authentication.
type Postgres struct {
	Host     string // always 127.0.0.1
	Port     int
	User     string // the superuser, "postgres"
	Dir      string // holds data/, sock/, postgres.log, pgpass
	password string
	bindir   string
	runAs    *user.User // nil when not root: run the tools as ourselves
	logw     io.Writer
}

// StartPostgres starts a server for the test, stops it in t.Cleanup and
// prints its log if the test failed.
func StartPostgres(t testing.TB) *Postgres {
	t.Helper()
	dir, err := os.MkdirTemp("", "deployhook-pg-")
	if err != nil {
		t.Fatalf("postgres: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	p, err := StartPostgresDir(dir, nil)
	if p != nil {
		logOnFailure(t, "postgres", p.Log)
		t.Cleanup(func() { p.Stop() })
	}
	if err != nil {
		t.Fatalf("postgres: %v", err)
	}
	return p
}

// StartPostgresDir initializes a cluster in dir (created if needed) and
// starts it. logw, if not nil, receives the server log when the server
// stops. On error the returned *Postgres, if not nil, holds the log and
// must be stopped.
func StartPostgresDir(dir string, logw io.Writer) (*Postgres, error) {
	bindir, err := postgresBinDir()
	if err != nil {
		return nil, err
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return nil, err
	}
	p := &Postgres{Host: "127.0.0.1", User: "postgres", Dir: dir, bindir: bindir, logw: logw}
	if os.Geteuid() == 0 {
		if p.runAs, err = user.Lookup("postgres"); err != nil {
			return nil, fmt.Errorf("running as root needs the postgres user to run initdb: %w", err)
		}
	}
	pw := make([]byte, 12)
	rand.Read(pw)
	p.password = "pw-" + hex.EncodeToString(pw)
	if err := p.initdb(); err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		err = p.start()
		if !errors.Is(err, errPortInUse) || attempt == 3 {
			break
		}
	}
	if err != nil {
		return p, err
	}
	return p, nil
}

func postgresBinDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return pgMajor(dirs[i]) > pgMajor(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", errors.New("initdb not found under /usr/lib/postgresql/*/bin or on PATH: run make postgres (tools/postgres.sh)")
}

func pgMajor(bindir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(bindir)))
	return n
}

func (p *Postgres) dataDir() string { return filepath.Join(p.Dir, "data") }
func (p *Postgres) sockDir() string { return filepath.Join(p.Dir, "sock") }
func (p *Postgres) logFile() string { return filepath.Join(p.Dir, "postgres.log") }

// PassFile is a .pgpass file for the server, for child processes
// (PGPASSFILE) that must not see the password in their arguments.
func (p *Postgres) PassFile() string { return filepath.Join(p.Dir, "pgpass") }

func (p *Postgres) initdb() error {
	for _, d := range []string{p.Dir, p.sockDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	pwfile := filepath.Join(p.Dir, "pwfile")
	if err := os.WriteFile(pwfile, []byte(p.password+"\n"), 0o600); err != nil {
		return err
	}
	defer os.Remove(pwfile)
	if p.runAs != nil {
		if err := p.chownTree(); err != nil {
			return err
		}
		if err := makeTraversable(filepath.Dir(p.Dir)); err != nil {
			return err
		}
	}
	out, err := p.tool("initdb", "-D", p.dataDir(), "-U", p.User, "--pwfile", pwfile,
		"--auth-host=scram-sha-256", "--auth-local=scram-sha-256",
		"-E", "UTF8", "--no-locale", "--no-sync").CombinedOutput()
	if err != nil {
		return fmt.Errorf("initdb: %w\n%s", err, Tail(string(out), 20))
	}
	// The socket is in our directory and the log is ours to show: the
	// server listens on loopback only, and durability is not what tests
	// measure.
	conf := fmt.Sprintf("\n# deployhook harness\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '%s'\n"+
		"fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 50\n"+
		"log_min_messages = info\nlog_connections = off\n", p.sockDir())
	f, err := os.OpenFile(filepath.Join(p.dataDir(), "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.WriteString(conf); err != nil {
		return err
	}
	return nil
}

// start picks a port and starts the server, waiting until it accepts a
// password login.
func (p *Postgres) start() error {
	if p.Port == 0 {
		ports, err := FreePorts(1)
		if err != nil {
			return err
		}
		p.Port = ports[0]
	}
	pass := fmt.Sprintf("%s:%d:*:%s:%s\n", p.Host, p.Port, p.User, p.password)
	if err := os.WriteFile(p.PassFile(), []byte(pass), 0o600); err != nil {
		return err
	}
	out, err := p.tool("pg_ctl", "-D", p.dataDir(), "-l", p.logFile(), "-w", "-t", "60",
		"-o", "-p "+strconv.Itoa(p.Port), "start").CombinedOutput()
	if err != nil {
		log := p.Log()
		if portInUse(log) {
			p.Port = 0
			return fmt.Errorf("pg_ctl start: %w", errPortInUse)
		}
		return fmt.Errorf("pg_ctl start: %w\n%s\n%s", err, Tail(string(out), 10), Tail(log, 20))
	}
	return p.waitReady()
}

func (p *Postgres) waitReady() error {
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	var last error
	for {
		c, err := p.Connect(ctx, "postgres")
		if err == nil {
			err = c.Ping(ctx)
			c.Close(ctx)
			if err == nil {
				return nil
			}
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("postgres on port %d not ready after %v: %v\n%s", p.Port, readyTimeout, last, Tail(p.Log(), 20))
		case <-time.After(pollInterval):
		}
	}
}

// Stop stops the server at once (pg_ctl -m immediate): its data is
// throwaway. It copies the log to logw when one was given.
func (p *Postgres) Stop() error {
	if p.logw != nil {
		defer func() { io.WriteString(p.logw, p.Log()) }()
	}
	if _, err := os.Stat(filepath.Join(p.dataDir(), "postmaster.pid")); err != nil {
		return nil // not running
	}
	out, err := p.tool("pg_ctl", "-D", p.dataDir(), "-m", "immediate", "-w", "-t", "30", "stop").CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_ctl stop: %w\n%s", err, Tail(string(out), 10))
	}
	return nil
}

// Restart stops the server cleanly (pg_ctl -m fast, closing every client
// connection) and starts it again on the same port.
func (p *Postgres) Restart() error {
	out, err := p.tool("pg_ctl", "-D", p.dataDir(), "-m", "fast", "-w", "-t", "60", "stop").CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_ctl stop: %w\n%s", err, Tail(string(out), 10))
	}
	return p.start()
}

// Log returns the server log so far.
func (p *Postgres) Log() string {
	b, _ := os.ReadFile(p.logFile())
	return string(b)
}

// Password is the superuser's password, for tests that check it never
// leaks.
func (p *Postgres) Password() string { return p.password }

// URL is a connection URL with the password in it: for in-process pgx only,
// never for a child's arguments.
func (p *Postgres) URL(db string) string {
	return p.url(db, url.UserPassword(p.User, p.password))
}

// URLWithoutPassword is a connection URL for child processes; give them
// Env() or PassFile() too.
func (p *Postgres) URLWithoutPassword(db string) string {
	return p.url(db, url.User(p.User))
}

func (p *Postgres) url(db string, u *url.Userinfo) string {
	return (&url.URL{
		Scheme:   "postgres",
		User:     u,
		Host:     fmt.Sprintf("%s:%d", p.Host, p.Port),
		Path:     "/" + db,
		RawQuery: "sslmode=disable",
	}).String()
}

// Env is the environment a child process needs to log in with
// URLWithoutPassword.
func (p *Postgres) Env() []string {
	return []string{"PGPASSWORD=" + p.password}
}

// Connect opens a connection to db as the superuser.
func (p *Postgres) Connect(ctx context.Context, db string) (*pgx.Conn, error) {
	return pgx.Connect(ctx, p.URL(db))
}

// CreateDatabase creates db; an existing one is not an error.
func (p *Postgres) CreateDatabase(ctx context.Context, db string) error {
	return p.exec(ctx, "postgres", "CREATE DATABASE "+pgx.Identifier{db}.Sanitize(), "42P04")
}

// DropDatabase drops db, closing its connections; a missing one is not an
// error.
func (p *Postgres) DropDatabase(ctx context.Context, db string) error {
	return p.exec(ctx, "postgres", "DROP DATABASE IF EXISTS "+pgx.Identifier{db}.Sanitize()+" WITH (FORCE)", "")
}

// CreateComponentDB creates db, if needed, and in it the store2 record
// table of DESIGN.md under the name table.
func (p *Postgres) CreateComponentDB(ctx context.Context, db, table string) error {
	if err := p.CreateDatabase(ctx, db); err != nil {
		return err
	}
	return p.exec(ctx, db, `CREATE TABLE IF NOT EXISTS `+pgx.Identifier{table}.Sanitize()+` (
  bucket     text        NOT NULL,
  key        text        NOT NULL,
  version    bigint      NOT NULL,
  data       bytea       NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (bucket, key)
)`, "")
}

// Seed copies records into table (COPY, for speed).
func (p *Postgres) Seed(ctx context.Context, db, table string, records []migrate.Record) error {
	c, err := p.Connect(ctx, db)
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	_, err = c.CopyFrom(ctx, pgx.Identifier{table}, []string{"bucket", "key", "version", "data"},
		pgx.CopyFromSlice(len(records), func(i int) ([]any, error) {
			r := &records[i]
			data := r.Data
			if data == nil {
				data = []byte{} // the column is NOT NULL
			}
			return []any{r.Bucket, r.Key, r.Version, data}, nil
		}))
	if err != nil {
		return fmt.Errorf("seed %s.%s: %w", db, table, err)
	}
	return nil
}

// SeedFunc copies n records made by gen into table, without holding them
// all in memory.
func (p *Postgres) SeedFunc(ctx context.Context, db, table string, n int, gen func(i int) migrate.Record) error {
	c, err := p.Connect(ctx, db)
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	src := &genSource{n: n, gen: gen, i: -1}
	if _, err := c.CopyFrom(ctx, pgx.Identifier{table}, []string{"bucket", "key", "version", "data"}, src); err != nil {
		return fmt.Errorf("seed %s.%s: %w", db, table, err)
	}
	return nil
}

type genSource struct {
	n, i int
	gen  func(int) migrate.Record
	row  [4]any
}

func (s *genSource) Next() bool { s.i++; return s.i < s.n }
func (s *genSource) Err() error { return nil }
func (s *genSource) Values() ([]any, error) {
	r := s.gen(s.i)
	if r.Data == nil {
		r.Data = []byte{}
	}
	s.row = [4]any{r.Bucket, r.Key, r.Version, r.Data}
	return s.row[:], nil
}

// Exec runs sql in db.
func (p *Postgres) Exec(ctx context.Context, db, sql string) error {
	return p.exec(ctx, db, sql, "")
}

// TerminateBackends ends every other client connection to db (what a
// failover or an administrator's pg_terminate_backend does to a client) and
// returns how many it ended. An autovacuum worker busy in db is not a
// client: counting it would make the number depend on its timing.
func (p *Postgres) TerminateBackends(ctx context.Context, db string) (int, error) {
	c, err := p.Connect(ctx, "postgres")
	if err != nil {
		return 0, err
	}
	defer c.Close(context.Background())
	var n int
	err = c.QueryRow(ctx, `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))
		FROM pg_stat_activity
		WHERE datname = $1 AND backend_type = 'client backend' AND pid <> pg_backend_pid()`, db).Scan(&n)
	return n, err
}

func (p *Postgres) exec(ctx context.Context, db, sql, okCode string) error {
	c, err := p.Connect(ctx, db)
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	if _, err := c.Exec(ctx, sql); err != nil {
		var pgErr *pgconn.PgError
		if okCode != "" && errors.As(err, &pgErr) && pgErr.Code == okCode {
			return nil
		}
		return fmt.Errorf("%s: %w", firstLine(sql), err)
	}
	return nil
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// tool runs one of PostgreSQL's programs, as the postgres user when we are
// root (initdb and postgres refuse to run as root).
func (p *Postgres) tool(name string, args ...string) *exec.Cmd {
	path := filepath.Join(p.bindir, name)
	var cmd *exec.Cmd
	if p.runAs != nil {
		cmd = exec.Command("runuser", append([]string{"-u", "postgres", "--", path}, args...)...)
	} else {
		cmd = exec.Command(path, args...)
	}
	cmd.Dir = p.Dir
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	return cmd
}

// chownTree hands p.Dir to the postgres user.
func (p *Postgres) chownTree() error {
	uid, _ := strconv.Atoi(p.runAs.Uid)
	gid, _ := strconv.Atoi(p.runAs.Gid)
	return filepath.Walk(p.Dir, func(path string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, uid, gid)
	})
}

// makeTraversable lets other users pass through dir and its parents (t.TempDir
// makes 0700 directories), so that the postgres user reaches its own.
func makeTraversable(dir string) error {
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o001 == 0 {
			if err := os.Chmod(d, fi.Mode().Perm()|0o011); err != nil {
				return err
			}
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

// BinDir is where PostgreSQL's programs (psql, pg_dump) are.
func (p *Postgres) BinDir() string { return p.bindir }
