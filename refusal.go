package upgrade

import (
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"reflect"
)

// Demands made below HTTP. Most servers that refuse an outdated client say
// so in the TLS handshake, not with a 426: nginx with "ssl_protocols
// TLSv1.3" answers a client capped at TLS 1.2 with the alert
// protocol_version, and Node's http2 server with allowHTTP1: false answers
// a client that offers only http/1.1 with no_application_protocol. Both
// alerts exist only in the handshake (RFC 8446 §6.2, RFC 7301 §3.2), so no
// byte of the request has left: like a 426, they say what the server would
// take and that it did nothing with the request.
const (
	alertProtocolVersion       tls.AlertError = 70
	alertNoApplicationProtocol tls.AlertError = 120
)

// nextTLS names the TLS version after each one a client may be capped at.
var nextTLS = map[uint16]string{
	tls.VersionTLS10: "1.1",
	tls.VersionTLS11: "1.2",
	tls.VersionTLS12: "1.3",
}

// handshakeDemand reads Base's error as a demand, or returns nil. Only the
// alerts above, received by a client that could do better, qualify: a
// protocol_version to one whose TLS maximum is below 1.3 means "TLS/1.3",
// a no_application_protocol to one that offered only http/1.1 means
// "HTTP/2". A bare EOF or a reset says nothing unambiguous and is left
// alone, and so is a Base with its own TLS dialer, whose offer is unknown.
func handshakeDemand(err error, base *http.Transport) []Protocol {
	alert, ok := receivedAlert(err)
	if base == nil || baseTLSDialer(base) != nil || !ok {
		return nil
	}
	switch alert {
	case alertProtocolVersion:
		// The version just above the cap: a client capped at TLS 1.1 may
		// meet a server that takes 1.2; the floor keeps it at 1.2 or later.
		if cfg := base.TLSClientConfig; cfg != nil && cfg.MaxVersion != 0 && cfg.MaxVersion < tls.VersionTLS13 {
			return []Protocol{{Name: "TLS", Version: nextTLS[cfg.MaxVersion]}}
		}
	case alertNoApplicationProtocol:
		if p := protocolsOf(base); p.HTTP1() && !p.HTTP2() {
			return []Protocol{{Name: "HTTP", Version: "2"}}
		}
	}
	return nil
}

// receivedAlert returns the TLS alert the peer sent, recognised by its type,
// not by its text. crypto/tls (Go 1.26) returns an alert received over TCP
// as a *net.OpError "remote error" around a value of its unexported type
// alert, a uint8; tls.AlertError, the exported one, is what it uses over
// QUIC. Both are read here.
func receivedAlert(err error) (tls.AlertError, bool) {
	var alert tls.AlertError
	if errors.As(err, &alert) {
		return alert, true
	}
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "remote error" || op.Err == nil {
		return 0, false
	}
	v := reflect.ValueOf(op.Err)
	if v.Kind() != reflect.Uint8 || v.Type().PkgPath() != "crypto/tls" {
		return 0, false
	}
	return tls.AlertError(v.Uint()), true
}

// answeredInside reports whether a Transport inside Base already answered
// the refusal (its *UpgradeError): one replay per request.
func answeredInside(err error) bool {
	var inner *UpgradeError
	return errors.As(err, &inner)
}
