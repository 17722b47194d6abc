package harness

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// ConsulOption configures a Consul server.
type ConsulOption func(*consulConfig)

type consulConfig struct {
	txnMaxReqLen   int
	kvMaxValueSize int
	acl            bool
	hcl            []string
	logLevel       string
	unixSocket     bool
	gossipKey      string // the cluster's serf encryption key, base64
	https          string // the tls stanza of WithHTTPS, "" without
}

// WithLimits sets limits { txn_max_req_len kv_max_value_size } (bytes).
func WithLimits(txnMaxReqLen, kvMaxValueSize int) ConsulOption {
	return func(c *consulConfig) { c.txnMaxReqLen, c.kvMaxValueSize = txnMaxReqLen, kvMaxValueSize }
}

// WithACL enables ACLs with default_policy "deny" and a random
// initial_management token (ManagementToken), which Client uses.
func WithACL() ConsulOption { return func(c *consulConfig) { c.acl = true } }

// WithHCL adds raw agent configuration.
func WithHCL(hcl string) ConsulOption { return func(c *consulConfig) { c.hcl = append(c.hcl, hcl) } }

// WithUnixSocket makes the HTTP API listen on a unix socket in the
// server's directory besides its loopback port (which the harness keeps
// using): UnixAddr is its address.
func WithUnixSocket() ConsulOption { return func(c *consulConfig) { c.unixSocket = true } }

// UnixAddr is the unix:// address of the HTTP API, for a server started
// WithUnixSocket.
func (c *Consul) UnixAddr() string { return "unix://" + filepath.Join(c.Dir, "http.sock") }

// WithLogLevel sets -log-level (default "info").
func WithLogLevel(level string) ConsulOption { return func(c *consulConfig) { c.logLevel = level } }

// Consul is one Consul server process on loopback ports, raft on disk.
type Consul struct {
	Name     string
	Dir      string // -data-dir, with the config file beside it
	HTTPPort int
	ports    consulPorts
	bin      string
	cfg      consulConfig
	token    string
	join     []string // serf LAN addresses of the other servers
	expect   int
	log      *logBuffer

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

type consulPorts struct{ http, server, serfLAN, serfWAN, https int }

// portsPerServer is how many ports each server is given: the HTTPS one is
// picked whether WithHTTPS asked for it or not.
const portsPerServer = 5

// ConsulBinary returns <repo>/bin/consul, or an error that says how to get
// it.
func ConsulBinary() (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", fmt.Errorf("%w: run make consul", err)
	}
	bin := filepath.Join(root, "bin", "consul")
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("%s missing: run make consul", bin)
	}
	return bin, nil
}

// StartConsul starts a single server for the test, stops it in t.Cleanup and
// prints its log if the test failed.
func StartConsul(t testing.TB, opts ...ConsulOption) *Consul {
	t.Helper()
	c, err := StartConsulDir(t.TempDir(), nil, opts...)
	if c != nil {
		logOnFailure(t, "consul "+c.Name, c.Log)
		t.Cleanup(func() { c.Kill() })
	}
	if err != nil {
		t.Fatalf("consul: %v", err)
	}
	return c
}

// StartConsulDir starts a single server with its data in dir. logw, if not
// nil, receives the server's output as it comes. On error the returned
// *Consul, if not nil, holds the log and must be stopped.
func StartConsulDir(dir string, logw io.Writer, opts ...ConsulOption) (*Consul, error) {
	cl, err := startCluster(dir, 1, logw, opts)
	if cl == nil {
		return nil, err
	}
	return cl.Servers[0], err
}

func newConsul(bin, dir, name string, cfg consulConfig, token string, expect int, p consulPorts, logw io.Writer) (*Consul, error) {
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
		return nil, err
	}
	c := &Consul{Name: name, Dir: dir, HTTPPort: p.http, ports: p, bin: bin, cfg: cfg, token: token, expect: expect, log: newLogBuffer(logw)}
	return c, os.WriteFile(c.configFile(), []byte(c.config()), 0o600)
}

