package consulkv

import (
	"context"
	"encoding/json"
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
// included, which made verification grow with the largest bucket.
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

	dec := json.NewDecoder(resp.Body)
	if err := expectDelim(dec, '['); err != nil {
		return s.classify(ctx, what, err)
	}
	for dec.More() {
		var p struct {
			Key         string
			Flags       uint64
			Value       []byte
			ModifyIndex uint64
			Session     string
		}
		if err := dec.Decode(&p); err != nil {
			return s.classify(ctx, what, fmt.Errorf("decode: %w", err))
		}
		pair := migrate.Pair{Key: p.Key, Value: p.Value, Flags: p.Flags, ModifyIndex: p.ModifyIndex, Session: p.Session}
		if err := fn(&pair); err != nil {
			return err
		}
	}
	if err := expectDelim(dec, ']'); err != nil {
		return s.classify(ctx, what, err)
	}
	return nil
}

func expectDelim(dec *json.Decoder, want json.Delim) error {
	t, err := dec.Token()
	if err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	if d, ok := t.(json.Delim); !ok || d != want {
		return fmt.Errorf("decode: got %v, want %q", t, want)
	}
	return nil
}
