package migrate_test

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/apcera/deployhook/migrate"
)

// CertificateError on the errors real handshakes produce, against TLS
// servers in this process on loopback.
func TestCertificateError(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	mtls := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	mtls.TLS = &tls.Config{ClientAuth: tls.RequireAnyClientCert}
	mtls.StartTLS()
	defer mtls.Close()
	plain := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer plain.Close()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close()

	handshake := func(addr string, conf *tls.Config) error {
		conn, err := tls.Dial("tcp", addr, conf)
		if err != nil {
			return err
		}
		defer conn.Close()
		// TLS 1.3: the server judges the client's certificate after the
		// client's side of the handshake; its alert comes with the first read.
		conn.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
		_, err = io.ReadAll(conn)
		return err
	}
	trusting := &tls.Config{RootCAs: srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"unknown authority", handshake(srv.Listener.Addr().String(), &tls.Config{}), true},
		{"wrong host name", handshake(srv.Listener.Addr().String(), &tls.Config{RootCAs: trusting.RootCAs, ServerName: "wrong.example"}), true},
		{"client certificate required", handshake(mtls.Listener.Addr().String(), &tls.Config{InsecureSkipVerify: true}), true},
		{"not a TLS server", handshake(plain.Listener.Addr().String(), &tls.Config{}), true},
		{"trusted", handshake(srv.Listener.Addr().String(), trusting), false},
		{"nothing listening", handshake(closedAddr, &tls.Config{}), false},
		{"wrapped", fmt.Errorf("get %q: %w", "k", handshake(srv.Listener.Addr().String(), &tls.Config{})), true},
		{"plain error", errors.New("x509: certificate signed by unknown authority"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := migrate.CertificateError(tc.err); got != tc.want {
				t.Errorf("CertificateError(%v) = %t, want %t", tc.err, got, tc.want)
			}
		})
	}
}
