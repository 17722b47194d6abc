package pgsource

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/apcera/deployhook/migrate"
)

// The change capture: from the copy's snapshot to the cutover, a trigger
// deployhook_store2_capture (AFTER INSERT OR UPDATE OR DELETE, for each
// row) and deployhook_store2_capture_truncate (AFTER TRUNCATE) record the
// key of every record a write changes in a table of the migration's own,
// deployhook_store2_changes_<table's OID>, in the same transaction as the
// write: a catch-up round reads what changed, not the table.
//
// The function is SECURITY DEFINER: it runs as the migration's role, which
// owns the log table, whatever role the component writes as. It is created
// like the freeze, under the table's SHARE ROW EXCLUSIVE lock, so that
// every write transaction in flight has ended when it commits: a snapshot
// taken after it sees every write it does not record.
//
// A round reads the log in a REPEATABLE READ transaction that deletes what
// it read (only rows its snapshot sees: later writes stay for the next
// round) and joins the records as that same snapshot holds them; it
// commits once the round was applied to store3, so a round that fails
// forgets nothing.

// captureTruncate names the capture's TRUNCATE trigger.
const captureTruncate = migrate.CaptureName + "_truncate"

func captureBody(log string) string {
	return ` BEGIN
	IF TG_LEVEL = 'STATEMENT' THEN
		INSERT INTO ` + log + ` (bucket, key) VALUES (NULL, NULL);
		RETURN NULL;
	END IF;
	IF TG_OP <> 'INSERT' THEN
		INSERT INTO ` + log + ` (bucket, key) VALUES (OLD.bucket, OLD.key);
	END IF;
	IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND (NEW.bucket, NEW.key) IS DISTINCT FROM (OLD.bucket, OLD.key)) THEN
		INSERT INTO ` + log + ` (bucket, key) VALUES (NEW.bucket, NEW.key);
	END IF;
	RETURN NULL;
END `
}

