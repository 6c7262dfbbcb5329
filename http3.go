package upgrade

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"golang.org/x/net/idna"
)

// http3Transport is quic-go's HTTP/3 transport on a UDP socket of its own,
// so that its dial failures carry the connectError mark and its lifetime
// is what net/http users expect, who never call Close:
//
//   - a connection no request has used for Base's IdleConnTimeout is
//     closed, per host;
//   - CloseIdleConnections closes every connection no response is being
//     read from;
//   - once no connection is left and no dial is under way, the UDP socket
//     and its goroutines go too; the next dial makes a new one.
//
// quic-go counts a connection idle once RoundTrip has returned, so closing
// "idle" connections through it alone would cut response bodies; the
// transport counts requests itself, per host, from RoundTrip until their
// response is read to its end or closed. quic-go's Close cuts every
// connection at once, so Close here waits for those responses first.
type http3Transport struct {
	*http3.Transport

	idleTimeout   time.Duration // a connection unused this long is closed
	headerTimeout time.Duration // Base's ResponseHeaderTimeout; zero means none
	fallbackDelay time.Duration // Transport.HTTP3FallbackDelay; zero means none
	singleUse     bool          // Base's DisableKeepAlives: one connection per request
	racers        racers        // finds what races a slow QUIC handshake (race.go); nil: nothing

	// gate keeps requests from starting while connections are being
	// closed: RoundTrip holds it for reading while it counts a request,
	// closing holds it for writing. Never taken with mu held.
	gate sync.RWMutex

	mu      sync.Mutex         // guards the fields below
	sock    *quic.Transport    // the UDP socket, made on a dial when missing
	conns   int                // connections dialed on sock and not yet closed
	dials   int                // dials under way on sock
	hosts   map[string]*h3Host // by pool key (poolKey)
	active  int                // requests whose response is not done yet
	closing bool               // Close was called; shut down when active is 0
	keyless bool               // quic-go pooled a request under another key than poolKey: close by host no more

	dialed atomic.Int32 // connections dialed, for tests
	tried  atomic.Int32 // dials begun, for tests
}

// h3Host is what the transport knows of one pool key: the requests and
// the connections quic-go uses for it.
type h3Host struct {
	key       string
	alt       string      // where its connections are dialed, if not key (an Alt-Svc alternative)
	active    int         // requests whose response is not done yet
	conns     []*h3Conn   // connections dialed for it, not yet closed
	idle      *time.Timer // closes conns idleTimeout after active fell to 0
	idleSince time.Time   // when active last fell to 0
	// idleArmed: idle is pending or running. It is armed once and left so
	// while requests come and go, as hostIdle checks idleSince and active
	// when it fires: stopping and resetting a timer on every request cost
	// the remembered route two timer-heap updates each.
	idleArmed bool
}

// h3Conn is one dialed QUIC connection.
type h3Conn struct {
	conn *quic.Conn
	host *h3Host
	stop func() bool // stops the bookkeeping that runs when conn closes
}

// quicIdleTimeout is how long a connection may stay unused when Base sets
// no IdleConnTimeout: quic-go's default MaxIdleTimeout, what a connection
// that nobody pings gets.
const quicIdleTimeout = 30 * time.Second

// newHTTP3 builds the HTTP/3 transport. QUIC has its own sockets, so of
// the template's settings only these carry over: TLS, the response limits,
// IdleConnTimeout, ResponseHeaderTimeout and DisableKeepAlives.
func (t *Transport) newHTTP3() *http3Transport {
	// Clone, not TLSClientConfig.Clone: it first runs net/http's one-time
	// setup, which writes the template's TLS config, so no read races it.
	template := t.template().Clone()
	h := &http3Transport{
		idleTimeout:   template.IdleConnTimeout,
		headerTimeout: template.ResponseHeaderTimeout,
		fallbackDelay: t.http3FallbackDelay(),
		racers:        t,
		singleUse:     template.DisableKeepAlives,
		hosts:         make(map[string]*h3Host),
	}
	if h.idleTimeout <= 0 {
		h.idleTimeout = quicIdleTimeout
	}
	h.Transport = &http3.Transport{
		TLSClientConfig: t.tlsConfig(template.TLSClientConfig, tls.VersionTLS13), // QUIC runs TLS 1.3 only
		QUICConfig: &quic.Config{
			HandshakeIdleTimeout: t.http3HandshakeTimeout(),
			// No server-opened streams, as http3's default. Keep-alives
			// too, so that QUIC's idle timeout never cuts a request whose
			// server is slow to answer (net/http never cuts one for
			// idleness); an unused connection is closed by idleTimeout.
			MaxIncomingStreams: -1,
			KeepAlivePeriod:    10 * time.Second,
		},
		Dial:                   h.dial,
		DisableCompression:     template.DisableCompression,
		MaxResponseHeaderBytes: int(template.MaxResponseHeaderBytes),
	}
	return h
}

