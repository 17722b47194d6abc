package consulkv

import (
	"bytes"
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
	c := &call{fn: fn}
	q := (&api.QueryOptions{}).WithContext(context.WithValue(ctx, callKey{}, c))
	_, _, err := s.c.KV().List(prefix, q)
	switch {
	case c.fnErr != nil:
		return c.fnErr
	case c.err != nil:
		err = fmt.Errorf("read the listing: %w", c.err)
	}
	return s.classify(ctx, fmt.Sprintf("list %q", prefix), err)
}

// callKey is the context key of a request that needs more of the
// transport than consul/api asks.
type callKey struct{}

// call is what one request needs of scanTransport: a method consul/api
// cannot send, a body encoded without it, or a listing decoded as it
// streams in.
type call struct {
	method string                    // replaces consul/api's, when set
	body   []byte                    // replaces consul/api's, when set
	fn     func(*migrate.Pair) error // Scan's callback
	fnErr  error                     // fn's
	err    error                     // the body's
}

// scanTransport wraps the transport consul/api built (for unix:// too), so
// that every request goes through consul/api's own machinery: address,
// TLS, token, CONSUL_HTTP_AUTH, headers. A request whose context carries a
// *call gets its method replaced when the call says so; with a callback,
// its 200 body is decoded into the callback as it streams in and
// consul/api gets an empty list in its place, and handles every other
// answer (404, 403, 5xx) as for any request.
type scanTransport struct{ base http.RoundTripper }

func (t scanTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	// No answer compressed: the agent is local and the servers are busy
	// during a migration. Consul gzips any answer over 1,400 bytes when
	// asked to, which Go's transport does by default: every transaction's
	// answer (the results of its sets, about 150 bytes an op) and every
	// listing. Compressing them cost the server more CPU than they take
	// to send.
	req.Header.Set("Accept-Encoding", "identity")
	c, _ := req.Context().Value(callKey{}).(*call)
	if c == nil {
		return t.base.RoundTrip(req)
	}
	if c.method != "" {
		req.Method = c.method
	}
	if c.body != nil {
		body := c.body
		req.ContentLength = int64(len(body))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
		req.Body, _ = req.GetBody()
	}
	if c.fn == nil {
		return t.base.RoundTrip(req)
	}
	resp, err := t.base.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	err = decodeKVList(resp.Body, func(p *migrate.Pair) error {
		c.fnErr = c.fn(p)
		return c.fnErr
	})
	if c.fnErr == nil {
		c.err = err
	}
	resp.Body.Close()
	resp.Body = io.NopCloser(strings.NewReader("[]"))
	resp.ContentLength = 2
	return resp, nil
}
