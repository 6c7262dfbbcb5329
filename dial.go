package upgrade

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// connectError marks a failure while a connection was being set up: dial,
// TLS or QUIC handshake, ALPN. Nothing went out on that connection, so the
// next offer may be tried. Upgraded transports dial and
// shake hands themselves so that every such failure carries this mark;
// anything else may have reached the server. One caveat is net/http's own:
// it retries an idempotent request whose reused connection died, and if
// that second dial fails the request may have left on the first; sending it
// once more stays within the idempotent rule net/http itself follows.
type connectError struct{ err error }

func (e *connectError) Error() string { return e.err.Error() }
func (e *connectError) Unwrap() error { return e.err }

// beforeConnection reports whether err happened before any connection.
func beforeConnection(err error) bool {
	var ce *connectError
	return errors.As(err, &ce)
}

type dialFunc = func(ctx context.Context, network, addr string) (net.Conn, error)

// plainDialer returns the template's TCP dialer, as http.Transport would use it.
func plainDialer(tr *http.Transport) dialFunc {
	if tr.DialContext != nil {
		return tr.DialContext
	}
	//lint:ignore SA1019 inherited as http.Transport itself would use it
	if dial := tr.Dial; dial != nil {
		return func(_ context.Context, network, addr string) (net.Conn, error) { return dial(network, addr) }
	}
	return new(net.Dialer).DialContext
}

// markConnectErrors wraps dial so that its failures carry the mark.
func markConnectErrors(dial dialFunc) dialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := dial(ctx, network, addr)
		if err != nil {
			return nil, &connectError{err}
		}
		return conn, nil
	}
}

// dialTLS dials and runs the TLS handshake itself, rather than leaving it to
// http.Transport, so that a handshake failure is known to come first. A
// server that does not agree to wantALPN (when set) fails the same way.
// net/http also calls it for an https:// proxy: to one of proxies, it
// speaks TLS as Base would, with Base's settings and no ALPN; the origin's
// demand is not the proxy's.
func dialTLS(dial dialFunc, cfg *tls.Config, handshakeTimeout time.Duration, wantALPN string, proxies *proxyAddrs) dialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := dial(ctx, network, addr)
		if err != nil {
			return nil, &connectError{err}
		}
		conf, want := cfg, wantALPN
		host, _, _ := net.SplitHostPort(addr)
		switch {
		case proxies.has(addr):
			conf, want = proxies.tlsConfig(host), ""
		case conf.ServerName == "":
			conf = cfg.Clone()
			conf.ServerName = host
		}
		if handshakeTimeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, handshakeTimeout)
			defer cancel()
		}
		tc := tls.Client(conn, conf)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, &connectError{err}
		}
		if got := tc.ConnectionState().NegotiatedProtocol; want != "" && got != want {
			conn.Close()
			return nil, &connectError{fmt.Errorf("upgrade: server chose ALPN %q, not %q", got, want)}
		}
		return tc, nil
	}
}

// proxyAddrs remembers the https:// proxies a transport's Proxy func named,
// so dialTLS can tell a proxy from an origin, and how Base speaks TLS to
// them.
type proxyAddrs struct {
	addrs sync.Map
	tls   *tls.Config // Base's own, cloned; nil means crypto/tls defaults
}

// tlsConfig is the TLS config for the proxy at host, as net/http makes it.
func (p *proxyAddrs) tlsConfig(host string) *tls.Config {
	cfg := &tls.Config{}
	if p.tls != nil {
		cfg = p.tls.Clone()
	}
	if cfg.ServerName == "" {
		cfg.ServerName = host
	}
	cfg.NextProtos = nil
	return cfg
}

// recording wraps proxy so that every https:// proxy it returns is noted.
func (p *proxyAddrs) recording(proxy func(*http.Request) (*url.URL, error)) func(*http.Request) (*url.URL, error) {
	return func(req *http.Request) (*url.URL, error) {
		u, err := proxy(req)
		if err == nil && u != nil && u.Scheme == "https" {
			port := u.Port()
			if port == "" {
				port = "443"
			}
			p.addrs.Store(strings.ToLower(net.JoinHostPort(u.Hostname(), port)), true)
		}
		return u, err
	}
}

func (p *proxyAddrs) has(addr string) bool {
	if p == nil {
		return false
	}
	_, ok := p.addrs.Load(strings.ToLower(addr))
	return ok
}

// nextProtos is the ALPN list for protocols over TLS.
func nextProtos(p *http.Protocols) []string {
	var protos []string
	if p.HTTP2() {
		protos = append(protos, "h2")
	}
	if p.HTTP1() {
		protos = append(protos, "http/1.1")
	}
	return protos
}