// dialContext carries a dialInfo to the dial a request causes.
type dialContext struct{}

// dialInfo is what a dial needs to know of the request that caused it.
type dialInfo struct {
	key      string // the request's pool key: the dial checks that quic-go pools under it
	quicOnly bool   // no TCP protocol stands behind the request: nothing races QUIC
	tcpAddr  string // the address net/http dials for the request, for a TCP contender
	// caller is the request's context. quic-go (v0.65.0) dials under a
	// context without its cancel, as the dial is shared by every request
	// to the host; the TCP contender is the request's, and goes with it.
	caller context.Context
}

func (h *http3Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	return h.roundTripVia(req, "", false)
}

// roundTripVia is RoundTrip with a new connection, if one is needed, dialed
// to alt (host:port, an Alt-Svc alternative) rather than the request's
// host; the certificate is verified for the request's host all the same.
// quicOnly says no TCP protocol stands behind the request. Both go to the
// dial without a context or request copy on every request: alt on the
// host's state, quicOnly into the context only when a dial is coming.
func (h *http3Transport) roundTripVia(req *http.Request, alt string, quicOnly bool) (*http.Response, error) {
	key := poolKey(req.URL)
	h.gate.RLock()
	h.mu.Lock()
	if h.closing {
		h.mu.Unlock()
		h.gate.RUnlock()
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, ErrClosed
	}
	h.active++
	hs := h.host(key)
	hs.active++
	hs.alt = alt // for any dial, quic-go's redials too
	dialing := len(hs.conns) == 0 || h.singleUse
	h.mu.Unlock()
	h.gate.RUnlock()

	out := req
	if dialing {
		out = req.WithContext(context.WithValue(req.Context(), dialContext{}, dialInfo{key: key, quicOnly: quicOnly, tcpAddr: tcpAddrOf(req.URL), caller: req.Context()}))
	}
	// The response's one allocation also holds what the request needs, and
	// only a request with a body needs more than the response's few words.
	var r *h3Response
	if req.Body != nil && req.Body != http.NoBody {
		// quic-go v0.65.0 closes the body twice when a request fails after
		// its body began: in RoundTripOpt on the error, and when it stops
		// sending. The body may be the caller's, owed exactly one Close.
		rb := &h3ResponseSent{}
		rb.out, rb.reqBody.ReadCloser = *out, req.Body // a shallow copy: req may be the caller's
		out = &rb.out
		out.Body = &rb.reqBody
		r = &rb.h3Response
	} else {
		r = new(h3Response)
	}
	r.h, r.host = h, hs
	if h.headerTimeout > 0 {
		out = r.boundHeader(out, h.headerTimeout)
	}
	var resp *http.Response
	var err error
	if h.singleUse {
		resp, err = h.roundTripOwnConn(out, key, r)
	} else {
		resp, err = h.Transport.RoundTrip(out)
	}
	if r.header != nil && r.header.stop() {
		// Base's ResponseHeaderTimeout ended the request's context.
		if err == nil {
			resp.Body.Close()
		}
		resp, err = nil, errResponseHeaderTimeout
	}
	if err != nil {
		r.finish()
		return nil, err
	}
	resp.Request = req
	r.body = resp.Body
	resp.Body = r
	return resp, nil
}

// roundTripOwnConn sends req over a connection of its own, closed when its
// response is done: Base's DisableKeepAlives.
func (h *http3Transport) roundTripOwnConn(req *http.Request, key string, r *h3Response) (*http.Response, error) {
	tlsCfg := h.TLSClientConfig.Clone()
	if tlsCfg.ServerName == "" {
		tlsCfg.ServerName, _, _ = net.SplitHostPort(key)
	}
	tlsCfg.NextProtos = []string{http3.NextProtoH3}
	c, err := h.dialConn(req.Context(), key, tlsCfg, h.QUICConfig)
	if err == nil {
		r.own = c
		var resp *http.Response
		if resp, err = h.NewClientConn(c.conn).RoundTrip(req); err == nil {
			return resp, nil
		}
	}
	if req.Body != nil {
		req.Body.Close() // as http3.Transport does on an error
	}
	return nil, err
}

