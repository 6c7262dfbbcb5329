// Package testserver provides strict HTTP servers on loopback for testing the
// upgrade transport: servers that answer 426 Upgrade Required (RFC 9110
// section 15.5.22) to requests that do not meet their demand, and record every
// request they see.
//
// A server listens on one port of 127.0.0.1, over TLS or in clear, speaking
// HTTP/1.1 and HTTP/2 (h2c with prior knowledge in clear) unless told to speak
// HTTP/1.1 only. Over TLS it can also speak HTTP/3 on the UDP port of the same
// number, or hold that UDP port and drop every datagram, as a network that
// blocks QUIC does. Certificates come from an in-memory CA:
//
//	s, err := testserver.Start(testserver.Config{
//		TLS:     true,
//		Require: testserver.RequireHTTP2,
//		Upgrade: []string{"h2"},
//	})
//	if err != nil { ... }
//	defer s.Close()
//	client := &http.Client{Transport: &http.Transport{
//		TLSClientConfig: &tls.Config{RootCAs: s.CertPool()},
//	}}
//
// Start a fresh server per test; Close leaves no goroutine or connection behind.
package testserver

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"sync"

	"github.com/quic-go/quic-go/http3"
)

// Requirement reports whether a request meets the server's demand. Requests
// that do not are refused (426 by default, see Config.Refuse). It is called
// before the request body is read.
type Requirement func(r *http.Request) bool

// Requirements for Config.Require.
var (
	// RequireHTTP2 demands HTTP/2 or later.
	RequireHTTP2 Requirement = func(r *http.Request) bool { return r.ProtoMajor >= 2 }

	// RequireHTTP3 demands HTTP/3 or later, which only Config.HTTP3 serves.
	RequireHTTP3 Requirement = func(r *http.Request) bool { return r.ProtoMajor >= 3 }

	// RequireTLS13 demands TLS 1.3 or later.
	RequireTLS13 Requirement = func(r *http.Request) bool {
		return r.TLS != nil && r.TLS.Version >= tls.VersionTLS13
	}

	// RequireTLS demands TLS of any version.
	RequireTLS Requirement = func(r *http.Request) bool { return r.TLS != nil }

	// RefuseAll is never met: the server answers 426 to everything, so a
	// client that keeps upgrading can be caught looping.
	RefuseAll Requirement = func(*http.Request) bool { return false }
)

// Config says how a server listens, what it demands and how it answers. The
// zero value is a cleartext server speaking HTTP/1.1 and h2c that serves
// every request with 200 "ok\n".
type Config struct {
	// TLS serves https on a TLS listener; false serves cleartext http.
	TLS bool

	// MinTLSVersion and MaxTLSVersion bound the server's TLS versions;
	// 0 means the crypto/tls default. Ignored unless TLS or InbandTLS is
	// set.
	MinTLSVersion, MaxTLSVersion uint16

	// HTTP1Only stops the server speaking HTTP/2: no "h2" in ALPN over
	// TLS, no h2c in clear. It does not affect HTTP3.
	HTTP1Only bool

	// HTTP2Only offers only "h2" in ALPN over TLS, so a client that offers
	// only http/1.1 fails the handshake with the alert
	// no_application_protocol, as Node's http2 server with allowHTTP1:
	// false answers. Requires TLS; excludes HTTP1Only.
	HTTP2Only bool

	// HTTP3 also serves HTTP/3 (RFC 9114) over QUIC on the UDP port with
	// the same number as the TCP port, so an "h3" offer for the server's
	// URL reaches it. QUIC always runs TLS 1.3 (RFC 9001 section 4.2),
	// whatever MinTLSVersion and MaxTLSVersion say. Requires TLS.
	HTTP3 bool

	// DropUDP binds the UDP port with the same number as the TCP port and
	// reads and discards every datagram, as a network that drops QUIC: an
	// HTTP/3 client gets no answer and times out. Requires TLS; excludes
	// HTTP3.
	DropUDP bool

	// CA issues the server certificate; nil means a fresh CA per server.
	CA *CA

	// HTTP3CA issues the certificate presented over QUIC only, so a test
	// can fail the HTTP/3 handshake while TLS over TCP verifies; nil means
	// the server's CA, with the same certificate as over TCP. Requires
	// HTTP3.
	HTTP3CA *CA

	// ClientCAs, when set, makes the TLS handshake, over TCP and QUIC alike,
	// require a client certificate signed by one of its CAs. Ignored unless
	// TLS or InbandTLS is set.
	ClientCAs *x509.CertPool

	// InbandTLS makes a cleartext server switch connections to TLS in-band
	// (RFC 2817) when asked with "OPTIONS *", the way the mode says; zero
	// means never. Requests inside TLS then see r.TLS, so RequireTLS holds
	// for them. Requires TLS to be false.
	InbandTLS InbandMode

	// Require is the server's demand; nil means every request is served.
	Require Requirement

	// Upgrade holds the values of the Upgrade header lines the default
	// refusal sends, raw, one element per header line (so tests can send
	// malformed or split lists); nil means no Upgrade header. A refusal
	// over HTTP/3 never sends them (see refuse).
	Upgrade []string

	// Refuse, when set, writes the refusal instead of the default 426, for
	// hostile or broken servers. It must not be slow to return after the
	// connection closes, or Close waits for it.
	Refuse http.Handler

	// Handler serves the requests that meet Require, after their body has
	// been read and recorded; nil means 200 with body "ok\n".
	Handler http.Handler

	// KeepBody hands Handler the body it recorded, held in memory, instead
	// of a body already read to EOF.
	KeepBody bool
}

