package pgsource

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/apcera/deployhook/migrate"
)

// The freeze of DESIGN.md "Online migration and cutover": a statement-level
// trigger deployhook_store2_frozen, BEFORE INSERT OR UPDATE OR DELETE OR
// TRUNCATE (one trigger covers TRUNCATE too: statement level is what
// TRUNCATE needs, and it refuses even a write that changes no row), whose
// function, in the table's schema, raises SQLSTATE 25006 with the message
// the trigger was created with.
//
// Freeze and unfreeze first lock the table in SHARE ROW EXCLUSIVE mode: the
// lock waits for the write transactions in flight (so once the freeze
// commits, every earlier write is visible to a new snapshot and no later
// one lands), and serialises freezes and unfreezes. The wait is bounded by
// a short lock_timeout: writers queue behind a waiting lock, so one long
// transaction must not stall them all; the caller retries (the error is
// migrate.Transient).
//
// The freeze's owner (the migration's lock session) is the function's
// comment. A role that may create the trigger (TRIGGER privilege) but does
// not own the table may not drop it: its unfreeze makes the function return
// without raising instead, and the trigger stays, inert, until a freeze
// makes the function raise again.

const (
	raisingBody = ` BEGIN RAISE EXCEPTION USING ERRCODE = '25006', MESSAGE = TG_ARGV[0]; END `
	inertBody   = ` BEGIN RETURN NULL; END `
)

// DefaultFreezeLockTimeout is how long one freeze attempt waits for the
// writers in flight (Config.FreezeLockTimeout).
const DefaultFreezeLockTimeout = time.Second

var _ migrate.Freezer = (*Source)(nil)

// FrozenTable implements migrate.Freezer.
func (s *Source) FrozenTable() string { return s.table.String() }