// host returns the state of key, made if missing. mu must be held.
func (h *http3Transport) host(key string) *h3Host {
	hs := h.hosts[key]
	if hs == nil {
		hs = &h3Host{key: key}
		h.hosts[key] = hs
	}
	return hs
}

// requestDone is called once per request: when its response is read to
// its end or closed, or when it failed.
func (h *http3Transport) requestDone(hs *h3Host) {
	h.mu.Lock()
	h.active--
	hs.active--
	if hs.active == 0 {
		h.becameIdle(hs)
	}
	last := h.closing && h.active == 0
	h.mu.Unlock()
	if last {
		h.shutdown()
	}
}

// becameIdle starts the idle timer of hs, or forgets hs when it has no
// connection left. mu must be held.
func (h *http3Transport) becameIdle(hs *h3Host) {
	if len(hs.conns) == 0 {
		h.forgetHost(hs)
		return
	}
	hs.idleSince = time.Now()
	if hs.idleArmed {
		return // hostIdle waits from idleSince when it fires
	}
	hs.idleArmed = true
	if hs.idle == nil {
		hs.idle = time.AfterFunc(h.idleTimeout, func() { h.hostIdle(hs) })
	} else {
		hs.idle.Reset(h.idleTimeout)
	}
}

// forgetHost drops hs when nothing uses it. mu must be held.
func (h *http3Transport) forgetHost(hs *h3Host) {
	if hs.active > 0 || len(hs.conns) > 0 {
		return
	}
	if hs.idle != nil {
		hs.idle.Stop()
		hs.idleArmed = false
	}
	if h.hosts[hs.key] == hs {
		delete(h.hosts, hs.key)
	}
}

// hostIdle closes the connections of hs when it has been unused for
// idleTimeout.
func (h *http3Transport) hostIdle(hs *h3Host) {
	h.gate.Lock()
	h.mu.Lock()
	if hs.active > 0 || len(hs.conns) == 0 {
		hs.idleArmed = false // becameIdle arms it again
		h.mu.Unlock()
		h.gate.Unlock()
		return
	}
	if wait := h.idleTimeout - time.Since(hs.idleSince); wait > 0 || (h.keyless && h.active > 0) {
		// Used again since; or requests are not known by host, so wait
		// for the whole transport to be idle.
		if wait <= 0 {
			wait = h.idleTimeout
		}
		hs.idle.Reset(wait)
		h.mu.Unlock()
		h.gate.Unlock()
		return
	}
	hs.idleArmed = false
	victims := slices.Clone(hs.conns)
	h.mu.Unlock()
	h.closeConns(victims)
	h.gate.Unlock()
	h.releaseSocket()
}

// CloseIdleConnections closes the connections of every host no response
// is being read from. When there is none at all, it also empties quic-go's
// pool, stops the dials whose requests have gone, and closes the socket.
func (h *http3Transport) CloseIdleConnections() {
	h.gate.Lock()
	h.mu.Lock()
	all := h.active == 0
	var victims []*h3Conn
	for _, hs := range h.hosts {
		if hs.active == 0 && (all || !h.keyless) {
			victims = append(victims, hs.conns...)
		}
	}
	h.mu.Unlock()
	h.closeConns(victims)
	if all {
		// No request is counted and none starts before the gate opens, so
		// every pooled connection is idle and every dial has lost its
		// request. This also empties quic-go's pool of the dead ones.
		h.Transport.CloseIdleConnections()
	}
	h.gate.Unlock()
	h.releaseSocket()
}

// closeConns closes cs, telling the server (CONNECTION_CLOSE). Those that
// had not closed already are forgotten at once, not by their callback.
func (h *http3Transport) closeConns(cs []*h3Conn) {
	for _, c := range cs {
		mine := c.stop()
		c.conn.CloseWithError(0, "")
		if mine {
			h.mu.Lock()
			h.forgetConn(c)
			h.mu.Unlock()
		}
	}
}

// forgetConn drops a closed connection. mu must be held.
func (h *http3Transport) forgetConn(c *h3Conn) {
	h.conns--
	hs := c.host
	if i := slices.Index(hs.conns, c); i >= 0 {
		hs.conns = slices.Delete(hs.conns, i, i+1)
	}
	h.forgetHost(hs)
}

// releaseSocket closes the socket when no connection lives on it and no
// dial is under way.
func (h *http3Transport) releaseSocket() {
	h.mu.Lock()
	sock := h.sock
	if sock == nil || h.conns > 0 || h.dials > 0 {
		h.mu.Unlock()
		return
	}
	h.sock = nil
	h.mu.Unlock()
	closeSocket(sock)
}

