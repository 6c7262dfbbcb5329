package upgrade

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/h426/upgrade/internal/testserver"
)

// A refused TLS handshake that states a demand is followed like a 426: a
// TLS-1.3-only server met by a client capped at TLS 1.2, and an h2-only
// server met by an HTTP/1.1-only client, answer 200 over what they demand,
// the body intact, after one replay; nothing reached them before it.
func TestHandshakeRefusalIsADemand(t *testing.T) {
	tests := []struct {
		name      string
		server    testserver.Config
		wantProto string
		wantTLS   uint16
		wantRead  string
	}{
		{"protocol_version", testserver.Config{TLS: true, MinTLSVersion: tls.VersionTLS13}, "HTTP/1.1", tls.VersionTLS13, "TLS/1.3"},
		{"no_application_protocol", testserver.Config{TLS: true, HTTP2Only: true}, "HTTP/2.0", tls.VersionTLS12, "HTTP/2"},
	}
	payload := bytes.Repeat([]byte("refused "), 8<<10)
	for _, tt := range tests {
		for _, replayable := range []bool{true, false} {
			name := tt.name + "/one-shot body"
			if replayable {
				name = tt.name + "/GetBody"
			}
			t.Run(name, func(t *testing.T) {
				s := startServer(t, tt.server)
				tr := newTransport(t, http1ALPN(legacyBase(t, s.CertPool())))
				var read []Protocol
				trace := &Trace{HandshakeRefused: func(info HandshakeRefusedInfo) { read = info.Demand }}
				var body io.Reader = bytes.NewReader(payload)
				if !replayable {
					body = &countingBody{r: bytes.NewReader(payload)}
				}
				resp, err := tr.RoundTrip(newRequest(t, WithTrace(testContext(t), trace), "POST", s.URL, body))
				if err != nil {
					t.Fatal(err)
				}
				readAll(t, resp)
				if resp.StatusCode != 200 || resp.Proto != tt.wantProto || tlsVersion(resp) < tt.wantTLS {
					t.Errorf("%d over %s TLS %x, want 200 over %s", resp.StatusCode, resp.Proto, tlsVersion(resp), tt.wantProto)
				}
				if len(read) != 1 || read[0].String() != tt.wantRead {
					t.Errorf("refusal read as %v, want %s", read, tt.wantRead)
				}
				seen := s.Requests()
				if len(seen) != 1 || seen[0].BodyLen != int64(len(payload)) || seen[0].BodySHA256 != sha256.Sum256(payload) {
					t.Errorf("server saw %d requests (want 1, with the whole body)", len(seen))
				}
			})
		}
	}
}

// alertServer answers every ClientHello with a fatal TLS alert, whatever
// the client offers: a server that refuses every version.
func alertServer(t *testing.T, alert byte) (addr string, conns *atomic.Int32) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conns = new(atomic.Int32)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			buf := make([]byte, 1024)
			c.Read(buf) // the ClientHello, or its start
			c.Write([]byte{21, 3, 3, 0, 2, 2, alert})
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().String(), conns
}

// A server that refuses every version gets one replay and a typed error
// that still says what the server answered; a client that could not do
// better (no TLS cap) gets Base's error, not a replay.
func TestHandshakeRefusalNoLoop(t *testing.T) {
	addr, conns := alertServer(t, byte(alertProtocolVersion))
	tr := newTransport(t, legacyBase(t, nil))
	_, err := tr.RoundTrip(newRequest(t, testContext(t), "GET", "https://"+addr+"/", nil))
	var ue *UpgradeError
	if alert, ok := receivedAlert(err); !errors.As(err, &ue) || ue.Refusal == nil || ue.Response != nil || !ok || alert != alertProtocolVersion {
		t.Fatalf("got %v, want *UpgradeError with the refusal", err)
	}
	if n := conns.Load(); n != 2 {
		t.Errorf("%d handshakes, want 2: Base's and one replay", n)
	}

	uncapped := &http.Transport{TLSClientConfig: &tls.Config{}}
	t.Cleanup(uncapped.CloseIdleConnections)
	tr = newTransport(t, uncapped)
	_, err = tr.RoundTrip(newRequest(t, testContext(t), "GET", "https://"+addr+"/", nil))
	if _, ok := receivedAlert(err); errors.As(err, &ue) || !ok {
		t.Errorf("got %v, want Base's own error", err)
	}
	if n := conns.Load(); n != 3 {
		t.Errorf("%d handshakes, want 3: no replay for a client already at TLS 1.3", n)
	}
}

