// Package upgradetest provides strict HTTP servers on loopback for testing
// code that must meet a server's demand for another protocol, in the style
// of net/http/httptest.
//
// Each constructor starts one server, on 127.0.0.1 at a port the OS
// chooses, with certificates from a CA of its own held in memory. It demands
// one thing (HTTP/2, h2c, HTTP/3, a TLS version, RFC 2817 in-band TLS) and
// refuses what does not meet it the way a real server does: with 426
// Upgrade Required and an Upgrade header, or by failing the TLS handshake;
// or, like [NewAltSvcServer], demands nothing and advertises HTTP/3.
// [Server.Client] returns a client that meets every refusal (HTTP/1.1 only,
// TLS at most 1.2, ALPN http/1.1), so wrapping its transport in
// [github.com/h426/upgrade.Transport] shows the upgrade happen:
//
//	srv := upgradetest.NewHTTP2Server(nil)
//	defer srv.Close()
//	transport := &upgrade.Transport{Base: srv.Client().Transport}
//	defer transport.Close()
//	resp, err := (&http.Client{Transport: transport}).Get(srv.URL)
//	// resp.Proto == "HTTP/2.0"; srv.Served("HTTP/2.0") == 1, srv.Refused() == 1
//
// Like httptest.NewServer, the constructors panic if the server cannot
// start. Start a fresh server per test and Close it: Close leaves no
// goroutine or connection behind.
package upgradetest

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/h426/upgrade/internal/testserver"
)

// Config describes a server for [NewServer], for demands and offers the
// other constructors do not make. The zero value is a cleartext server
// speaking HTTP/1.1 and h2c that serves every request.
type Config struct {
	// TLS serves https:// with a certificate from the server's CA for
	// 127.0.0.1, ::1 and localhost; false serves http://.
	TLS bool

	// HTTP1Only stops the server speaking HTTP/2, so it can offer HTTP/2
	// in Upgrade and fail to deliver it, as a misconfigured server does.
	HTTP1Only bool

	// HTTP3 also serves HTTP/3 over QUIC on the UDP port with the TCP
	// port's number. Requires TLS.
	HTTP3 bool

	// Require reports whether a request meets the server's demand; those
	// that do not get 426 with the Upgrade lines below, before their body
	// is read. Nil serves every request.
	Require func(r *http.Request) bool

	// Upgrade holds the values of the 426's Upgrade header lines, one
	// element per line, sent as they are ("h2c", "websocket, HTTP/2").
	// HTTP/1.x refusals also carry "Connection: Upgrade"; refusals over
	// HTTP/3 carry no Upgrade header, which HTTP/3 forbids.
	Upgrade []string

	// Handler serves the requests that meet Require; nil answers 200 with
	// the body "ok\n". It can read the request body.
	Handler http.Handler
}

// Server is a strict server on a loopback port. It is safe for concurrent
// use.
type Server struct {
	// URL is the base URL, with no trailing slash:
	// "https://127.0.0.1:PORT" or "http://127.0.0.1:PORT".
	URL string

	s    *testserver.Server
	cert *x509.Certificate

	// inband marks a server that switches to TLS in-band: its requests in
	// clear that were not refused are the OPTIONS that begin a switch.
	inband bool

	mu     sync.Mutex // guards client
	client *http.Client
}

// NewServer starts a server as cfg says. It panics if cfg asks for
// something that cannot be (HTTP3 without TLS) or the server cannot start.
func NewServer(cfg Config) *Server {
	return start(testserver.Config{
		TLS:       cfg.TLS,
		HTTP1Only: cfg.HTTP1Only,
		HTTP3:     cfg.HTTP3,
		Require:   cfg.Require,
		Upgrade:   cfg.Upgrade,
		Handler:   cfg.Handler,
	})
}

// NewHTTP2Server starts an https:// server that demands HTTP/2, as HAProxy
// configured to do so answers: a request over HTTP/1.1 gets 426 with
// "upgrade: HTTP/2.0", the header name in lower case on the wire; a request
// over HTTP/2 is served by handler (nil: 200 "ok\n").
func NewHTTP2Server(handler http.Handler) *Server {
	return start(testserver.Config{
		TLS:     true,
		Require: testserver.RequireHTTP2,
		Refuse:  lowerCase426("HTTP/2.0"),
		Handler: handler,
	})
}

// NewH2CServer starts an http:// server that demands HTTP/2 in clear, as
// Apache with mod_http2 words it: a request over HTTP/1.1 gets 426 with
// "Upgrade: h2c" and "Connection: Upgrade"; a request over h2c with prior
// knowledge (RFC 9113 section 3.3) is served by handler (nil: 200 "ok\n").
func NewH2CServer(handler http.Handler) *Server {
	return start(testserver.Config{
		Require: testserver.RequireHTTP2,
		Upgrade: []string{"h2c"},
		Handler: handler,
	})
}