// freePorts picks ports; a test replaces it to hand a server a taken one.
var freePorts = FreePorts

func (c *Consul) configFile() string { return filepath.Join(c.Dir, "config.hcl") }

func (c *Consul) config() string {
	var b strings.Builder
	b.WriteString("disable_update_check = true\n")
	if c.cfg.gossipKey != "" {
		fmt.Fprintf(&b, "encrypt = %q\n", c.cfg.gossipKey)
	}
	// Elections in about a second, not five: tests kill leaders.
	b.WriteString("performance { raft_multiplier = 1 }\n")
	if c.cfg.txnMaxReqLen > 0 || c.cfg.kvMaxValueSize > 0 {
		b.WriteString("limits {\n")
		if c.cfg.txnMaxReqLen > 0 {
			fmt.Fprintf(&b, "  txn_max_req_len = %d\n", c.cfg.txnMaxReqLen)
		}
		if c.cfg.kvMaxValueSize > 0 {
			fmt.Fprintf(&b, "  kv_max_value_size = %d\n", c.cfg.kvMaxValueSize)
		}
		b.WriteString("}\n")
	}
	if c.cfg.acl {
		fmt.Fprintf(&b, "acl {\n  enabled = true\n  default_policy = \"deny\"\n  tokens {\n    initial_management = %q\n    agent = %q\n  }\n}\n", c.token, c.token)
	}
	if c.cfg.https != "" {
		fmt.Fprintf(&b, "ports { https = %d }\n%s\n", c.ports.https, c.cfg.https)
	}
	if c.cfg.unixSocket {
		fmt.Fprintf(&b, "addresses { http = %q }\n", "127.0.0.1 "+c.UnixAddr())
	}
	for _, h := range c.cfg.hcl {
		b.WriteString(h + "\n")
	}
	return b.String()
}

func (c *Consul) args() []string {
	a := []string{"agent", "-server", "-bootstrap-expect", strconv.Itoa(c.expect),
		"-node", c.Name, "-data-dir", filepath.Join(c.Dir, "data"),
		"-bind", "127.0.0.1", "-client", "127.0.0.1",
		"-http-port", strconv.Itoa(c.ports.http), "-server-port", strconv.Itoa(c.ports.server),
		"-serf-lan-port", strconv.Itoa(c.ports.serfLAN), "-serf-wan-port", strconv.Itoa(c.ports.serfWAN),
		"-grpc-port", "-1", "-grpc-tls-port", "-1", "-dns-port", "-1",
		"-log-level", c.cfg.logLevel, "-config-file", c.configFile()}
	for _, j := range c.join {
		a = append(a, "-retry-join", j)
	}
	return a
}

// start launches the process; it does not wait for readiness.
func (c *Consul) start() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd != nil {
		return fmt.Errorf("consul %s already running", c.Name)
	}
	cmd := exec.Command(c.bin, c.args()...)
	cmd.Stdout, cmd.Stderr = c.log, c.log
	cmd.Env = consulEnv()
	// Die with the test binary rather than outlive it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start consul: %w", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	c.cmd, c.exited = cmd, exited
	return nil
}

// consulEnv keeps the caller's CONSUL_* settings away from the server.
func consulEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CONSUL_") {
			env = append(env, kv)
		}
	}
	return env
}

func (c *Consul) running() (chan struct{}, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd == nil {
		return nil, false
	}
	select {
	case <-c.exited:
		return c.exited, false
	default:
		return c.exited, true
	}
}

// Addr is the HTTP API address, 127.0.0.1:port.
func (c *Consul) Addr() string { return fmt.Sprintf("127.0.0.1:%d", c.HTTPPort) }

// ManagementToken is the initial management token, "" without ACLs.
func (c *Consul) ManagementToken() string { return c.token }

