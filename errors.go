package upgrade

import (
	"errors"
	"net/http"
	"strings"
)

// Errors returned by RoundTrip, and reasons reported through [Trace] when a
// 426 is handed back untouched. Compare with errors.Is.
var (
	// ErrClosed is returned by RoundTrip after Close.
	ErrClosed = errors.New("upgrade: transport closed")

	// ErrNoUsableOffer: the 426 offered nothing this transport may switch to.
	ErrNoUsableOffer = errors.New("upgrade: no offered protocol is usable")
	// ErrUnsupportedOffer: the offer is not an upgrade this transport makes
	// (websocket, HTTP/1.1, an unknown name or version).
	ErrUnsupportedOffer = errors.New("upgrade: not an upgrade this transport makes")
	// ErrDowngrade: taking the offer would drop TLS (h2c on an https origin).
	ErrDowngrade = errors.New("upgrade: offer would drop TLS")
	// ErrNoChange: the 426 already came over what the offer asks for, so a
	// replay would meet the same answer.
	ErrNoChange = errors.New("upgrade: offer would change nothing")
	// ErrNeedsTLS: the offer needs TLS (HTTP/3) and the origin is http://;
	// taking it would change the scheme.
	ErrNeedsTLS = errors.New("upgrade: offer needs TLS and the origin is http://")
	// ErrBroken: the offer failed for this origin lately and is not tried
	// until its broken mark expires.
	ErrBroken = errors.New("upgrade: offer failed for this origin lately")
	// ErrProxied: a proxy applies to the request and the offer cannot go
	// through it.
	ErrProxied = errors.New("upgrade: offer cannot go through the request's proxy")
	// ErrOwnDialer: Base dials through a DialContext of its own (a SOCKS
	// or VPN dialer, an SSRF guard) and the offer, HTTP/3, cannot go
	// through it; see Transport.DirectHTTP3.
	ErrOwnDialer = errors.New("upgrade: offer cannot go through Base's own dialer")

	// ErrBodyNotReplayable: the request body was already read and has no
	// GetBody, so it cannot be sent again.
	ErrBodyNotReplayable = errors.New("upgrade: request body cannot be sent again")
	// ErrBaseNotTransport is returned by RoundTrip for a 426 it would
	// follow when Base is not an *http.Transport (middleware such as
	// otelhttp or oauth2 as Base): the upgraded connections must inherit
	// Base's roots, proxy and dialer, which another RoundTripper does not
	// show, and a replay would skip that middleware. Put middleware outside
	// the Transport and make Base the *http.Transport itself.
	ErrBaseNotTransport = errors.New("upgrade: Base is not an *http.Transport, so an upgrade could lose its settings and middleware; " +
		"put middleware outside the upgrade.Transport and make Base the *http.Transport itself")

	// ErrAlreadyReplayed: the request is itself a replay; it is not upgraded twice.
	ErrAlreadyReplayed = errors.New("upgrade: request was already replayed once")

	// ErrInbandDesync: during an in-band TLS upgrade (RFC 2817) bytes
	// arrived where none may: after the 101 and before the TLS handshake,
	// as the 101's body, after the answer to the OPTIONS, or as a 101 that
	// no request asked for. The two ends could disagree on where TLS begins
	// or where a response ends, which is how CVE-2025-49812 injected
	// cleartext into Apache's TLS stream; it may be an attacker on the path,
	// so it is worth an alert. It is found inside an *UpgradeError's
	// attempts, or returned as it is by a connection already upgraded.
	ErrInbandDesync = errors.New("upgrade: in-band TLS: unexpected bytes would desynchronise the connection")
)

// Attempt is one try of an offered protocol that failed.
type Attempt struct {
	Protocol Protocol
	Err      error
}

// UpgradeError is returned by RoundTrip when every usable offered protocol
// failed before a response (dial, handshake, ALPN). Response is the 426, its
// body buffered up to the drain bound, so a caller can still read it.
// When the demand came as a refused TLS handshake instead of a 426
// (refusal.go), Response is nil and Refusal is Base's error; Offered is
// what the alert was read as.
type UpgradeError struct {
	Offered  []Protocol
	Attempts []Attempt
	Response *http.Response
	Refusal  error
}

func (e *UpgradeError) Error() string {
	var b strings.Builder
	b.WriteString("upgrade: every usable offered protocol failed")
	for i, a := range e.Attempts {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		b.WriteString(a.Protocol.String())
		b.WriteString(": ")
		b.WriteString(a.Err.Error())
	}
	return b.String()
}

// Unwrap returns each attempt's error, and the refusal if any, so
// errors.Is and errors.As see them.
func (e *UpgradeError) Unwrap() []error {
	errs := make([]error, 0, len(e.Attempts)+1)
	for _, a := range e.Attempts {
		errs = append(errs, a.Err)
	}
	if e.Refusal != nil {
		errs = append(errs, e.Refusal)
	}
	return errs
}