// NewHTTP3Server starts an https:// server that demands HTTP/3, listening
// on TCP and on UDP with the same port number, as Caddy answers: a request
// over HTTP/1.1 or HTTP/2 gets 426 with "Upgrade: HTTP/3" and the Alt-Svc
// header Caddy sends (h3=":PORT"; ma=2592000); a request over HTTP/3 is
// served by handler (nil: 200 "ok\n"). QUIC always runs TLS 1.3.
func NewHTTP3Server(handler http.Handler) *Server {
	return start(testserver.Config{
		TLS:     true,
		HTTP3:   true,
		Require: testserver.RequireHTTP3,
		Refuse:  http.HandlerFunc(refuseHTTP3),
		Handler: handler,
	})
}

// NewAltSvcServer starts an https:// server that demands nothing but
// advertises HTTP/3, as Caddy does by default: it serves every request,
// over HTTP/1.1, HTTP/2 or HTTP/3, with handler (nil: 200 "ok\n"), and
// every response carries "Alt-Svc: h3=":PORT"; ma=2592000" for the UDP
// port with the TCP port's number. A client that follows Alt-Svc sends
// the requests after the first over HTTP/3: Served("HTTP/3.0") counts
// them.
func NewAltSvcServer(handler http.Handler) *Server {
	if handler == nil {
		handler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	}
	var altSvc atomic.Pointer[string] // set once the port is known, before any request
	s := start(testserver.Config{
		TLS:   true,
		HTTP3: true,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Alt-Svc", *altSvc.Load())
			handler.ServeHTTP(w, r)
		}),
	})
	v := `h3=":` + s.URL[strings.LastIndex(s.URL, ":")+1:] + `"; ma=2592000`
	altSvc.Store(&v)
	return s
}

// NewTLSServer starts an https:// server that demands TLS version (one of
// tls.VersionTLS10 to tls.VersionTLS13) or later, as HAProxy configured to
// do so answers: a request over an older TLS gets 426 with "upgrade:
// TLS/1.3" (for TLS 1.3), the header name in lower case on the wire; others
// are served by handler (nil: 200 "ok\n"). The handshake itself accepts any
// version crypto/tls does. It panics on any other version.
//
// Not to be confused with httptest.NewTLSServer, which starts a server
// that speaks TLS: every server here with an https:// URL does.
func NewTLSServer(version uint16, handler http.Handler) *Server {
	token, ok := map[uint16]string{
		tls.VersionTLS10: "TLS/1.0",
		tls.VersionTLS11: "TLS/1.1",
		tls.VersionTLS12: "TLS/1.2",
		tls.VersionTLS13: "TLS/1.3",
	}[version]
	if !ok {
		panic(fmt.Sprintf("upgradetest: NewTLSServer: unknown TLS version %#04x", version))
	}
	return start(testserver.Config{
		TLS: true,
		Require: func(r *http.Request) bool {
			return r.TLS != nil && r.TLS.Version >= version
		},
		Refuse:  lowerCase426(token),
		Handler: handler,
	})
}

// NewInbandServer starts an http:// server that demands TLS on the same
// port, switched in-band as RFC 2817 says, as CUPS answers: a request in
// clear gets 426 with "Upgrade: TLS/1.2,TLS/1.1,TLS/1.0" and "Connection:
// Upgrade"; an "OPTIONS *" asking for TLS gets CUPS's "101 Switching
// Protocols" (with "Connection: Keep-Alive"), a TLS handshake on the same
// connection and a 200 inside TLS; requests that follow inside TLS are
// served by handler (nil: 200 "ok\n"). Requests records the OPTIONS.
func NewInbandServer(handler http.Handler) *Server {
	s := start(testserver.Config{
		InbandTLS: testserver.InbandCUPS,
		Require:   testserver.RequireTLS,
		Upgrade:   []string{"TLS/1.2,TLS/1.1,TLS/1.0"},
		Handler:   handler,
	})
	s.inband = true
	return s
}

// NewTLS13OnlyServer starts an https:// server that speaks TLS 1.3 only,
// as nginx with "ssl_protocols TLSv1.3" does: a client capped below TLS 1.3
// gets no 426 but the alert protocol_version in the handshake, before any
// request is sent. Requests over TLS 1.3 are served by handler (nil: 200
// "ok\n").
func NewTLS13OnlyServer(handler http.Handler) *Server {
	return start(testserver.Config{
		TLS:           true,
		MinTLSVersion: tls.VersionTLS13,
		Handler:       handler,
	})
}

// NewHTTP2OnlyServer starts an https:// server that speaks HTTP/2 only, as
// Node's http2 server with allowHTTP1: false does: a client that offers
// only http/1.1 in ALPN gets no 426 but the alert no_application_protocol
// in the handshake, before any request is sent. Requests over HTTP/2 are
// served by handler (nil: 200 "ok\n").
func NewHTTP2OnlyServer(handler http.Handler) *Server {
	return start(testserver.Config{
		TLS:       true,
		HTTP2Only: true,
		Handler:   handler,
	})
}

// start starts cfg, with the handler given the body, or panics.
func start(cfg testserver.Config) *Server {
	cfg.KeepBody = true
	s, err := testserver.Start(cfg)
	if err != nil {
		panic("upgradetest: " + err.Error())
	}
	block, _ := pem.Decode(s.CA().PEM())
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		s.Close()
		panic("upgradetest: CA certificate: " + err.Error())
	}
	return &Server{URL: s.URL, s: s, cert: cert}
}

