package consulkv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/hashicorp/consul/api"

	"github.com/apcera/deployhook/migrate"
)

// classify names the operation, sorts err into the kinds the migration
// branches on, and scrubs the token from it. ctx is the request's context:
// when it, and not the caller's, ran out, the request timed out (Transient).
func (s *Store) classify(ctx context.Context, what string, err error) error {
	if err == nil {
		return nil
	}
	if s.token != "" && strings.Contains(err.Error(), s.token) {
		// consul/api sends the token in a header, so this should never
		// happen; if it does, the text is all we keep.
		err = errors.New(strings.ReplaceAll(err.Error(), s.token, "****"))
	}
	if perr := permanentTLS(what, err); perr != nil {
		return perr // x509 and TLS alerts are never transient
	}
	var se api.StatusError
	var ue *url.Error
	var ne net.Error
	switch {
	case errors.As(err, &se):
		switch {
		case se.Code == http.StatusForbidden:
			return fmt.Errorf("%s: %w: %s", what, migrate.ErrPermissionDenied, se.Body)
		case se.Code == http.StatusRequestEntityTooLarge:
			return fmt.Errorf("%s: %w: %s", what, migrate.ErrTooLarge, se.Body)
		case se.Code >= 500 || se.Code == http.StatusTooManyRequests:
			return migrate.Transient(fmt.Errorf("%s: %w", what, err))
		}
	case errors.Is(err, context.Canceled) && ctx.Err() != nil && context.Cause(ctx) == context.Canceled:
		// the caller gave up
	case errors.Is(err, context.DeadlineExceeded):
		return migrate.Transient(fmt.Errorf("%s: timed out: %w", what, err))
	case errors.As(err, &ue), errors.As(err, &ne), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		// the connection failed, or was cut mid-answer
		return migrate.Transient(fmt.Errorf("%s: %w", what, err))
	}
	return fmt.Errorf("%s: %w", what, err)
}