// Client is an API client for this server, with the management token when
// ACLs are on.
func (c *Consul) Client() *api.Client {
	cfg := api.DefaultNonPooledConfig()
	cfg.Address = c.Addr()
	cfg.Scheme = "http"
	cfg.Token = c.token
	cfg.TokenFile = ""
	cl, err := api.NewClient(cfg)
	if err != nil {
		panic(err) // only fails on TLS settings, which we do not set
	}
	return cl
}

// CreateToken creates a policy with rules and a token bound to it, and
// returns the token's secret. It needs WithACL.
func (c *Consul) CreateToken(rules string) (string, error) {
	if c.token == "" {
		return "", errors.New("consul started without WithACL")
	}
	acl := c.Client().ACL()
	name := "harness-" + randomHex(6)
	pol, _, err := acl.PolicyCreate(&api.ACLPolicy{Name: name, Rules: rules}, nil)
	if err != nil {
		return "", fmt.Errorf("create policy: %w", err)
	}
	tok, _, err := acl.TokenCreate(&api.ACLToken{Description: name, Policies: []*api.ACLTokenPolicyLink{{ID: pol.ID}}}, nil)
	if err != nil {
		return "", fmt.Errorf("create token: %w", err)
	}
	return tok.SecretID, nil
}

// Log returns the server's output so far (its last 4 MiB).
func (c *Consul) Log() string { return c.log.String() }

// Stop shuts the server down with SIGTERM and waits for it to exit
// (SIGKILL after 10 s).
func (c *Consul) Stop() error { return c.signal(syscall.SIGTERM, 10*time.Second) }

// Kill kills the server (SIGKILL), as a crash would, and waits for it.
func (c *Consul) Kill() error { return c.signal(syscall.SIGKILL, 10*time.Second) }

func (c *Consul) signal(sig syscall.Signal, grace time.Duration) error {
	c.mu.Lock()
	cmd, exited := c.cmd, c.exited
	c.cmd = nil
	c.mu.Unlock()
	if cmd == nil {
		return nil
	}
	cmd.Process.Signal(sig)
	select {
	case <-exited:
		return nil
	case <-time.After(grace):
		cmd.Process.Kill()
		<-exited
		return fmt.Errorf("consul %s did not stop within %v of %v: killed", c.Name, grace, sig)
	}
}

// Restart starts a stopped or killed server again, with the same data and
// ports, and waits until it is a server with a leader again.
func (c *Consul) Restart() error {
	if _, ok := c.running(); ok {
		return fmt.Errorf("consul %s is running", c.Name)
	}
	if err := c.start(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	return c.waitReady(ctx, c.expect)
}

// waitReady waits until the server sees a leader and peers raft peers, its
// node is registered (sessions need it), and a KV write through it succeeds.
func (c *Consul) waitReady(ctx context.Context, peers int) error {
	cl := c.Client()
	var last error
	for {
		if err := c.exitErr(); err != nil {
			return err
		}
		exited, _ := c.running()
		last = c.probe(ctx, cl, peers)
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("consul %s not ready: %v\n%s", c.Name, last, Tail(c.Log(), 30))
		case <-exited:
		case <-time.After(pollInterval):
		}
	}
}

func (c *Consul) probe(ctx context.Context, cl *api.Client, peers int) error {
	q := (&api.QueryOptions{}).WithContext(ctx)
	leader, err := cl.Status().LeaderWithQueryOptions(q)
	if err != nil {
		return err
	}
	if leader == "" {
		return errors.New("no leader")
	}
	ps, err := cl.Status().PeersWithQueryOptions(q)
	if err != nil {
		return err
	}
	if len(ps) != peers {
		return fmt.Errorf("%d raft peers, want %d", len(ps), peers)
	}
	// Sessions need the node registered with a passing serfHealth check.
	checks, _, err := cl.Health().Node(c.Name, q)
	if err != nil {
		return err
	}
	healthy := false
	for _, ch := range checks {
		healthy = healthy || (ch.CheckID == "serfHealth" && ch.Status == api.HealthPassing)
	}
	if !healthy {
		return errors.New("node not registered with a passing serfHealth yet")
	}
	w := (&api.WriteOptions{}).WithContext(ctx)
	_, err = cl.KV().Put(&api.KVPair{Key: "harness/ready/" + c.Name, Value: []byte("ok")}, w)
	return err
}