func closeSocket(sock *quic.Transport) error {
	return errors.Join(sock.Close(), sock.Conn.Close())
}

// Close shuts down now if no response is being read, otherwise when the
// last one is done: the connections, then the QUIC transport and socket.
func (h *http3Transport) Close() error {
	h.mu.Lock()
	h.closing = true
	idle := h.active == 0
	h.mu.Unlock()
	if !idle {
		return nil
	}
	return h.shutdown()
}

func (h *http3Transport) shutdown() error {
	err := h.Transport.Close() // closes the pooled connections, stops their dials
	h.mu.Lock()
	var victims []*h3Conn
	for _, hs := range h.hosts {
		victims = append(victims, hs.conns...)
		if hs.idle != nil {
			hs.idle.Stop()
		}
	}
	h.mu.Unlock()
	h.closeConns(victims) // those quic-go no longer pooled
	h.mu.Lock()
	sock := h.sock
	h.sock = nil
	h.mu.Unlock()
	if sock != nil {
		err = errors.Join(err, closeSocket(sock))
	}
	return err
}

// dial is http3.Transport's Dial.
func (h *http3Transport) dial(ctx context.Context, addr string, tlsCfg *tls.Config, cfg *quic.Config) (*quic.Conn, error) {
	c, err := h.dialConn(ctx, addr, tlsCfg, cfg)
	if err != nil {
		return nil, err
	}
	return c.conn, nil
}

// dialConn dials addr on the socket and keeps count of the connection
// until it closes. Its errors carry the connectError mark.
func (h *http3Transport) dialConn(ctx context.Context, addr string, tlsCfg *tls.Config, cfg *quic.Config) (*h3Conn, error) {
	h.tried.Add(1)
	sock, err := h.socket()
	if err != nil {
		return nil, &connectError{err}
	}
	var conn *quic.Conn
	info, noted := ctx.Value(dialContext{}).(dialInfo)
	to := addr
	h.mu.Lock()
	if hs := h.hosts[addr]; hs != nil && hs.alt != "" {
		to = hs.alt
	}
	h.mu.Unlock()
	udpAddr, err := resolveUDP(ctx, to)
	if err == nil {
		// Dial, not DialEarly: the handshake must be over before a request
		// leaves, so that its failure is known to come first, and a TCP
		// connection can win the race before anything was sent.
		conn, err = h.dialRacing(ctx, info, addr, func(ctx context.Context) (*quic.Conn, error) {
			return sock.Dial(ctx, udpAddr, tlsCfg, cfg)
		})
	}
	h.mu.Lock()
	h.dials--
	if err != nil {
		h.mu.Unlock()
		h.releaseSocket()
		return nil, &connectError{err}
	}
	h.dialed.Add(1)
	if noted && info.key != addr {
		h.keyless = true
	}
	hs := h.host(addr)
	c := &h3Conn{conn: conn, host: hs}
	hs.conns = append(hs.conns, c)
	h.conns++
	c.stop = context.AfterFunc(conn.Context(), func() {
		h.mu.Lock()
		h.forgetConn(c)
		h.mu.Unlock()
		h.releaseSocket()
	})
	if hs.active == 0 {
		h.becameIdle(hs) // its request has gone
	}
	h.mu.Unlock()
	return c, nil
}

// socket returns the UDP socket, made if missing, and counts a dial on it.
func (h *http3Transport) socket() (*quic.Transport, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closing && h.active == 0 {
		return nil, ErrClosed
	}
	if h.sock == nil {
		udp, err := net.ListenUDP("udp", nil)
		if err != nil {
			return nil, err
		}
		h.sock = &quic.Transport{Conn: udp}
	}
	h.dials++
	return h.sock, nil
}

// poolKey is the key http3.Transport pools a request's connection under,
// and the address it dials: the URL's host, port 443 by default, as
// quic-go's authorityAddr (v0.65.0) makes it. dialConn checks that the two
// agree.
func poolKey(u *url.URL) string {
	if host, _, err := net.SplitHostPort(u.Host); err == nil && isASCII(host) && !strings.HasPrefix(u.Host, "[") {
		return u.Host // what the steps below would make again, at a cost
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil {
		host, port = u.Host, "443"
	}
	if a, err := idna.ToASCII(host); err == nil {
		host = a
	}
	if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		return host + ":" + port
	}
	return net.JoinHostPort(host, port)
}