// protocolsOf returns what tr speaks over TLS, by net/http's own rule for a
// nil Protocols field (Transport.protocols in Go 1.24 and later).
func protocolsOf(tr *http.Transport) *http.Protocols {
	p := new(http.Protocols)
	if tr.Protocols != nil {
		*p = *tr.Protocols
		return p
	}
	p.SetHTTP1(true)
	switch {
	case tr.TLSNextProto != nil:
		// An empty map is net/http's documented way to turn HTTP/2 off.
		_, h2 := tr.TLSNextProto["h2"]
		p.SetHTTP2(h2)
	case tr.ForceAttemptHTTP2:
		p.SetHTTP2(true)
	default:
		//lint:ignore SA1019 net/http's rule reads the deprecated dialers too
		custom := tr.TLSClientConfig != nil || tr.Dial != nil || tr.DialContext != nil || tr.DialTLS != nil || tr.DialTLSContext != nil
		p.SetHTTP2(!custom)
	}
	return p
}

// throughProxy sends requests that a proxy carries. net/http shakes hands
// with the origin inside the CONNECT tunnel itself, past the dialers that
// mark failures, so a failure there is told by the connection never having
// been handed to the request (httptrace's GotConn): nothing was sent.
type throughProxy struct{ rt http.RoundTripper }

func (p throughProxy) RoundTrip(req *http.Request) (*http.Response, error) {
	var gotConn atomic.Bool
	trace := &httptrace.ClientTrace{GotConn: func(httptrace.GotConnInfo) { gotConn.Store(true) }}
	resp, err := p.rt.RoundTrip(req.WithContext(httptrace.WithClientTrace(req.Context(), trace)))
	if err != nil {
		if !gotConn.Load() && !beforeConnection(err) {
			err = &connectError{err}
		}
		return nil, err
	}
	resp.Request = req
	return resp, nil
}

// openConns counts the connections an inner transport has open, through
// the dialer it hands out, so that Close can tell when all are gone. Once
// closed, it dials no more: a request that got past the Transport's closed
// check as Close ran would otherwise leave a connection that nobody closes.
type openConns struct {
	n      atomic.Int32
	closed atomic.Bool
}

// close refuses every later dial. A dial under way was counted first, so
// Close, which looks at the count after this, waits for it.
func (c *openConns) close() { c.closed.Store(true) }

// counting wraps dial so that each connection it makes is counted until it
// is closed. The raw connection is wrapped, beneath any TLS, so net/http
// still sees a *tls.Conn where it looks for one.
func (c *openConns) counting(dial dialFunc) dialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c.n.Add(1) // from the start of the dial, so that Close waits for it
		if c.closed.Load() {
			c.n.Add(-1)
			return nil, ErrClosed
		}
		conn, err := dial(ctx, network, addr)
		if err != nil {
			c.n.Add(-1)
			return nil, err
		}
		return &trackedConn{Conn: conn, open: c}, nil
	}
}

type trackedConn struct {
	net.Conn
	open   *openConns
	closed atomic.Bool
}

func (c *trackedConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.open.n.Add(-1)
	}
	return c.Conn.Close()
}

// baseTLSDialer returns Base's own TLS dialer, if it has one.
func baseTLSDialer(tr *http.Transport) dialFunc {
	if tr.DialTLSContext != nil {
		return tr.DialTLSContext
	}
	//lint:ignore SA1019 inherited as http.Transport itself would use it
	if dial := tr.DialTLS; dial != nil {
		return func(_ context.Context, network, addr string) (net.Conn, error) { return dial(network, addr) }
	}
	return nil
}

// checkedTLS dials with Base's own TLS dialer and fails, before any request
// left, a connection that does not meet the demand: a TLS version below
// minTLS, an ALPN other than wantALPN (when set), or a connection whose TLS
// state cannot be seen.
func checkedTLS(dial dialFunc, minTLS uint16, wantALPN string) dialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := dial(ctx, network, addr)
		if err != nil {
			return nil, &connectError{err}
		}
		tc, ok := conn.(interface{ ConnectionState() tls.ConnectionState })
		if !ok {
			conn.Close()
			return nil, &connectError{fmt.Errorf("upgrade: Base's DialTLSContext made a %T, whose TLS cannot be checked", conn)}
		}
		state := tc.ConnectionState()
		if !state.HandshakeComplete {
			if hs, ok := conn.(interface{ HandshakeContext(context.Context) error }); ok {
				if err := hs.HandshakeContext(ctx); err != nil {
					conn.Close()
					return nil, &connectError{err}
				}
				state = tc.ConnectionState()
			}
		}
		switch {
		case state.Version < minTLS:
			conn.Close()
			return nil, &connectError{fmt.Errorf("upgrade: Base's DialTLSContext made %s, the demand is %s or later", tls.VersionName(state.Version), tls.VersionName(minTLS))}
		case wantALPN != "" && state.NegotiatedProtocol != wantALPN:
			conn.Close()
			return nil, &connectError{fmt.Errorf("upgrade: Base's DialTLSContext negotiated ALPN %q, not %q", state.NegotiatedProtocol, wantALPN)}
		}
		return conn, nil
	}
}