// ConsulCluster is several Consul servers on loopback.
type ConsulCluster struct {
	Servers []*Consul
}

// StartConsulCluster starts n servers for the test and waits for a leader
// and n raft peers. It stops them in t.Cleanup and prints their logs if the
// test failed.
func StartConsulCluster(t testing.TB, n int, opts ...ConsulOption) *ConsulCluster {
	t.Helper()
	cl, err := StartConsulClusterDir(t.TempDir(), n, nil, opts...)
	if cl != nil {
		for _, s := range cl.Servers {
			logOnFailure(t, "consul "+s.Name, s.Log)
		}
		t.Cleanup(func() { cl.Kill() })
	}
	if err != nil {
		t.Fatalf("consul cluster: %v", err)
	}
	return cl
}

// StartConsulClusterDir starts n servers with their data under dir. On error
// the returned cluster, if not nil, must be stopped.
func StartConsulClusterDir(dir string, n int, logw io.Writer, opts ...ConsulOption) (*ConsulCluster, error) {
	return startCluster(dir, n, logw, opts)
}

func startCluster(dir string, n int, logw io.Writer, opts []ConsulOption) (*ConsulCluster, error) {
	bin, err := ConsulBinary()
	if err != nil {
		return nil, err
	}
	cfg := consulConfig{logLevel: "info"}
	for _, o := range opts {
		o(&cfg)
	}
	token := ""
	if cfg.acl {
		token = randomUUID()
	}
	// Each cluster (a single server too) gossips under its own key. Ports
	// are picked free and bound later: when another server took one in
	// between, the server that lost it exits and the cluster is started
	// again on new ports, but a server of this cluster could have joined
	// the serf pool of another listening there, and merged the two: seen
	// under load as a cluster of parallel tests that never elected a
	// leader. Serf drops what it cannot decrypt.
	cfg.gossipKey = randomKey()
	for attempt := 0; ; attempt++ {
		cl, err := tryCluster(bin, dir, n, cfg, token, logw)
		if errors.Is(err, errPortInUse) && attempt < 3 {
			// New ports next time, and no raft state naming the old ones.
			cl.Kill()
			for _, s := range cl.Servers {
				os.RemoveAll(filepath.Join(s.Dir, "data"))
			}
			continue
		}
		return cl, err
	}
}

