// Package consulkv is store3: migrate.KV and migrate.Locker on Consul's KV
// store, through consul/api.
//
// Every error is classified for the migration: connection failures, 5xx
// answers (a leader election: "No cluster leader") and request timeouts are
// migrate.Transient; a 403, and a transaction rolled back because an op was
// denied, match migrate.ErrPermissionDenied; a request over the server's
// limits matches migrate.ErrTooLarge; a rolled-back transaction is a
// *migrate.TxnError, and also migrate.ErrLockLost when its fence failed. The
// token never appears in an error.
package consulkv

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/apcera/deployhook/migrate"
)

// Config says how to reach Consul. Empty fields fall back to consul/api's
// environment (CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN, CONSUL_HTTP_TOKEN_FILE,
// CONSUL_HTTP_SSL and the TLS variables), then to 127.0.0.1:8500.
type Config struct {
	Address   string // host:port, or a URL (http://, https://, unix://)
	Token     string // wins over TokenFile
	TokenFile string
	// RequestTimeout bounds each non-blocking request (default 30s); a
	// request that runs out of it is Transient.
	RequestTimeout time.Duration
}

// MaxOps is Consul 1.16's fixed limit on operations in one transaction,
// the fence included.
const MaxOps = 128

// Store is store3 on one Consul agent.
type Store struct {
	c       *api.Client
	cfg     *api.Config // as NewClient resolved it: scheme, address, TLS, HTTP client (Check, ProbeSession)
	token   string
	timeout time.Duration
}

var (
	_ migrate.KV     = (*Store)(nil)
	_ migrate.Locker = (*Store)(nil)
)

// New makes a client; it does not contact the server.
func New(cfg Config) (*Store, error) {
	ac := api.DefaultConfig()
	if cfg.Address != "" {
		ac.Address = cfg.Address
	}
	// Resolve the token here, with consul/api's precedence, so that we
	// know what to scrub from errors.
	tokenFile := ac.TokenFile // CONSUL_HTTP_TOKEN_FILE wins over CONSUL_HTTP_TOKEN
	switch {
	case cfg.Token != "":
		ac.Token, tokenFile = cfg.Token, ""
	case cfg.TokenFile != "":
		tokenFile = cfg.TokenFile
	}
	if tokenFile != "" {
		b, err := os.ReadFile(tokenFile)
		if err != nil {
			return nil, fmt.Errorf("read consul token file: %w", err)
		}
		if t := strings.TrimSpace(string(b)); t != "" {
			ac.Token = t
		}
	}
	ac.TokenFile = ""
	if ac.Transport != nil {
		// Several transactions are in flight: keep their connections.
		ac.Transport.MaxIdleConnsPerHost = 64
	}
	c, err := api.NewClient(ac)
	if err != nil {
		return nil, fmt.Errorf("consul client: %w", err)
	}
	// NewClient left in ac.HttpClient the client it uses, the one it
	// built for a unix:// address included: Scan streams through it.
	ac.HttpClient.Transport = scanTransport{base: ac.HttpClient.Transport}
	s := &Store{c: c, cfg: ac, token: ac.Token, timeout: cfg.RequestTimeout}
	if s.timeout <= 0 {
		s.timeout = 30 * time.Second
	}
	return s, nil
}

// Get implements migrate.KV.
func (s *Store) Get(ctx context.Context, key string) (*migrate.Pair, error) {
	if err := addressable(key); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	p, _, err := s.c.KV().Get(key, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, s.classify(ctx, fmt.Sprintf("get %q", key), err)
	}
	if p == nil {
		return nil, nil
	}
	pair := toPair(p)
	return &pair, nil
}

// Keys implements migrate.KV.
func (s *Store) Keys(ctx context.Context, prefix, separator string) ([]string, error) {
	if err := addressable(prefix); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	keys, _, err := s.c.KV().Keys(prefix, separator, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, s.classify(ctx, fmt.Sprintf("keys %q", prefix), err)
	}
	sort.Strings(keys)
	return keys, nil
}

// Index implements migrate.KV: the X-Consul-Index of a keys listing rolled
// up at "/" (Consul counts the keys it rolls up in the index).
func (s *Store) Index(ctx context.Context, prefix string) (uint64, error) {
	if err := addressable(prefix); err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	_, meta, err := s.c.KV().Keys(prefix, "/", (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return 0, s.classify(ctx, fmt.Sprintf("index of %q", prefix), err)
	}
	return meta.LastIndex, nil
}

func toPair(p *api.KVPair) migrate.Pair {
	return migrate.Pair{Key: p.Key, Value: p.Value, Flags: p.Flags, ModifyIndex: p.ModifyIndex, Session: p.Session}
}

// Limits implements migrate.KV: txn_max_req_len and kv_max_value_size from
// /v1/agent/self (DebugConfig.TxnMaxReqLen, DebugConfig.KVMaxValueSize),
// which needs agent:read.
func (s *Store) Limits(ctx context.Context) migrate.Limits {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var self struct {
		DebugConfig struct {
			TxnMaxReqLen   int64
			KVMaxValueSize int64
		}
	}
	_, err := s.c.Raw().Query("/v1/agent/self", &self, (&api.QueryOptions{}).WithContext(ctx))
	if err == nil && (self.DebugConfig.TxnMaxReqLen <= 0 || self.DebugConfig.KVMaxValueSize <= 0) {
		err = errors.New("no DebugConfig.TxnMaxReqLen or DebugConfig.KVMaxValueSize in the answer")
	}
	if err != nil {
		l := migrate.DefaultLimits
		l.FromServer = false
		l.ServerReason = fmt.Sprintf("%v; assuming Consul 1.16 defaults", s.classify(ctx, "read limits from /v1/agent/self", err))
		if isStatus(err, http.StatusForbidden) {
			l.ServerReason = "read limits from /v1/agent/self: permission denied (the token lacks agent:read); assuming Consul 1.16 defaults"
		}
		return l
	}
	txn, val := int(self.DebugConfig.TxnMaxReqLen), int(self.DebugConfig.KVMaxValueSize)
	return migrate.Limits{MaxOps: MaxOps, MaxBody: max(txn, val), MaxValue: val, FromServer: true}
}

func isStatus(err error, code int) bool {
	var se api.StatusError
	return errors.As(err, &se) && se.Code == code
}

// addressable refuses a key or prefix with a "." or ".." segment: Consul's
// HTTP server cleans request paths, so a read of "a/." would silently read
// "a/" instead (and "a/.." its parent). Writes go through /v1/txn, whose keys
// travel in the body, so only reads need this.
func addressable(key string) error {
	for _, seg := range strings.Split(key, "/") {
		if seg == "." || seg == ".." {
			return fmt.Errorf("key %q has a %q segment, which Consul's HTTP API cannot address", key, seg)
		}
	}
	return nil
}
