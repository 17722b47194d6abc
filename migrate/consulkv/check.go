package consulkv

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/apcera/deployhook/migrate"
)

// ErrConfig is a store3 configuration problem that no retry fixes: a file
// that cannot be read, an address that does not parse, a certificate the
// other side refuses. Its message names the file or the setting.
var ErrConfig = errors.New("store3 configuration error")

// Check finds, in the foreground and within timeout, the configuration
// problems that would make every later request fail: it resolves the
// client configuration as New does (the conf, then consul/api's CONSUL_*
// variables), reads every file it names (token, CA, CA directory, client
// certificate and key), parses the address, and makes one request, which
// over https completes a TLS handshake. A problem of that kind wraps
// ErrConfig. A server that does not answer (nothing listening, a timeout,
// a leader election) is migrate.Transient: the migration retries it.
func Check(ctx context.Context, cfg Config, timeout time.Duration) error {
	if err := checkFiles(cfg); err != nil {
		return err
	}
	if v := os.Getenv(api.HTTPSSLEnvName); v != "" {
		if _, err := strconv.ParseBool(v); err != nil {
			return fmt.Errorf("%w: %s=%q is not a boolean", ErrConfig, api.HTTPSSLEnvName, v)
		}
	}
	s, err := New(cfg)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if err := checkAddress(s.cfg.Address); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if s.cfg.Scheme == "https" {
		if err := s.handshake(ctx); err != nil {
			return err
		}
	}
	_, err = s.c.Status().LeaderWithQueryOptions((&api.QueryOptions{}).WithContext(ctx))
	if err == nil || isStatus(err, http.StatusForbidden) {
		return nil
	}
	if isStatus(err, http.StatusBadRequest) && s.cfg.Scheme == "http" {
		// Go's TLS server answers plain HTTP with 400.
		return fmt.Errorf("%w: consul at %s refused plain http (%v): set CONSUL_HTTP_SSL=true or an https:// address", ErrConfig, s.cfg.Address, err)
	}
	return s.classify(ctx, fmt.Sprintf("reach consul at %s://%s", s.cfg.Scheme, s.cfg.Address), err)
}

// handshake dials the server and completes one TLS handshake with the
// client's TLS settings. net/http reports a server that answers in plain
// HTTP only as text; the handshake's own error says it by type.
func (s *Store) handshake(ctx context.Context) error {
	what := fmt.Sprintf("TLS handshake with consul at %s", s.cfg.Address)
	conf, err := api.SetupTLSConfig(&s.cfg.TLSConfig)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrConfig, what, err)
	}
	if conf.ServerName == "" {
		conf.ServerName, _, _ = net.SplitHostPort(s.cfg.Address)
	}
	// Know whether the server asks for a client certificate: in TLS 1.3
	// it judges ours after our side of the handshake is done.
	requested := false
	certs := conf.Certificates
	conf.Certificates = nil
	conf.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		requested = true
		if len(certs) > 0 {
			return &certs[0], nil
		}
		return &tls.Certificate{}, nil
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", s.cfg.Address)
	if err != nil {
		return s.classify(ctx, what, err)
	}
	defer conn.Close()
	tc := tls.Client(conn, conf)
	if err := tc.HandshakeContext(ctx); err != nil {
		return s.classify(ctx, what, err)
	}
	if !requested {
		return nil
	}
	// A server that refuses our certificate sends its alert right away; one
	// that accepts it waits for a request, and the read times out. Sending
	// nothing first keeps the alert from being lost to a reset.
	tc.SetReadDeadline(time.Now().Add(clientCertVerdict))
	_, err = tc.Read(make([]byte, 1))
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() {
		return nil
	}
	return s.classify(ctx, what, err)
}

// clientCertVerdict is how long the check waits for a server that asked for
// a client certificate to refuse it.
const clientCertVerdict = 500 * time.Millisecond

// checkFiles reads the files the configuration names, each named with the
// setting that named it.
func checkFiles(cfg Config) error {
	ac := api.DefaultConfig()
	type file struct{ setting, path string }
	var files []file
	switch {
	case cfg.Token != "":
	case cfg.TokenFile != "":
		files = append(files, file{"consul.token_file", cfg.TokenFile})
	case ac.TokenFile != "":
		files = append(files, file{api.HTTPTokenFileEnvName, ac.TokenFile})
	}
	t := ac.TLSConfig
	files = append(files, file{api.HTTPCAFile, t.CAFile}, file{api.HTTPClientCert, t.CertFile}, file{api.HTTPClientKey, t.KeyFile})
	for _, f := range files {
		if f.path == "" {
			continue
		}
		fh, err := os.Open(f.path)
		if err == nil {
			_, err = fh.Read(make([]byte, 1))
			fh.Close()
		}
		if err != nil {
			return fmt.Errorf("%w: %s names %q, which cannot be read: %w", ErrConfig, f.setting, f.path, unwrapPath(err))
		}
	}
	if t.CAPath != "" {
		if _, err := os.ReadDir(t.CAPath); err != nil {
			return fmt.Errorf("%w: %s names %q, which cannot be read: %w", ErrConfig, api.HTTPCAPath, t.CAPath, unwrapPath(err))
		}
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		return fmt.Errorf("%w: %s and %s go together: set both or neither", ErrConfig, api.HTTPClientCert, api.HTTPClientKey)
	}
	return nil
}

// unwrapPath drops the *PathError's own repetition of the path.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// checkAddress refuses an address consul/api would only fail on later, at
// every request: it must be host:port with a numeric port (or a unix
// socket).
func checkAddress(addr string) error {
	if strings.HasPrefix(addr, "/") {
		return nil // unix:// stripped by consul/api
	}
	host, port, err := net.SplitHostPort(addr)
	if err == nil {
		if n, perr := strconv.ParseUint(port, 10, 16); perr != nil || n == 0 {
			err = fmt.Errorf("port %q is not a number from 1 to 65535", port)
		} else if host == "" {
			err = errors.New("no host")
		}
	}
	if err != nil {
		return fmt.Errorf("%w: consul address %q (db.consul.address, else %s) does not parse as host:port: %v", ErrConfig, addr, api.HTTPAddrEnvName, err)
	}
	return nil
}

// permanentTLS wraps a certificate error as a configuration error, so that
// classify never marks it transient; nil when err is not one.
func permanentTLS(what string, err error) error {
	if !migrate.CertificateError(err) {
		return nil
	}
	return fmt.Errorf("%s: %w: TLS: %w (check CONSUL_CACERT, CONSUL_CLIENT_CERT, CONSUL_CLIENT_KEY, CONSUL_TLS_SERVER_NAME)", what, ErrConfig, err)
}
