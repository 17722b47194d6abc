package consulkv

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/hashicorp/consul/api"

	"github.com/apcera/deployhook/migrate"
)

var _ migrate.SessionProber = (*Store)(nil)

// ProbeSession implements migrate.SessionProber: it asks Consul whether the
// token has session:write on the agent's node (where TryLock creates its
// session), through /v1/internal/acl/authorize, which creates nothing.
// Reading the node's name needs agent:read; without it the probe cannot
// tell, and says so without failing.
func (s *Store) ProbeSession(ctx context.Context) (bool, string, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	node, err := s.c.Agent().NodeName()
	if err != nil {
		if errors.Is(s.classify(ctx, "", err), migrate.ErrPermissionDenied) || isStatus(err, http.StatusForbidden) {
			return true, "not checked: reading the agent's node name needs agent:read", nil
		}
		return false, "", s.classify(ctx, "read the agent's node name", err)
	}
	req := []authzCheck{{Resource: "session", Access: "write", Segment: node}}
	resp, err := s.authorize(ctx, req)
	if isStatus(err, http.StatusUnauthorized) {
		return true, "ACLs are disabled: any request may create sessions", nil
	}
	if err != nil {
		return false, "", s.classify(ctx, "probe session:write", err)
	}
	if len(resp) != 1 {
		return false, "", fmt.Errorf("probe session:write: %d answers to 1 question", len(resp))
	}
	if !resp[0].Allow {
		return false, fmt.Sprintf("the token may not create the lock's session: grant session:write on node %q (session_prefix \"\" { policy = \"write\" })", node), nil
	}
	return true, fmt.Sprintf("the token may create sessions on node %q", node), nil
}

// authzCheck is one question to /v1/internal/acl/authorize, and its answer.
type authzCheck struct {
	Resource, Access, Segment string
	Allow                     bool `json:",omitempty"`
}

// authorize POSTs to /v1/internal/acl/authorize (POST only, which
// consul/api's Raw cannot send), with the client's token and transport.
func (s *Store) authorize(ctx context.Context, checks []authzCheck) ([]authzCheck, error) {
	body, err := json.Marshal(checks)
	if err != nil {
		return nil, err
	}
	u := url.URL{Scheme: s.cfg.Scheme, Host: s.cfg.Address, Path: "/v1/internal/acl/authorize"}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if s.token != "" {
		req.Header.Set("X-Consul-Token", s.token)
	}
	resp, err := s.cfg.HttpClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, api.StatusError{Code: resp.StatusCode, Body: string(b)}
	}
	var out []authzCheck
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("decode answer: %w", err)
	}
	return out, nil
}
