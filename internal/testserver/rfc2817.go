package testserver

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"
)

// InbandMode says how a cleartext server answers RFC 2817 in-band upgrades
// to TLS (Config.InbandTLS). The zero value serves none: an "OPTIONS *"
// asking for TLS is an ordinary request.
type InbandMode uint8

const (
	// InbandRFC2817 follows RFC 2817: an "OPTIONS *" with "Connection:
	// Upgrade" and an Upgrade header naming TLS gets "101 Switching
	// Protocols" (Upgrade: TLS/1.2, HTTP/1.1; Connection: Upgrade), a TLS
	// handshake on the same connection, the response to the OPTIONS inside
	// TLS (200, Content-Length: 0; section 3.3), then HTTP/1.1 inside TLS,
	// recorded and served like any request, with its TLS state.
	InbandRFC2817 InbandMode = iota + 1

	// InbandCUPS is InbandRFC2817 with the 101 as CUPS sends it:
	// "Connection: Keep-Alive", a Keep-Alive header and "Content-Length: 0".
	InbandCUPS

	// InbandIPPEveprinter is InbandRFC2817 with the 101 as CUPS's
	// ippeveprinter (and the PAPPL printer applications derived from it)
	// sends it: both "Content-Length: 0" and "Transfer-Encoding: chunked",
	// which a 1xx may carry but never applies (RFC 9112 §6.3).
	InbandIPPEveprinter

	// The hostile and broken servers below answer the OPTIONS otherwise.

	// InbandAnswer200 answers the OPTIONS with 200 in clear and does not
	// switch, as Apache 2.4.64 and later do.
	InbandAnswer200
	// InbandClose closes the connection instead of answering the OPTIONS.
	InbandClose
	// InbandBytesAfter101 sends a response in clear right after the 101, in
	// the same write, before any handshake: the CVE-2025-49812 shape.
	InbandBytesAfter101
	// Inband101WithBody sends the 101 with "Content-Length: 5" and 5 bytes.
	Inband101WithBody
	// InbandNotTLS sends the 101, then answers the ClientHello with bytes
	// that are not TLS.
	InbandNotTLS
	// InbandCloseAfter101 sends the 101, then closes the connection.
	InbandCloseAfter101
	// InbandSilent switches to TLS, then never answers the OPTIONS; the
	// connection stays open until the client or Close ends it.
	InbandSilent
	// InbandExtraResponse answers the OPTIONS inside TLS and, in the same
	// write, sends a second response nobody asked for.
	InbandExtraResponse
	// InbandUnasked101 switches to TLS as InbandRFC2817 does, then answers
	// requests inside TLS that did not ask for an upgrade with a 101.
	InbandUnasked101
	// InbandUnasked101Clear answers requests in clear that did not ask for
	// an upgrade with a 101 naming TLS, then waits for a TLS handshake.
	InbandUnasked101Clear
)

// inbandHandshakeTimeout bounds the server's side of the handshake, so a
// client that goes quiet does not hold a handler until Close.
const inbandHandshakeTimeout = 10 * time.Second

// inbandServer is the part of a cleartext server that serves HTTP/1.1 on
// connections switched to TLS in-band. Those connections are not accepted
// from a listener: they are handed over, after the switch, to an
// http.Server of their own through a connQueue.
type inbandServer struct {
	mode   InbandMode
	tls    *tls.Config // this server's certificate, ALPN http/1.1
	http   *http.Server
	queue  *connQueue
	served chan struct{} // closed when http.Serve has returned
}

// startInband wires the in-band mode into s, whose cleartext http.Server
// has not started: its handler first looks for upgrade requests.
func (s *Server) startInband(cert tls.Certificate) {
	conf := newTLSConfig(s.cfg, cert)
	conf.NextProtos = []string{"http/1.1"}
	in := &inbandServer{
		mode:   s.cfg.InbandTLS,
		tls:    conf,
		queue:  &connQueue{conns: make(chan net.Conn), done: make(chan struct{}), addr: s.tcp.Addr()},
		served: make(chan struct{}),
	}
	in.http = &http.Server{
		Handler:   http.HandlerFunc(s.serveInsideTLS),
		Protocols: protocols(Config{HTTP1Only: true}),
		ErrorLog:  s.http.ErrorLog,
		ConnState: s.trackConn,
	}
	s.inband = in
	s.http.Handler = http.HandlerFunc(s.serveClear)
	// net/http answers "OPTIONS *" itself unless told not to.
	s.http.DisableGeneralOptionsHandler = true
	go func() {
		defer close(in.served)
		in.http.Serve(in.queue)
	}()
}

// closeInband closes the TLS side's server and its connections and waits
// for its Serve to return.
func (s *Server) closeInband() error {
	err := s.inband.http.Close()
	<-s.inband.served
	return err
}

// serveClear is the cleartext handler in in-band mode.
func (s *Server) serveClear(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.ProtoMajor == 1 && r.Method == http.MethodOptions && r.RequestURI == "*" && asksForTLS(r.Header):
		s.switchToTLS(w, r)
	case r.ProtoMajor == 1 && s.inband.mode == InbandUnasked101Clear && !isH2CPreface(r):
		s.unasked101(w, r, true)
	default:
		s.serveHTTP(w, r)
	}
}

