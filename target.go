package upgrade

import (
	"crypto/tls"
	"net/http"
)

// targetKind is the mechanism a replay goes through. Adding one is a row
// in kinds and an arm in targetFor (policy.go).
type targetKind uint8

const (
	targetHTTP2     targetKind = iota + 1 // HTTP/2 over TLS, ALPN h2
	targetH2C                             // HTTP/2 in clear, prior knowledge
	targetTLS                             // the caller's protocols over a stricter TLS
	targetHTTP3                           // HTTP/3 over QUIC, same host and port, UDP
	targetInbandTLS                       // HTTP/1.1 in TLS begun in-band on an http:// connection (RFC 2817)
)

// kindTraits is what a kind of target is and how its transport is built.
type kindTraits struct {
	// encrypted: it runs over TLS. After a failure that may be an
	// attacker's, only encrypted targets are tried (never TLS to clear).
	encrypted bool
	// multiplexed: it speaks HTTP/2 or HTTP/3, which forbid the headers of
	// one HTTP/1.1 connection and cannot carry a request that needs
	// HTTP/1.1 for an upgrade of its own.
	multiplexed bool
	// directRoute: it cannot go through an HTTP proxy. The proxy, not the
	// origin, would get the h2c preface or the in-band switch, and QUIC
	// does not go through one at all.
	directRoute bool
	// ownSocket: it does not dial through Base's DialContext. QUIC opens
	// its own UDP socket and resolves the host itself.
	ownSocket bool
	// build makes the inner transport for a target of this kind.
	build func(t *Transport, tgt target) http.RoundTripper
}

var kinds = [...]kindTraits{
	targetHTTP2:     {encrypted: true, multiplexed: true, build: buildTCP},
	targetH2C:       {multiplexed: true, directRoute: true, build: buildTCP},
	targetTLS:       {encrypted: true, build: buildTCP},
	targetHTTP3:     {encrypted: true, multiplexed: true, directRoute: true, ownSocket: true, build: buildHTTP3},
	targetInbandTLS: {encrypted: true, directRoute: true, build: buildInband},
}

// target identifies one inner transport, and so one pool of connections:
// what the connections are, never how an offer was spelled.
type target struct {
	kind   targetKind
	minTLS uint16 // the least TLS version its connections accept; 0: the floor
	// http1Only is, for targetTLS, set for a request that needs HTTP/1.1
	// for an upgrade of its own: its connections offer only http/1.1 in
	// ALPN, as net/http's own do for such a request.
	http1Only bool
}

func (tgt target) encrypted() bool   { return kinds[tgt.kind].encrypted }
func (tgt target) multiplexed() bool { return kinds[tgt.kind].multiplexed }
func (tgt target) directRoute() bool { return kinds[tgt.kind].directRoute }
func (tgt target) ownSocket() bool   { return kinds[tgt.kind].ownSocket }

// candidate is an offer the transport will try and where it goes.
//
// What sending reads comes first, so that a remembered request reads one
// cache line of it; the offers only name it.
type candidate struct {
	target target
	// quicOnly is set for HTTP/3 learned from a 426 that offered no TCP
	// protocol: remembered, its handshake still gets the whole setup bound.
	quicOnly bool
	// upgrade is, for targetInbandTLS, the Upgrade value the in-band switch
	// asks for: the TLS tokens the server offered (inbandTokens).
	upgrade string
	// alt is, for HTTP/3 learned from Alt-Svc, the host:port it is reached
	// at when not the origin's own (alternativeFor).
	alt string

	offer Protocol
	// also is an earlier demand of the origin that target meets too
	// (combine), such as TLS/1.3 for HTTP/2 over TLS 1.3; zero if none.
	also Protocol
}

// demands returns what c meets, as an Upgrade list: "HTTP/2", or
// "HTTP/2, TLS/1.3" when it meets an earlier demand too.
func (c candidate) demands() string {
	if c.also == (Protocol{}) {
		return c.offer.String()
	}
	return c.offer.String() + ", " + c.also.String()
}

