package consulkv

import (
	"context"
	"errors"
	"fmt"
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
	msg := err.Error()
	if s.token != "" && strings.Contains(msg, s.token) {
		// consul/api sends the token in a header, so this should never
		// happen; if it does, the text is all we keep.
		err = errors.New(strings.ReplaceAll(msg, s.token, "****"))
	}
	if perr := permanentTLS(what, err); perr != nil {
		return perr // x509 and TLS alerts are never transient
	}
	var se api.StatusError
	switch {
	case errors.As(err, &se):
		switch {
		case se.Code == http.StatusForbidden:
			return fmt.Errorf("%s: %w: %s", what, ErrPermissionDenied, se.Body)
		case se.Code == http.StatusRequestEntityTooLarge:
			return fmt.Errorf("%s: %w: %s", what, ErrRequestTooLarge, se.Body)
		case se.Code >= 500 || se.Code == http.StatusTooManyRequests:
			return migrate.Transient(fmt.Errorf("%s: %w", what, err))
		}
		return fmt.Errorf("%s: %w", what, err)
	case errors.Is(err, context.Canceled) && ctx.Err() != nil && context.Cause(ctx) == context.Canceled:
		return fmt.Errorf("%s: %w", what, err) // the caller gave up
	case errors.Is(err, context.DeadlineExceeded):
		return migrate.Transient(fmt.Errorf("%s: timed out: %w", what, err))
	}
	var ue *url.Error
	var ne net.Error
	if errors.As(err, &ue) || errors.As(err, &ne) || transientText(msg) {
		return migrate.Transient(fmt.Errorf("%s: %w", what, err))
	}
	if strings.Contains(strings.ToLower(msg), "permission denied") {
		return fmt.Errorf("%s: %w: %v", what, ErrPermissionDenied, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// transientText recognizes the transient failures consul/api reports only
// as text (its lock helper formats errors with %v).
func transientText(msg string) bool {
	for _, s := range []string{"No cluster leader", "connection refused", "connection reset",
		"Unexpected response code: 5", "EOF", "timeout", "i/o timeout", "rpc error", "leadership lost"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}
