package consulkv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/hashicorp/consul/api"

	"github.com/apcera/deployhook/migrate"
)

// txnResponse is the part of /v1/txn's answer we read: the per-op errors.
// The results of set ops carry no values, and we do not need them.
type txnResponse struct {
	Errors []struct {
		OpIndex int
		What    string
	}
}

// Txn implements migrate.KV. With a fence, op 0 is a check-session on the
// lock key, so len(ops)+1 must stay within MaxOps.
func (s *Store) Txn(ctx context.Context, fence migrate.Fence, ops []migrate.Op) error {
	if fence.Session != "" && fence.LockKey == "" {
		return errors.New("txn: fence without a lock key")
	}
	for _, op := range ops {
		if !knownVerb(op.Verb) {
			return fmt.Errorf("txn: unsupported verb %q", op.Verb)
		}
	}
	n := len(ops)
	if fence.Session != "" {
		n++
	}
	if n == 0 {
		return nil
	}
	// Not reused: the transport may still read a body after the answer
	// came back (an early error answer).
	body := migrate.AppendTxn(nil, fence, ops)

	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	what := fmt.Sprintf("txn of %d ops", n)
	// consul/api would encode the body with encoding/json, whose check of a
	// RawMessage costs as much as the reflection: the transport sends ours
	// in place of the empty array it encodes.
	c := &call{body: body}
	q := (&api.WriteOptions{}).WithContext(context.WithValue(ctx, callKey{}, c))
	_, err := s.c.Raw().Write("/v1/txn", json.RawMessage("[]"), nil, q)
	if err == nil {
		return nil
	}
	var se api.StatusError
	if !errors.As(err, &se) || se.Code != http.StatusConflict {
		return s.classify(ctx, what, err)
	}

	// 409: rolled back, with the reasons.
	var resp txnResponse
	if jerr := json.Unmarshal([]byte(se.Body), &resp); jerr != nil {
		return fmt.Errorf("%s: rolled back, unreadable reasons %q: %w", what, se.Body, jerr)
	}
	te := &migrate.TxnError{}
	fenceFailed, denied := false, false
	for _, e := range resp.Errors {
		te.Errors = append(te.Errors, fmt.Sprintf("op %d: %s", e.OpIndex, e.What))
		// Consul vets every op against the ACLs before it runs any, and
		// reports a denial as a rolled-back op whose reason is the only
		// sign of it: "Permission denied: token ... lacks permission ...".
		if strings.HasPrefix(e.What, "Permission denied") {
			denied = true
		} else if fence.Session != "" && e.OpIndex == 0 {
			fenceFailed = true
		}
	}
	if len(te.Errors) == 0 {
		te.Errors = []string{se.Body}
	}
	switch {
	case denied:
		return fmt.Errorf("%s: %w: %w", what, migrate.ErrPermissionDenied, te)
	case fenceFailed:
		return fmt.Errorf("%s: %w: session %s no longer holds %q: %w", what, migrate.ErrLockLost, fence.Session, fence.LockKey, te)
	}
	return fmt.Errorf("%s: %w", what, te)
}

// knownVerb says whether v is one of the migration's verbs, which
// migrate.AppendTxn writes as they are spelled (Consul's spelling:
// TestVerbsAreConsulsVerbs).
func knownVerb(v migrate.Verb) bool {
	switch v {
	case migrate.VerbSet, migrate.VerbDelete, migrate.VerbDeleteTree, migrate.VerbCheckNotExists, migrate.VerbCheckIndex:
		return true
	}
	return false
}