// The replay after a refusal keeps Base's routes and the policy: through
// Base's proxy, over Base's dialer, and never HTTP/2 for a request that
// needs HTTP/1.1, which gets Base's error back.
func TestHandshakeRefusalKeepsTheRules(t *testing.T) {
	t.Run("proxy", func(t *testing.T) {
		s := startServer(t, testserver.Config{TLS: true, HTTP2Only: true})
		proxy := startConnectProxy(t, nil)
		base := http1ALPN(legacyBase(t, s.CertPool()))
		base.Proxy = http.ProxyURL(proxy.url)
		tr := newTransport(t, base)
		resp, err := tr.RoundTrip(newRequest(t, testContext(t), "GET", s.URL, nil))
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
		if resp.Proto != "HTTP/2.0" || proxy.tunnels.Load() != 2 {
			t.Errorf("%s through %d tunnels, want HTTP/2.0 through 2", resp.Proto, proxy.tunnels.Load())
		}
	})
	t.Run("dialer", func(t *testing.T) {
		s := startServer(t, testserver.Config{TLS: true, MinTLSVersion: tls.VersionTLS13})
		var conns connCounter
		base := legacyBase(t, s.CertPool())
		base.DialContext = conns.DialContext
		tr := newTransport(t, base)
		resp, err := tr.RoundTrip(newRequest(t, testContext(t), "GET", s.URL, nil))
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
		if tlsVersion(resp) != tls.VersionTLS13 || conns.dialed() != 2 {
			t.Errorf("TLS %x after %d dials through Base's dialer, want TLS 1.3 after 2", tlsVersion(resp), conns.dialed())
		}
	})
	t.Run("own upgrade", func(t *testing.T) {
		addr, conns := alertServer(t, byte(alertNoApplicationProtocol))
		tr := newTransport(t, http1ALPN(legacyBase(t, nil)))
		ws := newRequest(t, testContext(t), "GET", "https://"+addr+"/", nil)
		ws.Header.Set("Connection", "Upgrade")
		ws.Header.Set("Upgrade", "websocket")
		_, err := tr.RoundTrip(ws)
		if alert, ok := receivedAlert(err); !ok || alert != alertNoApplicationProtocol || conns.Load() != 1 {
			t.Errorf("got %v after %d handshakes, want Base's no_application_protocol after 1", err, conns.Load())
		}
	})
}

// http1ALPN makes base offer http/1.1 in ALPN, as curl --http1.1 does; an
// HTTP/1.1-only http.Transport otherwise offers no ALPN at all, which an
// h2-only server may take without an alert (crypto/tls's does) or end
// after the handshake (Node's does): neither says anything unambiguous.
func http1ALPN(base *http.Transport) *http.Transport {
	base.TLSClientConfig.NextProtos = []string{"http/1.1"}
	return base
}

// A refusal a Transport nested in Base already replayed is not replayed
// again by the outer one: one replay per request.
func TestNestedRefusalReplaysOnce(t *testing.T) {
	addr, conns := alertServer(t, byte(alertProtocolVersion))
	base := legacyBase(t, nil)
	inner := newTransport(t, base)
	outer := newTransport(t, inner)
	outer.Template = base // Base is not an *http.Transport: the documented way
	_, err := outer.RoundTrip(newRequest(t, testContext(t), "GET", "https://"+addr+"/", nil))
	if err == nil {
		t.Fatal("no error from a server that refuses every handshake")
	}
	if n := conns.Load(); n != 2 {
		t.Errorf("%d handshakes, want 2: Base's and one replay (the inner Transport's)", n)
	}
}

// protocol_version is read as the version just above the client's cap:
// a client capped at TLS 1.1 reaches a server that takes 1.2.
func TestProtocolVersionReadAsTheNextVersion(t *testing.T) {
	s := startServer(t, testserver.Config{TLS: true, MaxTLSVersion: tls.VersionTLS12})
	base := legacyBase(t, s.CertPool())
	base.TLSClientConfig.MinVersion = tls.VersionTLS10
	base.TLSClientConfig.MaxVersion = tls.VersionTLS11
	tr := newTransport(t, base)
	var read []Protocol
	trace := &Trace{HandshakeRefused: func(info HandshakeRefusedInfo) { read = info.Demand }}
	resp, err := tr.RoundTrip(newRequest(t, WithTrace(testContext(t), trace), "GET", s.URL, nil))
	if err != nil {
		t.Fatalf("refusal read as %v; got %v, want 200 over TLS 1.2", read, err)
	}
	readAll(t, resp)
	if tlsVersion(resp) != tls.VersionTLS12 {
		t.Errorf("TLS %x, want TLS 1.2", tlsVersion(resp))
	}
}