// Server is a strict HTTP server on a loopback port, started by Start. It is
// safe for concurrent use.
type Server struct {
	URL  string // base URL with no trailing slash: "https://127.0.0.1:PORT" or "http://127.0.0.1:PORT"
	Addr string // "127.0.0.1:PORT", on TCP and, with HTTP3 or DropUDP, on UDP

	cfg Config
	ca  *CA

	// tlsConfig is built once and is nil in clear; every listener on the
	// port must share it so all of them present the same certificate.
	tlsConfig *tls.Config

	// quicTLSConfig is tlsConfig for QUIC: TLS 1.3 only, ALPN "h3", and
	// HTTP3CA's certificate if set. Nil unless Config.HTTP3.
	quicTLSConfig *tls.Config

	// tcp owns the TCP port and every connection accepted on it, apart from
	// the http.Server, so other ways of serving the same port can be added.
	tcp    *trackingListener
	http   *http.Server
	served chan struct{} // closed when http.Server.Serve has returned

	// udp owns the UDP port with the TCP port's number; nil unless
	// Config.HTTP3 or Config.DropUDP. It is read by http3 (nil unless
	// Config.HTTP3) or by dropDatagrams.
	udp     *net.UDPConn
	http3   *http3.Server
	udpDone chan struct{} // closed when the goroutine reading udp has returned

	// inband serves connections switched to TLS in-band; nil unless
	// Config.InbandTLS (rfc2817.go).
	inband *inbandServer

	// handlers counts running handlers. Add is only called under mu while
	// closed is false, so Close's Wait cannot race with it.
	handlers sync.WaitGroup

	// conns counts the connections net/http serves, until they close or are
	// hijacked (trackConn): net/http may linger on one after Close (it
	// waits 500 ms before closing a connection whose request body it did
	// not read), so Close waits for them.
	conns sync.WaitGroup

	closeOnce sync.Once
	closeErr  error

	mu       sync.Mutex // guards requests, refused and closed
	requests []Request  // in arrival order
	refused  int
	closed   bool
}

