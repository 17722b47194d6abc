package migrate

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"reflect"
)

// CertificateError reports whether err is a TLS failure that no retry
// fixes: a certificate this side does not trust (unknown authority, wrong
// host name, expired), one the server refused (a TLS alert about
// certificates), or a server that does not speak TLS at all. Stores never
// mark such an error Transient.
func CertificateError(err error) bool {
	var (
		unknownCA   x509.UnknownAuthorityError
		hostname    x509.HostnameError
		invalid     x509.CertificateInvalidError
		verify      *tls.CertificateVerificationError
		recordHdr   tls.RecordHeaderError
		alert       tls.AlertError
		systemRoots x509.SystemRootsError
	)
	switch {
	case errors.As(err, &unknownCA), errors.As(err, &hostname), errors.As(err, &invalid),
		errors.As(err, &verify), errors.As(err, &recordHdr), errors.As(err, &systemRoots):
		return true
	case errors.As(err, &alert):
		return certificateAlert(uint8(alert))
	}
	// An alert the server sent over TCP is a *net.OpError with Op "remote
	// error" around crypto/tls's unexported alert type, a uint8.
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "remote error" && op.Err != nil {
		if v := reflect.ValueOf(op.Err); v.Kind() == reflect.Uint8 {
			return certificateAlert(uint8(v.Uint()))
		}
	}
	return false
}

// certificateAlert: bad_certificate .. certificate_unknown, unknown_ca,
// access_denied, certificate_required (RFC 8446 6.2).
func certificateAlert(code uint8) bool {
	switch code {
	case 42, 43, 44, 45, 46, 48, 49, 116:
		return true
	}
	return false
}