// tcpAddrOf is the address net/http dials for u (its canonicalAddr): the
// host in IDNA's lookup form, lower-cased, and port 443 when none is given.
// quic-go's pool key keeps the case of a Unicode host, and an empty port.
func tcpAddrOf(u *url.URL) string {
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = "443"
	}
	if !isASCII(host) {
		if a, err := idna.Lookup.ToASCII(host); err == nil {
			host = a
		}
	}
	return net.JoinHostPort(host, port)
}

// h3Response is a response body that tells its transport when the
// request is done, exactly once: when a Read returns an error or io.EOF (a
// body read to its end and never closed, typical of HEAD, must not keep
// its connection or Close waiting), when it is closed, or when the request
// failed.
type h3Response struct {
	body   io.ReadCloser
	h      *http3Transport
	host   *h3Host
	own    *h3Conn      // the request's own connection (singleUse), closed when done
	header *headerTimer // Base's ResponseHeaderTimeout, if set
	done   atomic.Bool
}

// h3ResponseSent is an h3Response that also holds the request as sent,
// when it has a body.
type h3ResponseSent struct {
	h3Response
	out     http.Request  // the request as sent
	reqBody closeOnceBody // its body, closed once
}

func (r *h3Response) Read(p []byte) (int, error) {
	n, err := r.body.Read(p)
	if err != nil {
		r.finish()
	}
	return n, err
}

func (r *h3Response) Close() error {
	err := r.body.Close()
	r.finish()
	return err
}

func (r *h3Response) finish() {
	if !r.done.CompareAndSwap(false, true) {
		return
	}
	if r.header != nil {
		r.header.cancel(nil)
	}
	if r.own != nil {
		r.h.closeConns([]*h3Conn{r.own})
		defer r.h.releaseSocket()
	}
	r.h.requestDone(r.host)
}

// errResponseHeaderTimeout is net/http's error for ResponseHeaderTimeout.
var errResponseHeaderTimeout error = &timeoutError{"net/http: timeout awaiting response headers"}

type timeoutError struct{ msg string }

func (e *timeoutError) Error() string   { return e.msg }
func (e *timeoutError) Timeout() bool   { return true }
func (e *timeoutError) Temporary() bool { return true }

// boundHeader returns req with a context that ends when no response header
// came within d of the request being written, as net/http counts
// ResponseHeaderTimeout. The context ends at the latest when r is done.
func (r *h3Response) boundHeader(req *http.Request, d time.Duration) *http.Request {
	ctx, cancel := context.WithCancelCause(req.Context())
	r.header = &headerTimer{d: d, cancel: cancel}
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{WroteRequest: r.header.wrote})
	return req.WithContext(ctx)
}

// headerTimer is ResponseHeaderTimeout for one request.
type headerTimer struct {
	d      time.Duration
	cancel context.CancelCauseFunc

	mu    sync.Mutex // guards the fields below
	timer *time.Timer
	over  bool // the response header came or the request failed: start no timer
	fired bool
}

// wrote starts the timer once the request is written (quic-go's WroteRequest).
func (ht *headerTimer) wrote(info httptrace.WroteRequestInfo) {
	if info.Err != nil {
		return
	}
	ht.mu.Lock()
	defer ht.mu.Unlock()
	if ht.over || ht.timer != nil {
		return
	}
	ht.timer = time.AfterFunc(ht.d, ht.fire)
}

func (ht *headerTimer) fire() {
	ht.mu.Lock()
	if ht.over {
		ht.mu.Unlock()
		return
	}
	ht.over, ht.fired = true, true
	ht.mu.Unlock()
	ht.cancel(errResponseHeaderTimeout)
}

// stop ends the timer and reports whether it fired first.
func (ht *headerTimer) stop() bool {
	ht.mu.Lock()
	defer ht.mu.Unlock()
	ht.over = true
	if ht.timer != nil {
		ht.timer.Stop()
	}
	return ht.fired
}

// closeOnceBody passes on the first Close only.
type closeOnceBody struct {
	io.ReadCloser
	once sync.Once
	err  error
}

func (b *closeOnceBody) Close() error {
	b.once.Do(func() { b.err = b.ReadCloser.Close() })
	return b.err
}

func resolveUDP(ctx context.Context, addr string) (*net.UDPAddr, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	portNum, err := net.DefaultResolver.LookupPort(ctx, "udp", port)
	if err != nil {
		return nil, err
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(portNum))), nil
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, err
	}
	return net.UDPAddrFromAddrPort(netip.AddrPortFrom(ips[0].Unmap(), uint16(portNum))), nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
