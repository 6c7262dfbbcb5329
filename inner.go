package upgrade

import (
	"crypto/tls"
	"net/http"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// template is the transport upgraded ones are cloned from, so they inherit
// the caller's dialer, proxy, timeouts and TLS settings (DESIGN §4).
func (t *Transport) template() *http.Transport {
	if tr, ok := t.base().(*http.Transport); ok {
		return tr
	}
	if tr, ok := http.DefaultTransport.(*http.Transport); ok {
		return tr
	}
	return &http.Transport{Proxy: http.ProxyFromEnvironment}
}

// proxied reports whether a proxy would carry req. A failing Proxy func
// counts as proxied: the safe answer for offers that cannot use one.
func (t *Transport) proxied(req *http.Request) bool {
	proxy := t.template().Proxy
	if proxy == nil {
		return false
	}
	u, err := proxy(req)
	return u != nil || err != nil
}

// innerFor returns the transport for tgt, building it on first use. One
// exists per target, shared by every origin.
func (t *Transport) innerFor(tgt target) (http.RoundTripper, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed.Load() {
		return nil, ErrClosed
	}
	if rt, ok := t.inner[tgt]; ok {
		return rt, nil
	}
	rt := t.newInner(tgt)
	t.innerBuilt.Add(1)
	if t.inner == nil {
		t.inner = make(map[target]http.RoundTripper)
	}
	t.inner[tgt] = rt
	return rt, nil
}

func (t *Transport) newInner(tgt target) http.RoundTripper {
	switch tgt.kind {
	case targetHTTP3:
		return t.newHTTP3()
	case targetInbandTLS:
		return t.newInband(tgt)
	}
	template := t.template()
	tr := template.Clone()
	// Upgraded connections are dialed and shaken hands with here, with the
	// template's dialer and the TLS settings below, so that a failure before
	// any request left is known as such (dial.go). A custom TLS dialer of
	// Base's is therefore not inherited.
	dial := plainDialer(template)
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
	}
	cfg := t.tlsConfig(tr.TLSClientConfig, tgt.minTLS)
	cfg.NextProtos = nextProtos(tr.Protocols)
	tr.TLSClientConfig = cfg // what http.Transport uses itself, through a proxy
	var proxies *proxyAddrs
	if template.Proxy != nil {
		proxies = new(proxyAddrs)
		tr.Proxy = proxies.recording(template.Proxy)
	}
	tr.DialTLSContext = dialTLS(dial, cfg.Clone(), template.TLSHandshakeTimeout, wantALPN, proxies)
	return tr
}

// newHTTP3 builds the HTTP/3 transport. QUIC has its own sockets, so only
// the TLS settings and response limits carry over from the template.
func (t *Transport) newHTTP3() *http3Transport {
	// Clone, not TLSClientConfig.Clone: it first runs net/http's one-time
	// setup, which writes the template's TLS config, so no read races it.
	template := t.template().Clone()
	h := &http3Transport{}
	h.Transport = &http3.Transport{
		TLSClientConfig: t.tlsConfig(template.TLSClientConfig, tls.VersionTLS13), // QUIC runs TLS 1.3 only
		QUICConfig: &quic.Config{
			HandshakeIdleTimeout: t.http3HandshakeTimeout(),
			// As http3's defaults: no server-opened streams, keep-alives.
			MaxIncomingStreams: -1,
			KeepAlivePeriod:    10 * time.Second,
		},
		Dial:                   h.dial,
		DisableCompression:     template.DisableCompression,
		MaxResponseHeaderBytes: int(template.MaxResponseHeaderBytes),
	}
	return h
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

// closeIdle calls CloseIdleConnections on rt when it has one.
func closeIdle(rt http.RoundTripper) {
	if c, ok := rt.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}
