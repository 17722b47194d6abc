package pgsource

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/apcera/deployhook/migrate"
)

// wrap names the operation, sorts err into never-used, permission denied,
// transient or plain, and scrubs the password.
func (s *Source) wrap(ctx context.Context, what string, err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "3D000":
			return fmt.Errorf("database %q does not exist on %s: %w (this cluster never used store2)",
				s.conn.Database, s.server(), migrate.ErrNeverUsed)
		case "42P01", "3F000": // undefined table, undefined schema
			return fmt.Errorf("table %s does not exist in database %q on %s: %w (this cluster never used store2)",
				s.table, s.conn.Database, s.server(), migrate.ErrNeverUsed)
		case "42501": // insufficient privilege
			return s.scrub(fmt.Errorf("%s: %w: %w", what, migrate.ErrPermissionDenied, err))
		}
	}
	e := s.scrub(fmt.Errorf("%s: %w", what, err))
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		return e // the caller gave up: nothing to retry
	}
	if transient(err) {
		return migrate.Transient(e)
	}
	return e
}

// transient reports failures worth retrying: the connection (refused,
// reset, timed out, cut mid-answer), a server shutting down, starting up or
// out of connections, and pgx's own retryable errors (a closed connection
// among them). It reads types and SQLSTATE codes, never error text.
func transient(err error) bool {
	if migrate.CertificateError(err) {
		return false // x509 and TLS alerts: a retry meets the same certificate
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case strings.HasPrefix(pgErr.Code, "08"), // connection exception
			pgErr.Code == "57P01", pgErr.Code == "57P02", pgErr.Code == "57P03", // shutdown, crash, starting up
			pgErr.Code == "53300",                        // too many connections
			pgErr.Code == "40001", pgErr.Code == "40P01": // serialization failure, deadlock
			return true
		}
		return false // authentication, permissions, SQL: retrying does not help
	}
	var ne net.Error
	var ce *pgconn.ConnectError
	return errors.As(err, &ce) || errors.As(err, &ne) || pgconn.Timeout(err) || pgconn.SafeToRetry(err) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, context.DeadlineExceeded)
}

// scrub keeps the password out of err's text. pgx does not put it there,
// but a message is only as safe as its least careful layer.
func (s *Source) scrub(err error) error {
	if s.password == "" || !strings.Contains(err.Error(), s.password) {
		return err
	}
	return &scrubbed{msg: scrubText(err.Error(), s.password), err: err}
}

func scrubText(msg, password string) string {
	if password != "" {
		msg = strings.ReplaceAll(msg, password, "****")
	}
	return msg
}

// scrubbed is an error whose text had the password: its own text has not;
// errors.Is and errors.As still see the original.
type scrubbed struct {
	msg string
	err error
}

func (e *scrubbed) Error() string { return e.msg }
func (e *scrubbed) Unwrap() error { return e.err }