// buildTCP builds the transport of the kinds net/http speaks itself, cloned
// from the template so it inherits the caller's dialer, proxy, timeouts and
// TLS settings.
func buildTCP(t *Transport, tgt target) http.RoundTripper {
	template := t.template()
	tr := template.Clone()
	// Upgraded connections are dialed and shaken hands with here, with the
	// template's dialer and the TLS settings below, so that a failure before
	// any request left is known as such (dial.go).
	open := new(openConns)
	dial := open.counting(plainDialer(template))
	tr.DialContext = markConnectErrors(dial)
	tr.Dial = nil    //lint:ignore SA1019 clearing the deprecated field is the point
	tr.DialTLS = nil //lint:ignore SA1019 clearing the deprecated field is the point
	tr.TLSNextProto = nil
	tr.Protocols = new(http.Protocols)
	wantALPN := ""
	switch tgt.kind {
	case targetHTTP2:
		tr.Protocols.SetHTTP2(true)
		wantALPN = "h2"
	case targetH2C:
		tr.Protocols.SetUnencryptedHTTP2(true)
	case targetTLS:
		// The caller's application protocols: the server asked for a newer
		// TLS, not for another HTTP.
		tr.Protocols = protocolsOf(template)
		if tgt.http1Only {
			tr.Protocols = new(http.Protocols)
			tr.Protocols.SetHTTP1(true)
		}
	}
	cfg := t.tlsConfig(tr.TLSClientConfig, tgt.minTLS)
	cfg.NextProtos = nextProtos(tr.Protocols)
	tr.TLSClientConfig = cfg // what http.Transport uses itself, through a proxy
	var proxies *proxyAddrs
	if template.Proxy != nil {
		proxies = &proxyAddrs{tls: template.Clone().TLSClientConfig} // Clone: net/http's setup writes it first
		tr.Proxy = proxies.recording(template.Proxy)
	}
	tcp := &tcpTransport{RoundTripper: tr, open: open}
	if baseTLS := baseTLSDialer(template); baseTLS != nil {
		// Base's own TLS dialer is its route (a tunnel, a pinned address,
		// pinned certificates): take it, and check that what it made
		// meets the demand.
		tcp.dialTLS = checkedTLS(baseTLS, cfg.MinVersion, wantALPN)
	} else {
		tcp.dialTLS = dialTLS(dial, cfg.Clone(), template.TLSHandshakeTimeout, wantALPN, proxies)
	}
	// A connection that won a race against QUIC is taken first (race.go).
	tr.DialTLSContext = tcp.ahead.taking(tcp.dialTLS)
	return tcp
}

func buildHTTP3(t *Transport, _ target) http.RoundTripper { return t.newHTTP3() }

func buildInband(t *Transport, tgt target) http.RoundTripper {
	open := new(openConns)
	return &tcpTransport{RoundTripper: t.newInband(tgt, open), open: open}
}

// tlsConfig returns the TLS settings for an upgraded transport: the
// caller's (Transport.TLSClientConfig, else the one inherited from Base)
// with the minimum version raised to least and the floor, never lowered. A
// MaxVersion below that minimum is lifted, so a client pinned to TLS 1.2 can
// still answer a demand for TLS 1.3.
func (t *Transport) tlsConfig(inherited *tls.Config, least uint16) *tls.Config {
	var cfg *tls.Config
	switch {
	case t.TLSClientConfig != nil:
		cfg = t.TLSClientConfig.Clone()
	case inherited != nil:
		cfg = inherited // already a clone
	default:
		cfg = &tls.Config{}
	}
	cfg.MinVersion = max(cfg.MinVersion, t.floor(), least)
	if cfg.MaxVersion != 0 && cfg.MaxVersion < cfg.MinVersion {
		cfg.MaxVersion = 0
	}
	return cfg
}