// Start starts a server on 127.0.0.1 at a port chosen by the OS. The caller
// must Close it.
func Start(cfg Config) (*Server, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, ca: cfg.CA, served: make(chan struct{})}
	if s.ca == nil {
		ca, err := NewCA()
		if err != nil {
			return nil, err
		}
		s.ca = ca
	}
	if cfg.TLS {
		cert, err := s.ca.ServerCert()
		if err != nil {
			return nil, err
		}
		s.tlsConfig = newTLSConfig(cfg, cert)
	}
	var inbandCert tls.Certificate
	if cfg.InbandTLS != 0 {
		var err error
		if inbandCert, err = s.ca.ServerCert(); err != nil {
			return nil, err
		}
	}
	if cfg.HTTP3 {
		cert, err := s.http3CA().ServerCert()
		if err != nil {
			return nil, err
		}
		s.quicTLSConfig = newQUICTLSConfig(s.tlsConfig, cert)
	}

	var bindUDP func(port int) (*net.UDPConn, error)
	if cfg.HTTP3 || cfg.DropUDP {
		bindUDP = listenUDP
	}
	tcp, udp, err := listen(bindUDP)
	if err != nil {
		return nil, err
	}
	s.tcp = tcp
	s.Addr = tcp.Addr().String()
	s.http = &http.Server{
		Handler:   http.HandlerFunc(s.serveHTTP),
		Protocols: protocols(cfg),
		// Tests provoke failed handshakes on purpose; do not log them.
		ErrorLog:  log.New(io.Discard, "", 0),
		ConnState: s.trackConn,
	}
	if cfg.InbandTLS != 0 {
		s.startInband(inbandCert)
	}

	var ln net.Listener = tcp
	s.URL = "http://" + s.Addr
	if s.tlsConfig != nil {
		ln = tls.NewListener(tcp, s.tlsConfig)
		s.URL = "https://" + s.Addr
	}
	go func() {
		defer close(s.served)
		s.http.Serve(ln) // returns http.ErrServerClosed once Close has begun
	}()
	if udp != nil {
		s.serveUDP(udp)
	}
	return s, nil
}

// check reports a configuration Start cannot honour.
func (cfg Config) check() error {
	switch {
	case cfg.HTTP3 && !cfg.TLS:
		return errors.New("testserver: HTTP3 requires TLS")
	case cfg.DropUDP && !cfg.TLS:
		return errors.New("testserver: DropUDP requires TLS")
	case cfg.HTTP3 && cfg.DropUDP:
		return errors.New("testserver: HTTP3 and DropUDP exclude each other")
	case cfg.HTTP3CA != nil && !cfg.HTTP3:
		return errors.New("testserver: HTTP3CA requires HTTP3")
	case cfg.InbandTLS != 0 && cfg.TLS:
		return errors.New("testserver: InbandTLS requires a cleartext server")
	}
	return nil
}

// http3CA returns the CA that issues the certificate presented over QUIC.
func (s *Server) http3CA() *CA {
	if s.cfg.HTTP3CA != nil {
		return s.cfg.HTTP3CA
	}
	return s.ca
}

// Close closes the listeners, the UDP port and every connection, hijacked
// and QUIC ones included, and waits for running handlers to return. Requests
// arriving meanwhile are aborted. Close may be called more than once; later
// calls return the first call's result.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()

		errs := []error{s.http.Close()}
		<-s.served // nothing is accepted after Serve returns
		if s.inband != nil {
			errs = append(errs, s.closeInband())
		}
		s.tcp.closeAll()
		if s.udp != nil {
			errs = append(errs, s.closeUDP())
		}
		s.handlers.Wait()
		s.conns.Wait()
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

// trackConn is the http.Servers' ConnState hook. Every connection starts
// in StateNew, reported before Serve can return, and ends in StateClosed or
// StateHijacked, so once Serve has returned Close can wait for the count.
func (s *Server) trackConn(_ net.Conn, state http.ConnState) {
	switch state {
	case http.StateNew:
		s.conns.Add(1)
	case http.StateClosed, http.StateHijacked:
		s.conns.Done()
	}
}

// enter registers a handler unless Close has begun.
func (s *Server) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.handlers.Add(1)
	return true
}

// CA returns the CA that issued the server certificate.
func (s *Server) CA() *CA { return s.ca }

// CertPool returns roots that trust the server: s.CA().CertPool().
func (s *Server) CertPool() *x509.CertPool { return s.ca.CertPool() }

// Requests returns a copy of every request seen, in arrival order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := make([]Request, len(s.requests))
	for i, r := range s.requests {
		r.Header = r.Header.Clone()
		seen[i] = r
	}
	return seen
}

// Count returns the number of requests seen, refused or served.
func (s *Server) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.requests)
}

// Refused returns the number of requests answered with the refusal.
func (s *Server) Refused() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refused
}