// Freeze implements migrate.Freezer.
func (s *Source) Freeze(ctx context.Context, owner, message string) error {
	return s.locked(ctx, "freeze "+s.String(), func(tx pgx.Tx, n names) error {
		fn := n.freezeFn
		if _, err := tx.Exec(ctx, `CREATE OR REPLACE FUNCTION `+fn+`() RETURNS trigger LANGUAGE plpgsql AS $deployhook$`+raisingBody+`$deployhook$`); err != nil {
			return err
		}
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = $1::text::regclass AND tgname = $2)`,
			s.quoted, migrate.FreezeName).Scan(&exists); err != nil {
			return err
		}
		if !exists {
			if _, err := tx.Exec(ctx, `CREATE TRIGGER `+migrate.FreezeName+` BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON `+s.quoted+
				` FOR EACH STATEMENT EXECUTE FUNCTION `+fn+`(`+quoteLiteral(message)+`)`); err != nil {
				return err
			}
		}
		_, err := tx.Exec(ctx, `COMMENT ON FUNCTION `+fn+`() IS `+quoteLiteral(owner))
		return err
	})
}

// Unfreeze implements migrate.Freezer.
func (s *Source) Unfreeze(ctx context.Context, decide func(owner string) (bool, error)) (bool, error) {
	dropped := false
	err := s.locked(ctx, "unfreeze "+s.String(), func(tx pgx.Tx, n names) error {
		fn := n.freezeFn
		owner, frozen, err := s.frozen(ctx, tx)
		if err != nil || !frozen {
			return err
		}
		if ok, err := decide(owner); err != nil || !ok {
			return err
		}
		if _, err := dropTriggers(ctx, tx, s.quoted, migrate.FreezeName); err != nil {
			return err
		}
		// Dropped or not, the function raises no more: a trigger that
		// could not be dropped stays inert.
		if _, err := tx.Exec(ctx, `CREATE OR REPLACE FUNCTION `+fn+`() RETURNS trigger LANGUAGE plpgsql AS $deployhook$`+inertBody+`$deployhook$`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `COMMENT ON FUNCTION `+fn+`() IS NULL`); err != nil {
			return err
		}
		dropped = true
		return nil
	})
	return dropped && err == nil, err
}

// Frozen implements migrate.Freezer.
func (s *Source) Frozen(ctx context.Context) (string, bool, error) {
	c, err := s.connect(ctx)
	if err != nil {
		return "", false, err
	}
	defer s.release(c)
	owner, frozen, err := s.frozen(ctx, c)
	if err != nil {
		return "", false, s.wrap(ctx, "read the freeze of "+s.String(), err)
	}
	return owner, frozen, nil
}

type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// frozen reads whether the trigger exists with the raising function, and
// the owner the function's comment names.
func (s *Source) frozen(ctx context.Context, q querier) (owner string, frozen bool, err error) {
	body, owner, exists, err := s.trigger(ctx, q, migrate.FreezeName)
	return owner, exists && body == raisingBody, err
}

// trigger reads the body of the function the trigger name on the table
// calls, and the function's comment (the owner).
func (s *Source) trigger(ctx context.Context, q querier, name string) (body, owner string, exists bool, err error) {
	err = q.QueryRow(ctx, `SELECT p.prosrc, coalesce(obj_description(p.oid, 'pg_proc'), '')
		FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
		WHERE t.tgrelid = $1::text::regclass AND t.tgname = $2`, s.quoted, name).Scan(&body, &owner)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", "", false, nil
	}
	if err != nil {
		return "", "", false, err
	}
	return body, owner, true, nil
}

// CanFreeze implements migrate.Freezer: the table's owner may, and so may a
// role with the TRIGGER privilege on it and CREATE on its schema.
func (s *Source) CanFreeze(ctx context.Context) (string, error) {
	c, err := s.connect(ctx)
	if err != nil {
		return "", err
	}
	defer s.release(c)
	var schema, name, role string
	var owner, trigger, create bool
	err = c.QueryRow(ctx, `SELECT n.nspname, c.relname, current_user, pg_has_role(current_user, c.relowner, 'USAGE'),
			has_table_privilege(c.oid, 'TRIGGER'), has_schema_privilege(n.oid, 'CREATE')
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.oid = $1::text::regclass`, s.quoted).Scan(&schema, &name, &role, &owner, &trigger, &create)
	if err != nil {
		return "", s.wrap(ctx, "check the freeze privileges on "+s.String(), err)
	}
	if owner {
		return "", nil
	}
	table := ident(schema) + "." + ident(name)
	who := ident(role)
	var missing []string
	if !trigger {
		missing = append(missing, fmt.Sprintf("GRANT TRIGGER ON TABLE %s TO %s", table, who))
	}
	if !create {
		missing = append(missing, fmt.Sprintf("GRANT CREATE ON SCHEMA %s TO %s", ident(schema), who))
	}
	if len(missing) == 0 {
		return "", nil
	}
	return fmt.Sprintf("role %s may not freeze %s for the cutover (it needs the table's ownership, or TRIGGER on it and CREATE on its schema): %s",
		who, table, strings.Join(missing, "; ")), nil
}

// names are the quoted names of what the freeze and the capture create in
// the table's schema. The capture's are the table's OID's: two store2
// tables in one schema get captures of their own.
type names struct {
	freezeFn  string // the freeze's function
	captureFn string // the capture's function
	log       string // the table the capture records changes in
}

func (s *Source) names(ctx context.Context, q querier) (names, error) {
	var schema string
	var oid uint32
	if err := q.QueryRow(ctx, `SELECT n.nspname, c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.oid = $1::text::regclass`, s.quoted).Scan(&schema, &oid); err != nil {
		return names{}, err
	}
	return names{
		freezeFn:  pgx.Identifier{schema, migrate.FreezeName}.Sanitize(),
		captureFn: pgx.Identifier{schema, fmt.Sprintf("%s_%d", migrate.CaptureName, oid)}.Sanitize(),
		log:       pgx.Identifier{schema, fmt.Sprintf("deployhook_store2_changes_%d", oid)}.Sanitize(),
	}, nil
}

// locked runs fn in a transaction that holds the table's SHARE ROW
// EXCLUSIVE lock. A lock not granted within the lock timeout is
// migrate.Transient.
func (s *Source) locked(ctx context.Context, what string, fn func(tx pgx.Tx, n names) error) error {
	c, err := s.connect(ctx)
	if err != nil {
		return err
	}
	defer s.release(c)
	timeout := s.freezeLockTimeout
	err = pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
		// At least deadlock_timeout and a little more: an autovacuum of
		// the table holds a lock that conflicts with ours, and PostgreSQL
		// cancels it once a lock request has waited deadlock_timeout. A
		// shorter timeout gives up just before, again and again until the
		// vacuum ends (4 s right after a bulk load of 1,000,000 records).
		var ms int64
		if err := tx.QueryRow(ctx, `SELECT greatest($1::bigint, (extract(epoch FROM current_setting('deadlock_timeout')::interval) * 1000)::bigint + 200)`,
			s.freezeLockTimeout.Milliseconds()).Scan(&ms); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, fmt.Sprintf("SET LOCAL lock_timeout = %d", ms)); err != nil {
			return err
		}
		timeout = time.Duration(ms) * time.Millisecond
		if _, err := tx.Exec(ctx, `LOCK TABLE `+s.quoted+` IN SHARE ROW EXCLUSIVE MODE`); err != nil {
			return err
		}
		n, err := s.names(ctx, tx)
		if err != nil {
			return err
		}
		return fn(tx, n)
	})
	if err == nil {
		return nil
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "55P03" { // lock_not_available
		return migrate.Transient(s.scrub(fmt.Errorf("%s: writers in flight held the table past the lock timeout of %s: %w", what, timeout, err)))
	}
	return s.wrap(ctx, what, err)
}

var plainIdent = regexp.MustCompile(`^[a-z_][a-z0-9_$]*$`)

// ident quotes an identifier for a message an operator may paste: only
// when it needs quotes.
func ident(s string) string {
	if plainIdent.MatchString(s) {
		return s
	}
	return pgx.Identifier{s}.Sanitize()
}

// quoteLiteral quotes s as an SQL escape string constant, whatever
// standard_conforming_strings says.
func quoteLiteral(s string) string {
	return "E'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}
