package consulkv

import (
	"context"
	"errors"
	"fmt"
	"net/http"

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

// authorize asks /v1/internal/acl/authorize, through consul/api like every
// request (every address form, TLS, token, CONSUL_HTTP_AUTH): Raw().Write
// sends PUT, and the endpoint takes POST only, so the transport swaps the
// method.
func (s *Store) authorize(ctx context.Context, checks []authzCheck) ([]authzCheck, error) {
	var out []authzCheck
	w := (&api.WriteOptions{}).WithContext(context.WithValue(ctx, callKey{}, &call{method: http.MethodPost}))
	_, err := s.c.Raw().Write("/v1/internal/acl/authorize", checks, &out, w)
	return out, err
}