// Capture implements migrate.Freezer.
func (s *Source) Capture(ctx context.Context, owner string) error {
	return s.locked(ctx, "capture the changes to "+s.String(), func(tx pgx.Tx, n names) error {
		stmts := []string{
			`CREATE TABLE IF NOT EXISTS ` + n.log + ` (bucket text, key text)`,
			`TRUNCATE ` + n.log, // an earlier capture's: a new copy follows
			`CREATE OR REPLACE FUNCTION ` + n.captureFn + `() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
				SET search_path = pg_catalog, pg_temp AS $deployhook$` + captureBody(n.log) + `$deployhook$`,
			`COMMENT ON FUNCTION ` + n.captureFn + `() IS ` + quoteLiteral(owner),
		}
		for _, q := range stmts {
			if _, err := tx.Exec(ctx, q); err != nil {
				return err
			}
		}
		for name, def := range map[string]string{
			migrate.CaptureName: `AFTER INSERT OR UPDATE OR DELETE ON ` + s.quoted + ` FOR EACH ROW`,
			captureTruncate:     `AFTER TRUNCATE ON ` + s.quoted + ` FOR EACH STATEMENT`,
		} {
			_, _, exists, err := s.trigger(ctx, tx, name)
			if err != nil {
				return err
			}
			if !exists {
				if _, err := tx.Exec(ctx, `CREATE TRIGGER `+name+` `+def+` EXECUTE FUNCTION `+n.captureFn+`()`); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// Capturing implements migrate.Freezer.
func (s *Source) Capturing(ctx context.Context) (string, bool, error) {
	c, err := s.connect(ctx)
	if err != nil {
		return "", false, err
	}
	defer s.release(c)
	body, owner, exists, err := s.trigger(ctx, c, migrate.CaptureName)
	if err != nil {
		return "", false, s.wrap(ctx, "read the change capture on "+s.String(), err)
	}
	return owner, exists && body != inertBody, nil
}

// EndCapture implements migrate.Freezer. A role that may not drop the
// triggers (not the table's owner) leaves them inert, as the freeze's.
func (s *Source) EndCapture(ctx context.Context, decide func(owner string) (bool, error)) (bool, error) {
	dropped := false
	err := s.locked(ctx, "drop the change capture on "+s.String(), func(tx pgx.Tx, n names) error {
		body, owner, exists, err := s.trigger(ctx, tx, migrate.CaptureName)
		if err != nil || !exists || body == inertBody {
			return err
		}
		if ok, err := decide(owner); err != nil || !ok {
			return err
		}
		gone, err := dropTriggers(ctx, tx, s.quoted, migrate.CaptureName, captureTruncate)
		if err != nil {
			return err
		}
		stmts := []string{`DROP FUNCTION ` + n.captureFn + `()`}
		if !gone {
			stmts = []string{
				`CREATE OR REPLACE FUNCTION ` + n.captureFn + `() RETURNS trigger LANGUAGE plpgsql AS $deployhook$` + inertBody + `$deployhook$`,
				`COMMENT ON FUNCTION ` + n.captureFn + `() IS NULL`,
			}
		}
		// Only the keys of changes this migration applied, or will never
		// use: the records are in store2.
		stmts = append(stmts, `DROP TABLE IF EXISTS `+n.log)
		for _, q := range stmts {
			if _, err := tx.Exec(ctx, q); err != nil {
				return err
			}
		}
		dropped = true
		return nil
	})
	return dropped && err == nil, err
}

// dropTriggers drops the named triggers on table, or none of them when the
// role may not (insufficient_privilege: not the table's owner); it reports
// whether they were dropped.
func dropTriggers(ctx context.Context, tx pgx.Tx, table string, triggers ...string) (bool, error) {
	if _, err := tx.Exec(ctx, `SAVEPOINT deployhook_drop`); err != nil {
		return false, err
	}
	for _, name := range triggers {
		if _, err := tx.Exec(ctx, `DROP TRIGGER IF EXISTS `+name+` ON `+table); err != nil {
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
				return false, err
			}
			_, err := tx.Exec(ctx, `ROLLBACK TO SAVEPOINT deployhook_drop`)
			return false, err
		}
	}
	return true, nil
}

// Changes implements migrate.Freezer: a REPEATABLE READ transaction, read
// write so that it can consume the log.
func (s *Source) Changes(ctx context.Context) (migrate.ChangeSnapshot, error) {
	c, err := s.connect(ctx)
	if err != nil {
		return nil, err
	}
	cs, err := func() (*changeSnapshot, error) {
		tx, err := c.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
		if err != nil {
			return nil, err
		}
		// The first statement fixes the snapshot.
		if _, err = tx.Exec(ctx, "SELECT 1 FROM "+s.quoted+" LIMIT 0"); err != nil {
			return nil, err
		}
		n, err := s.names(ctx, tx)
		if err != nil {
			return nil, err
		}
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, n.log).Scan(&exists); err != nil {
			return nil, err
		}
		if !exists {
			return nil, fmt.Errorf("the change capture is gone (table %s does not exist): something dropped it during the migration; run the migration again", n.log)
		}
		return &changeSnapshot{snapshot: snapshot{s: s, conn: c, tx: tx}, log: n.log}, nil
	}()
	if err != nil {
		s.release(c)
		return nil, s.wrap(ctx, "open a snapshot of "+s.String()+" with its changes", err)
	}
	return cs, nil
}

type changeSnapshot struct {
	snapshot
	log string
}

// Changed implements migrate.ChangeSnapshot.
func (cs *changeSnapshot) Changed(ctx context.Context, fn func(rec *migrate.Record, present bool) error) (bool, error) {
	what := "read the changes to " + cs.s.String()
	rows, err := cs.tx.Query(ctx, `WITH ch AS (DELETE FROM `+cs.log+` RETURNING bucket, key),
			k AS (SELECT DISTINCT bucket, key FROM ch)
		SELECT k.bucket, k.key, t.version, t.data FROM k LEFT JOIN `+cs.s.quoted+` t ON t.bucket = k.bucket AND t.key = k.key
		ORDER BY k.bucket COLLATE "C" NULLS FIRST, k.key COLLATE "C"`,
		pgx.QueryResultFormats{pgx.BinaryFormatCode, pgx.BinaryFormatCode, pgx.BinaryFormatCode, pgx.BinaryFormatCode})
	if err != nil {
		return false, cs.s.wrap(ctx, what, err)
	}
	defer rows.Close()
	var rec migrate.Record
	for rows.Next() {
		raw := rows.RawValues()
		if len(raw) != 4 {
			return false, fmt.Errorf("%s: %d columns", what, len(raw))
		}
		if raw[0] == nil {
			return true, nil // a TRUNCATE: sorted first
		}
		rec.Bucket, rec.Key = string(raw[0]), string(raw[1])
		present := raw[2] != nil
		rec.Version, rec.Data = 0, nil
		if present {
			v, err := version(raw[2])
			if err != nil {
				return false, fmt.Errorf("%s: %w", what, err)
			}
			rec.Version, rec.Data = v, raw[3]
		}
		if err := fn(&rec, present); err != nil {
			return false, err
		}
	}
	if err := rows.Err(); err != nil {
		return false, cs.s.wrap(ctx, what, err)
	}
	return false, nil
}

// Consume implements migrate.ChangeSnapshot: the transaction that deleted
// what Changed read commits.
func (cs *changeSnapshot) Consume(ctx context.Context) error {
	if err := cs.tx.Commit(ctx); err != nil {
		return cs.s.wrap(ctx, "forget the changes applied to "+cs.s.String(), err)
	}
	return nil
}
