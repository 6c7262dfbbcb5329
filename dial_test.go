package upgrade

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/h426/upgrade/internal/testserver"
)

// A server that ignores ALPN cannot be spoken HTTP/2 to: the attempt fails
// before any request left, so it counts as a connection failure.
func TestALPNRefusedIsAConnectionFailure(t *testing.T) {
	ca, err := testserver.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.ServerCert()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var requests atomic.Int32
	srv := &http.Server{
		ErrorLog: log.New(io.Discard, "", 0),
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			requests.Add(1)
			w.Header().Set("Upgrade", "HTTP/2")
			w.WriteHeader(http.StatusUpgradeRequired)
		}),
	}
	// No NextProtos: the server ignores the client's ALPN and picks none.
	go srv.Serve(tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}}))
	t.Cleanup(func() { srv.Close() })

	tr := newTransport(t, legacyBase(t, ca.CertPool()))
	_, err = tr.RoundTrip(newRequest(t, testContext(t), "GET", "https://"+ln.Addr().String(), nil))
	var ue *UpgradeError
	if !errors.As(err, &ue) || len(ue.Attempts) != 1 || !beforeConnection(ue.Attempts[0].Err) {
		t.Fatalf("got %v; want an *UpgradeError whose HTTP/2 attempt failed before a connection", err)
	}
	if n := requests.Load(); n != 1 {
		t.Errorf("server saw %d requests, want only the first", n)
	}
}

// protocolsOf follows net/http's rule for what a transport speaks.
func TestProtocolsOf(t *testing.T) {
	h1h2 := new(http.Protocols)
	h1h2.SetHTTP1(true)
	h1h2.SetHTTP2(true)
	tests := []struct {
		name      string
		tr        *http.Transport
		wantHTTP2 bool
	}{
		{"zero value", &http.Transport{}, true},
		{"explicit Protocols", &http.Transport{Protocols: h1h2, TLSClientConfig: &tls.Config{}}, true},
		{"own TLS config", &http.Transport{TLSClientConfig: &tls.Config{}}, false},
		{"own TLS config, forced", &http.Transport{TLSClientConfig: &tls.Config{}, ForceAttemptHTTP2: true}, true},
		{"own dialer", &http.Transport{DialContext: new(net.Dialer).DialContext}, false},
		{"empty TLSNextProto", &http.Transport{TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}, false},
		{"DefaultTransport", http.DefaultTransport.(*http.Transport), true},
	}
	for _, tt := range tests {
		p := protocolsOf(tt.tr)
		if !p.HTTP1() || p.HTTP2() != tt.wantHTTP2 {
			t.Errorf("%s: HTTP/1 %v HTTP/2 %v, want true and %v", tt.name, p.HTTP1(), p.HTTP2(), tt.wantHTTP2)
		}
	}
}

// Through an https:// proxy, the upgraded transport speaks plain TLS to the
// proxy and HTTP/2 to the origin inside the tunnel.
func TestHTTP2ThroughAnHTTPSProxy(t *testing.T) {
	s := startServer(t, testserver.Config{TLS: true, Require: testserver.RequireHTTP2, Upgrade: []string{"HTTP/2"}})
	cert, err := s.CA().ServerCert()
	if err != nil {
		t.Fatal(err)
	}
	proxy := startConnectProxy(t, &tls.Config{Certificates: []tls.Certificate{cert}})
	base := legacyBase(t, s.CertPool())
	base.Proxy = http.ProxyURL(proxy.url)
	tr := newTransport(t, base)
	resp, err := tr.RoundTrip(newRequest(t, testContext(t), "GET", s.URL, nil))
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	if resp.StatusCode != 200 || resp.Proto != "HTTP/2.0" || proxy.tunnels.Load() != 2 {
		t.Errorf("got %d over %s through %d tunnels, want 200 over HTTP/2.0 through 2", resp.StatusCode, resp.Proto, proxy.tunnels.Load())
	}
}

