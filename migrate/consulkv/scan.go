package consulkv

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/hashicorp/consul/api"

	"github.com/apcera/deployhook/migrate"
)

// Scan implements migrate.KV. It is consul/api's own KV().List, so that
// every address form (http://, https:// with the CONSUL_* TLS settings,
// unix://), the token, CONSUL_HTTP_AUTH and the client's headers apply to
// it as to every other request; but the body is decoded as it arrives
// (decodeKVList), by scanTransport, and handed to fn pair by pair: List
// itself would hold every pair, values included.
func (s *Store) Scan(ctx context.Context, prefix string, fn func(*migrate.Pair) error) error {
	if err := addressable(prefix); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	call := &scanCall{fn: fn}
	q := (&api.QueryOptions{}).WithContext(context.WithValue(ctx, scanKey{}, call))
	_, _, err := s.c.KV().List(prefix, q)
	switch {
	case call.fnErr != nil:
		return call.fnErr
	case call.err != nil:
		err = fmt.Errorf("read the listing: %w", call.err)
	}
	return s.classify(ctx, fmt.Sprintf("list %q", prefix), err)
}

// scanKey is the context key of a Scan's request.
type scanKey struct{}

// scanCall is one Scan: its callback, and what decoding the body came to.
type scanCall struct {
	fn    func(*migrate.Pair) error
	fnErr error // fn's
	err   error // the body's
}

// scanTransport wraps the transport consul/api built (for unix:// too).
// A request whose context carries a *scanCall gets its 200 body decoded
// into the callback as it streams in; consul/api gets an empty list in its
// place, and handles every other answer (404, 403, 5xx) as for any request.
type scanTransport struct{ base http.RoundTripper }

func (t scanTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	call, _ := req.Context().Value(scanKey{}).(*scanCall)
	if call == nil {
		return t.base.RoundTrip(req)
	}
	// The agent is local and the servers are busy during a migration:
	// compressing a listing costs them more than it saves.
	req = req.Clone(req.Context())
	req.Header.Set("Accept-Encoding", "identity")
	resp, err := t.base.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	err = decodeKVList(resp.Body, func(p *migrate.Pair) error {
		call.fnErr = call.fn(p)
		return call.fnErr
	})
	if call.fnErr == nil {
		call.err = err
	}
	resp.Body.Close()
	resp.Body = io.NopCloser(strings.NewReader("[]"))
	resp.ContentLength = 2
	return resp, nil
}