func tryCluster(bin, dir string, n int, cfg consulConfig, token string, logw io.Writer) (*ConsulCluster, error) {
	// The whole cluster's ports at once: picked server by server, a port
	// let go by one could be handed to the next.
	p, err := freePorts(portsPerServer * n)
	if err != nil {
		return nil, err
	}
	cl := &ConsulCluster{}
	for i := range n {
		name := fmt.Sprintf("server-%d", i+1)
		sdir := dir
		if n > 1 {
			sdir = filepath.Join(dir, name)
		}
		var w io.Writer
		if logw != nil {
			w = &prefixWriter{prefix: "[" + name + "] ", w: logw}
		}
		q := p[portsPerServer*i:]
		ports := consulPorts{http: q[0], server: q[1], serfLAN: q[2], serfWAN: q[3], https: q[4]}
		s, err := newConsul(bin, sdir, name, cfg, token, n, ports, w)
		if err != nil {
			return cl, err
		}
		cl.Servers = append(cl.Servers, s)
	}
	for _, s := range cl.Servers {
		for _, o := range cl.Servers {
			if o != s {
				s.join = append(s.join, fmt.Sprintf("127.0.0.1:%d", o.ports.serfLAN))
			}
		}
		if err := s.start(); err != nil {
			return cl, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	// Without one server the others never elect a leader: stop waiting for
	// any of them as soon as one exits, and say why it did.
	for _, s := range cl.Servers {
		exited, _ := s.running()
		go func() {
			select {
			case <-exited:
				cancel()
			case <-ctx.Done():
			}
		}()
	}
	for _, s := range cl.Servers {
		if err := s.waitReady(ctx, n); err != nil {
			if exitErr := cl.exited(); exitErr != nil {
				return cl, exitErr
			}
			return cl, err
		}
	}
	return cl, nil
}

// exitErr is nil while the server runs; otherwise why it does not:
// errPortInUse when a port it was given was taken, its log's tail else.
func (c *Consul) exitErr() error {
	exited, ok := c.running()
	switch {
	case ok:
		return nil
	case exited == nil:
		return fmt.Errorf("consul %s not started", c.Name)
	case portInUse(c.Log()):
		return errPortInUse
	}
	return fmt.Errorf("consul %s exited before it was ready:\n%s", c.Name, Tail(c.Log(), 30))
}

// exited is the exitErr of the first server that no longer runs.
func (cl *ConsulCluster) exited() error {
	for _, s := range cl.Servers {
		if err := s.exitErr(); err != nil {
			return err
		}
	}
	return nil
}

// Addrs are the servers' HTTP addresses.
func (cl *ConsulCluster) Addrs() []string {
	var a []string
	for _, s := range cl.Servers {
		a = append(a, s.Addr())
	}
	return a
}

// Leader returns the server that is the raft leader now, as a running server
// sees it.
func (cl *ConsulCluster) Leader() (*Consul, error) {
	for _, s := range cl.Servers {
		if _, ok := s.running(); !ok {
			continue
		}
		leader, err := s.Client().Status().Leader()
		if err != nil || leader == "" {
			continue
		}
		for _, o := range cl.Servers {
			if leader == fmt.Sprintf("127.0.0.1:%d", o.ports.server) {
				return o, nil
			}
		}
		return nil, fmt.Errorf("leader %s is not one of the cluster's servers", leader)
	}
	return nil, errors.New("no leader")
}

// WaitLeader waits until the running servers agree on a leader, and returns
// it.
func (cl *ConsulCluster) WaitLeader(ctx context.Context) (*Consul, error) {
	for {
		l, err := cl.Leader()
		if err == nil {
			if _, ok := l.running(); ok {
				return l, nil
			}
			err = fmt.Errorf("leader %s is down", l.Name)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for a leader: %w (last: %v)", ctx.Err(), err)
		case <-time.After(pollInterval):
		}
	}
}

// KillLeader kills the current leader (SIGKILL) and returns it.
func (cl *ConsulCluster) KillLeader() (*Consul, error) {
	l, err := cl.Leader()
	if err != nil {
		return nil, err
	}
	return l, l.Kill()
}

// Stop stops every server.
func (cl *ConsulCluster) Stop() error {
	var errs []error
	for _, s := range cl.Servers {
		errs = append(errs, s.Stop())
	}
	return errors.Join(errs...)
}

// Kill kills every server.
func (cl *ConsulCluster) Kill() error {
	if cl == nil {
		return nil
	}
	var errs []error
	for _, s := range cl.Servers {
		errs = append(errs, s.Kill())
	}
	return errors.Join(errs...)
}

type prefixWriter struct {
	mu     sync.Mutex
	prefix string
	w      io.Writer
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []byte
	for _, line := range strings.SplitAfter(string(b), "\n") {
		if line != "" {
			out = append(out, p.prefix...)
			out = append(out, line...)
		}
	}
	if _, err := p.w.Write(out); err != nil {
		return 0, err
	}
	return len(b), nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// randomKey is a serf gossip encryption key: 32 random bytes, base64.
func randomKey() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

func randomUUID() string {
	h := randomHex(16)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}