// lowerCase426 answers 426 demanding token with the Upgrade and Connection
// header names in lower case on the wire, as HAProxy writes them (HTTP/2
// lower-cases every name anyway).
func lowerCase426(token string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		// Not canonical on purpose: the name goes on the wire as it is.
		h["upgrade"] = []string{token}
		if r.ProtoMajor == 1 {
			// RFC 9110 section 7.8; HTTP/2 forbids connection-specific fields.
			h["connection"] = []string{"upgrade"}
		}
		h.Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusUpgradeRequired)
		io.WriteString(w, "426 upgrade required\n")
	})
}

// refuseHTTP3 is NewHTTP3Server's 426, which only requests over HTTP/1.1 and
// HTTP/2 get.
func refuseHTTP3(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Upgrade", "HTTP/3")
	if r.ProtoMajor == 1 {
		h.Set("Connection", "Upgrade")
	}
	if addr, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		if _, port, err := net.SplitHostPort(addr.String()); err == nil {
			h.Set("Alt-Svc", `h3=":`+port+`"; ma=2592000`)
		}
	}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusUpgradeRequired)
	io.WriteString(w, "426 upgrade required\n")
}

// Close shuts the server down: its listeners, its UDP port, every
// connection, and the idle connections of [Server.Client]'s transport. It
// waits for running handlers to return. Close may be called more than once.
func (s *Server) Close() {
	s.s.Close()
	s.mu.Lock()
	c := s.client
	s.mu.Unlock()
	if c != nil {
		c.CloseIdleConnections()
	}
}

// Certificate returns the certificate of the server's CA, the root a
// client must trust. The server's own certificate is valid for 127.0.0.1,
// ::1 and localhost.
func (s *Server) Certificate() *x509.Certificate { return s.cert }

// CertPool returns a new pool trusting the server's CA, for a client's
// tls.Config.RootCAs.
func (s *Server) CertPool() *x509.CertPool { return s.s.CertPool() }

// Client returns a client that meets the server's refusal rather than its
// demand: its Transport is an *http.Transport that speaks HTTP/1.1 only,
// TLS 1.2 at most, offers ALPN "http/1.1" (as curl --http1.1 does) and
// trusts the server's CA. It is not wrapped in upgrade.Transport; wrap it
// yourself:
//
//	transport := &upgrade.Transport{Base: srv.Client().Transport}
//
// Every call returns the same client; Close closes its idle connections.
func (s *Server) Client() *http.Client {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.client == nil {
		http1 := new(http.Protocols)
		http1.SetHTTP1(true)
		s.client = &http.Client{Transport: &http.Transport{
			Protocols: http1,
			TLSClientConfig: &tls.Config{
				RootCAs:    s.CertPool(),
				MaxVersion: tls.VersionTLS12,
				NextProtos: []string{"http/1.1"},
			},
		}}
	}
	return s.client
}

// Request is what the server saw of one request.
type Request struct {
	Proto      string // "HTTP/1.1", "HTTP/2.0", "HTTP/3.0"
	TLSVersion uint16 // the negotiated TLS version; 0 in clear
	Method     string
	Path       string      // the URL's path; "*" for the OPTIONS of an in-band switch
	Host       string      // the Host header, or :authority
	Header     http.Header // the request header as it arrived

	// Refused reports that the request got the 426. Its body was not read:
	// a real server refuses before reading, so a client sending "Expect:
	// 100-continue" never sends it.
	Refused bool

	// For requests served, the length and SHA-256 of the body as read to
	// EOF.
	BodyLen    int64
	BodySHA256 [32]byte
}

// Requests returns every request the server has seen, refused or served,
// in arrival order. A refusal made in the TLS handshake is no request and
// is not in the list.
func (s *Server) Requests() []Request {
	seen := s.s.Requests()
	list := make([]Request, len(seen))
	for i, r := range seen {
		list[i] = Request{
			Proto:      r.Proto,
			TLSVersion: r.TLSVersion,
			Method:     r.Method,
			Path:       r.Path,
			Host:       r.Host,
			Header:     r.Header,
			Refused:    r.Refused,
			BodyLen:    r.BodyLen,
			BodySHA256: r.BodySHA256,
		}
	}
	return list
}

// Count returns the number of requests seen, refused or served: the
// length of Requests.
func (s *Server) Count() int { return s.s.Count() }

// Refused returns the number of requests answered with 426.
func (s *Server) Refused() int { return s.s.Refused() }

// Served returns the number of requests served over proto ("HTTP/1.1",
// "HTTP/2.0", "HTTP/3.0"; "" for any), so a test can check that the replay
// went where it should: Served("HTTP/3.0") == 1. Neither refused requests
// nor the OPTIONS of an in-band switch count.
func (s *Server) Served(proto string) int {
	n := 0
	for _, r := range s.s.Requests() {
		if r.Refused || (s.inband && r.TLSVersion == 0) {
			continue
		}
		if proto == "" || r.Proto == proto {
			n++
		}
	}
	return n
}
