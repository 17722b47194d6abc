package consulkv

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/hashicorp/consul/api"

	"github.com/apcera/deployhook/migrate"
)

// ScanPairs implements migrate.PairScanner: it reads every pair under
// prefix in one recursive GET, as KV().List does, but decodes the response
// as it arrives and hands each pair to fn, so memory stays constant however
// many keys the prefix holds. consul/api's List holds them all, values
// included, which made verification grow with the largest bucket. The
// decoding is decodeKVList's (kvlist.go), which agrees with encoding/json
// at a fraction of its cost.
func (s *Store) ScanPairs(ctx context.Context, prefix string, fn func(*migrate.Pair) error) error {
	if err := addressable(prefix); err != nil {
		return err
	}
	what := fmt.Sprintf("list %q", prefix)
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	q := url.Values{"recurse": {"true"}}
	if s.cfg.Datacenter != "" {
		q.Set("dc", s.cfg.Datacenter)
	}
	if s.cfg.Namespace != "" {
		q.Set("ns", s.cfg.Namespace)
	}
	if s.cfg.Partition != "" {
		q.Set("partition", s.cfg.Partition)
	}
	u := url.URL{Scheme: s.cfg.Scheme, Host: s.cfg.Address, Path: s.cfg.PathPrefix + "/v1/kv/" + prefix, RawQuery: q.Encode()}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if s.token != "" {
		req.Header.Set("X-Consul-Token", s.token)
	}
	// The agent is local and the servers are CPU-bound during a migration:
	// compressing the listing costs them more than it saves.
	req.Header.Set("Accept-Encoding", "identity")
	resp, err := s.cfg.HttpClient.Do(req)
	if err != nil {
		return s.classify(ctx, what, err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return nil // nothing under the prefix
	default:
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return s.classify(ctx, what, api.StatusError{Code: resp.StatusCode, Body: string(body)})
	}

	var fnErr error
	err = decodeKVList(resp.Body, func(p *migrate.Pair) error {
		fnErr = fn(p)
		return fnErr
	})
	if err != nil && fnErr == nil {
		return s.classify(ctx, what, fmt.Errorf("decode: %w", err))
	}
	return err
}