// serveInsideTLS is the handler for requests on switched connections.
func (s *Server) serveInsideTLS(w http.ResponseWriter, r *http.Request) {
	if s.inband.mode == InbandUnasked101 && !asksForTLS(r.Header) {
		s.unasked101(w, r, false)
		return
	}
	s.serveHTTP(w, r)
}

// asksForTLS reports whether h asks to switch to TLS (RFC 2817 section 3.1).
func asksForTLS(h http.Header) bool {
	if !httpguts.HeaderValuesContainsToken(h["Connection"], "upgrade") {
		return false
	}
	for _, line := range h["Upgrade"] {
		for element := range strings.SplitSeq(line, ",") {
			name, _, _ := strings.Cut(strings.TrimSpace(element), "/")
			if strings.EqualFold(name, "TLS") {
				return true
			}
		}
	}
	return false
}

// The 101 as each mode writes it.
const (
	switchRFC2817 = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: TLS/1.2, HTTP/1.1\r\nConnection: Upgrade\r\n\r\n"
	switchCUPS    = "HTTP/1.1 101 Switching Protocols\r\nConnection: Keep-Alive\r\nKeep-Alive: timeout=30\r\n" +
		"Content-Length: 0\r\nUpgrade: TLS/1.2,TLS/1.1,TLS/1.0\r\n\r\n"
	switchIPPEveprinter = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nContent-Length: 0\r\n" +
		"Transfer-Encoding: chunked\r\nUpgrade: TLS/1.2,HTTP/1.1\r\n\r\n"
	switchWithBody = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: TLS/1.2\r\nConnection: Upgrade\r\n" +
		"Content-Length: 5\r\n\r\nhello"
	optionsAnswer = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
	// injected is what a man in the middle would like taken as a response.
	injected = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\r\ninjected\n"
)

// switchToTLS answers an upgrade request as the mode says. The request is
// recorded, with Method "OPTIONS" and Path "*", but never served.
func (s *Server) switchToTLS(w http.ResponseWriter, r *http.Request) {
	if !s.enter() {
		panic(http.ErrAbortHandler)
	}
	defer s.handlers.Done()
	s.record(r)

	if s.inband.mode == InbandAnswer200 {
		w.Header().Set("Allow", "GET, HEAD, OPTIONS, POST")
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusOK)
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	handedOver := false
	defer func() {
		if !handedOver {
			conn.Close()
		}
	}()
	if brw.Reader.Buffered() > 0 {
		return // the client did not wait for the 101: where would TLS begin?
	}

	switch s.inband.mode {
	case InbandClose:
		return
	case InbandCloseAfter101:
		io.WriteString(conn, switchRFC2817)
		return
	case InbandBytesAfter101:
		io.WriteString(conn, switchRFC2817+injected)
		io.Copy(io.Discard, conn) // until the client gives up
		return
	case Inband101WithBody:
		io.WriteString(conn, switchWithBody)
		io.Copy(io.Discard, conn)
		return
	case InbandNotTLS:
		io.WriteString(conn, switchRFC2817)
		buf := make([]byte, 512)
		if _, err := conn.Read(buf); err == nil { // the ClientHello, or part of it
			io.WriteString(conn, "this is not TLS\r\n")
		}
		return
	case InbandCUPS:
		io.WriteString(conn, switchCUPS)
	case InbandIPPEveprinter:
		io.WriteString(conn, switchIPPEveprinter)
	default:
		io.WriteString(conn, switchRFC2817)
	}

	tlsConn := tls.Server(conn, s.inband.tls)
	conn.SetDeadline(time.Now().Add(inbandHandshakeTimeout))
	if err := tlsConn.Handshake(); err != nil {
		return
	}
	conn.SetDeadline(time.Time{})
	switch s.inband.mode {
	case InbandSilent:
		io.Copy(io.Discard, tlsConn)
		return
	case InbandExtraResponse:
		io.WriteString(tlsConn, optionsAnswer+injected) // one write, one record
		io.Copy(io.Discard, tlsConn)
		return
	}
	if _, err := io.WriteString(tlsConn, optionsAnswer); err != nil {
		return
	}
	handedOver = s.inband.queue.push(tlsConn)
}

// unasked101 answers a request that did not ask for an upgrade with a 101
// naming TLS, then waits for a handshake until the client or Close ends the
// connection. The request counts as refused: it is never served.
func (s *Server) unasked101(w http.ResponseWriter, r *http.Request, clear bool) {
	if !s.enter() {
		panic(http.ErrAbortHandler)
	}
	defer s.handlers.Done()
	s.markRefused(s.record(r))
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: TLS/1.2\r\nConnection: Upgrade\r\n\r\n")
	if clear {
		conn.SetDeadline(time.Now().Add(inbandHandshakeTimeout))
		tls.Server(conn, s.inband.tls).Handshake()
	}
}

// connQueue is a net.Listener whose connections are handed to it by push.
type connQueue struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
	addr  net.Addr
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.conns:
		return c, nil
	case <-q.done:
		return nil, net.ErrClosed
	}
}

// push hands c to Accept; false if the queue is closed, and c is then the
// caller's to close.
func (q *connQueue) push(c net.Conn) bool {
	select {
	case q.conns <- c:
		return true
	case <-q.done:
		return false
	}
}

func (q *connQueue) Close() error {
	q.once.Do(func() { close(q.done) })
	return nil
}

func (q *connQueue) Addr() net.Addr { return q.addr }