// Behind a proxy, net/http shakes hands with the origin inside the CONNECT
// tunnel: a handshake that fails there is still known to come before the
// request left. The replay gives an *UpgradeError and marks the offer
// broken; a remembered route is forgotten and the request goes through
// Base again, as it does without a proxy.
func TestProxiedHandshakeFailureIsBeforeTheRequest(t *testing.T) {
	newProxied := func(t *testing.T) (*testserver.Server, *connectProxy, *Transport) {
		// Demands TLS 1.3, speaks TLS 1.2 at most: every upgraded handshake fails.
		s := startServer(t, testserver.Config{TLS: true, MaxTLSVersion: tls.VersionTLS12, Require: testserver.RequireTLS13, Upgrade: []string{"TLS/1.3"}})
		proxy := startConnectProxy(t, nil)
		base := legacyBase(t, s.CertPool())
		base.Proxy = http.ProxyURL(proxy.url)
		return s, proxy, newTransport(t, base)
	}
	t.Run("replay", func(t *testing.T) {
		s, proxy, tr := newProxied(t)
		_, err := tr.RoundTrip(newRequest(t, testContext(t), "GET", s.URL, nil))
		var ue *UpgradeError
		if !errors.As(err, &ue) || ue.Response.StatusCode != 426 {
			t.Fatalf("got %v, want *UpgradeError with the 426", err)
		}
		if !tr.broken.isBroken(brokenKeyOf(originOf(newRequest(t, testContext(t), "GET", s.URL, nil)), target{kind: targetTLS, minTLS: tls.VersionTLS13}), tr.clock()) {
			t.Error("TLS/1.3 not marked broken for the origin")
		}
		if n := proxy.tunnels.Load(); n != 2 {
			t.Errorf("%d tunnels, want 2: the request went through the proxy both times", n)
		}
	})
	t.Run("remembered", func(t *testing.T) {
		s, _, tr := newProxied(t)
		remember(t, tr, s.URL, "TLS/1.3")
		var forgot []error
		trace := &Trace{Forgot: func(info MemoryInfo) { forgot = append(forgot, info.Err) }}
		resp, err := tr.RoundTrip(newRequest(t, WithTrace(testContext(t), trace), "GET", s.URL, nil))
		if err != nil {
			t.Fatalf("got %v, want Base's answer: the 426, with TLS/1.3 marked broken", err)
		}
		readAll(t, resp)
		if resp.StatusCode != 426 || len(forgot) != 1 || forgot[0] == nil {
			t.Errorf("status %d, forgot %v; want 426 after forgetting the failed route", resp.StatusCode, forgot)
		}
		if n := s.Count(); n != 1 {
			t.Errorf("server saw %d requests, want 1 (through Base)", n)
		}
	})
}

// Behind an https:// proxy, the handshake with the proxy is Base's own:
// its settings and roots, not the origin's raised TLS minimum.
func TestHTTPSProxyHandshakeIsBases(t *testing.T) {
	s := startServer(t, testserver.Config{TLS: true, Require: testserver.RequireTLS13, Upgrade: []string{"TLS/1.3"}})
	cert, err := s.CA().ServerCert()
	if err != nil {
		t.Fatal(err)
	}
	proxy := startConnectProxy(t, &tls.Config{Certificates: []tls.Certificate{cert}, MaxVersion: tls.VersionTLS12})
	base := legacyBase(t, s.CertPool())
	base.Proxy = http.ProxyURL(proxy.url)
	tr := newTransport(t, base)
	resp, err := tr.RoundTrip(newRequest(t, testContext(t), "GET", s.URL, nil))
	if err != nil {
		t.Fatalf("replay through the TLS 1.2 proxy Base itself uses: %v", err)
	}
	readAll(t, resp)
	if resp.StatusCode != 200 || resp.TLS == nil || resp.TLS.Version != tls.VersionTLS13 {
		t.Errorf("got %d, want 200 over TLS 1.3 to the origin", resp.StatusCode)
	}
}

// Base's DialTLSContext is how a caller routes TLS (a pinned address, a
// tunnel, pinned certificates): the upgraded HTTP/2 and TLS transports dial
// through it, and HTTP/3 is not chosen around it without DirectHTTP3.
func TestBaseTLSDialerIsTheRoute(t *testing.T) {
	newBase := func(t *testing.T, s *testserver.Server, calls *atomic.Int32) *http.Transport {
		base := legacyBase(t, s.CertPool())
		cfg := base.TLSClientConfig.Clone()
		cfg.NextProtos = []string{"http/1.1"}
		base.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			calls.Add(1)
			conn, err := new(net.Dialer).DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			c := cfg.Clone()
			c.ServerName, _, _ = net.SplitHostPort(addr)
			tc := tls.Client(conn, c)
			if err := tc.HandshakeContext(ctx); err != nil {
				conn.Close()
				return nil, err
			}
			return tc, nil
		}
		return base
	}
	t.Run("h2", func(t *testing.T) {
		s := startServer(t, testserver.Config{TLS: true, Require: testserver.RequireHTTP2, Upgrade: []string{"HTTP/2"}})
		var calls atomic.Int32
		tr := newTransport(t, newBase(t, s, &calls))
		resp, err := tr.RoundTrip(newRequest(t, testContext(t), "GET", s.URL, nil))
		if err == nil {
			readAll(t, resp)
		}
		if err == nil && resp.StatusCode == 200 && calls.Load() < 2 {
			t.Errorf("replay answered %d over %s, but Base's DialTLSContext dialed %d of 2 TLS connections: the upgrade went around it",
				resp.StatusCode, resp.Proto, calls.Load())
		}
	})
	t.Run("h3", func(t *testing.T) {
		s := startServer(t, testserver.Config{TLS: true, HTTP3: true, Require: testserver.RequireHTTP3, Upgrade: []string{"HTTP/3"}})
		var calls atomic.Int32
		tr := newTransport(t, newBase(t, s, &calls))
		resp, err := tr.RoundTrip(newRequest(t, testContext(t), "GET", s.URL, nil))
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
		if resp.Proto == "HTTP/3.0" {
			t.Errorf("HTTP/3 chosen around Base's DialTLSContext without DirectHTTP3; want ErrOwnDialer and the 426")
		}
	})
}
