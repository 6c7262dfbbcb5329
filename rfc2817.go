package upgrade

// RFC 2817 in-band TLS. An http:// origin that answers 426 with
// "Upgrade: TLS/1.2,TLS/1.1,TLS/1.0" (CUPS, IPP printers) wants the same
// port switched to TLS: the client sends "OPTIONS *" asking for TLS, the
// server answers 101 Switching Protocols, the TLS handshake runs on that
// socket, and the server answers the OPTIONS inside TLS (§3.3). Only then
// does the connection carry the request.
//
// In-band upgrades are a known desynchronisation target: Apache removed its
// server side in 2.4.64 for CVE-2025-49812, where bytes injected in clear
// after the 101 were taken as coming from inside TLS. Here nothing read in
// clear is ever handed to TLS or to HTTP: a byte after the 101, a 101 with
// a body, or a response nobody asked for is an error.

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"
)

// Why an in-band upgrade failed; wrapped in the attempt's error.
// ErrInbandDesync, the one a caller may want to alert on, is in errors.go.
var (
	// errInbandRefused: the server did not switch the connection to TLS.
	errInbandRefused = errors.New("upgrade: server did not switch to TLS in-band")
	// errInbandOptions: the response to the OPTIONS inside TLS was missing
	// or not a success.
	errInbandOptions = errors.New("upgrade: in-band TLS: no success answer to the OPTIONS inside TLS")
)

// Bounds on what a server may send during an in-band upgrade.
const (
	inbandMaxHeader  = 16 << 10         // the 101's header; the OPTIONS response's header and body
	inbandTimeout    = 10 * time.Second // the upgrade after the TCP dial, when the template has no TLSHandshakeTimeout
	inbandMaxInterim = 4                // 1xx responses tolerated before the OPTIONS response
)

// inbandTokens returns the Upgrade value for the OPTIONS request: the TLS
// tokens among the offered ones, in the server's order, each once, in
// canonical case; just offer when nothing else was offered.
// Old Apache switched only if "TLS/1.0" was named, so the server's own list
// goes back to it. Only known versions are named, so the result takes few
// values.
func inbandTokens(offered []Protocol, offer Protocol) string {
	if len(offered) == 0 {
		offered = []Protocol{offer}
	}
	var tokens []string
	for _, p := range offered {
		if !strings.EqualFold(p.Name, "TLS") {
			continue
		}
		token := "TLS"
		if p.Version != "" {
			if _, ok := tlsVersions[p.Version]; !ok {
				continue
			}
			token += "/" + p.Version
		}
		if !containsString(tokens, token) {
			tokens = append(tokens, token)
		}
	}
	return strings.Join(tokens, ", ")
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// inbandTransport is the inner transport for targetInbandTLS. Requests go
// through its http.Transport as https://, so that its pool keeps the
// upgraded connections apart from any other, the TLS "dial" is the in-band
// upgrade, and resp.TLS is filled in; resp.Request gets the caller's
// http:// request back.
type inbandTransport struct {
	tr *http.Transport
}

// inbandRequestKey carries, from RoundTrip to the dial, what only the
// request knows: http.Transport dials with the request's values but
// without its cancellation.
type inbandRequestKey struct{}

type inbandRequest struct {
	ctx     context.Context // the request's, to stop the upgrade when it ends
	host    string          // the Host the request asked for
	upgrade string          // the Upgrade value of the OPTIONS
}

// inbandUpgradeKey carries the Upgrade value a request's in-band switch
// asks for, from the candidate it is sent for. It is not part of the
// inner transport's identity: a connection switched with one spelling of
// the server's offer serves requests that met another.
type inbandUpgradeKey struct{}

func withInbandUpgrade(req *http.Request, upgrade string) *http.Request {
	return req.WithContext(context.WithValue(req.Context(), inbandUpgradeKey{}, upgrade))
}

// newInband builds the transport for tgt from the template: its dialer and
// limits, the TLS settings of tlsConfig, HTTP/1.1 only, no proxy (the
// policy refuses in-band TLS when a proxy applies).
func (t *Transport) newInband(tgt target, open *openConns) *inbandTransport {
	tr := t.template().Clone()
	cfg := t.tlsConfig(tr.TLSClientConfig, tgt.minTLS)
	cfg.NextProtos = []string{"http/1.1"} // the switched connection goes on in HTTP/1.1 (RFC 2817 §3)
	timeout := tr.TLSHandshakeTimeout
	if timeout <= 0 {
		timeout = inbandTimeout
	}
	u := &inbandUpgrader{dial: open.counting(plainDialer(tr)), tls: cfg, timeout: timeout}

	tr.Proxy = nil
	tr.GetProxyConnectHeader = nil
	tr.OnProxyConnectResponse = nil
	tr.DialTLS = nil //lint:ignore SA1019 clearing the deprecated field is the point
	tr.DialTLSContext = u.dialTLS
	tr.TLSClientConfig = cfg
	tr.TLSNextProto = nil
	tr.ForceAttemptHTTP2 = false
	tr.Protocols = new(http.Protocols)
	tr.Protocols.SetHTTP1(true)
	return &inbandTransport{tr: tr}
}

func (it *inbandTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	u := *req.URL
	u.Scheme = "https"
	if u.Port() == "" {
		u.Host = net.JoinHostPort(u.Hostname(), defaultPort(false))
	}
	upgrade, _ := req.Context().Value(inbandUpgradeKey{}).(string)
	if upgrade == "" {
		upgrade = "TLS" // what any server that switches in-band takes
	}
	ctx := context.WithValue(req.Context(), inbandRequestKey{}, &inbandRequest{ctx: req.Context(), host: host, upgrade: upgrade})
	out := req.WithContext(ctx) // a shallow copy: req is the replay's own clone
	out.URL = &u
	out.Host = host

	resp, err := it.tr.RoundTrip(out)
	if err != nil {
		return nil, err
	}
	resp.Request = req
	if resp.StatusCode == http.StatusSwitchingProtocols && !asksUpgrade(req.Header) {
		// Its body would be the raw connection: never take it as data.
		resp.Body.Close()
		return nil, fmt.Errorf("%w: 101 Switching Protocols to a request that did not ask for it", ErrInbandDesync)
	}
	return resp, nil
}

func asksUpgrade(h http.Header) bool {
	return httpguts.HeaderValuesContainsToken(h["Connection"], "upgrade") && len(h["Upgrade"]) > 0
}

func (it *inbandTransport) CloseIdleConnections() { it.tr.CloseIdleConnections() }

// inbandUpgrader makes the connections of an inbandTransport.
type inbandUpgrader struct {
	dial    func(ctx context.Context, network, addr string) (net.Conn, error)
	tls     *tls.Config   // minimum version and ALPN already set
	timeout time.Duration // bounds the upgrade after the TCP dial
}

// dialTLS is the http.Transport's DialTLSContext: a TCP connection to addr,
// switched to TLS in-band. Its errors come before any request was written
// and carry the connectError mark, so the replay moves to the next offer.
func (u *inbandUpgrader) dialTLS(dialCtx context.Context, network, addr string) (net.Conn, error) {
	conn, err := u.dialAndSwitch(dialCtx, network, addr)
	if err != nil {
		return nil, &connectError{err}
	}
	return conn, nil
}

func (u *inbandUpgrader) dialAndSwitch(dialCtx context.Context, network, addr string) (net.Conn, error) {
	info, ok := dialCtx.Value(inbandRequestKey{}).(*inbandRequest)
	if !ok {
		return nil, errors.New("upgrade: in-band TLS dial without its request")
	}
	// The dial is bounded by the request that started it, as every step is.
	ctx, cancel := context.WithCancel(dialCtx)
	defer cancel()
	defer context.AfterFunc(info.ctx, cancel)()

	conn, err := u.dial(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	ctx, cancelUpgrade := context.WithTimeout(ctx, u.timeout)
	defer cancelUpgrade()
	tlsConn, err := u.switchToTLS(ctx, conn, addr, info)
	if err != nil {
		conn.Close()
		var netErr net.Error
		if ctx.Err() != nil || (errors.As(err, &netErr) && netErr.Timeout()) {
			// Say which bound stopped it: the request's, or the upgrade's own.
			stopped := error(context.DeadlineExceeded)
			if info.ctx.Err() != nil {
				stopped = context.Cause(info.ctx)
			}
			err = fmt.Errorf("upgrade: in-band TLS with %s stopped: %w: %w", addr, stopped, err)
		}
		return nil, err
	}
	return tlsConn, nil
}

// switchToTLS runs the upgrade on conn, bounded by ctx.
func (u *inbandUpgrader) switchToTLS(ctx context.Context, conn net.Conn, addr string, info *inbandRequest) (*tls.Conn, error) {
	host := info.host
	if deadline, ok := ctx.Deadline(); ok {
		conn.SetDeadline(deadline)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) }) // interrupt any blocked I/O
	defer stop()
	trace := traceFrom(ctx)

	if !httpguts.ValidHostHeader(host) {
		return nil, fmt.Errorf("upgrade: in-band TLS: invalid Host %q", host)
	}
	request := "OPTIONS * HTTP/1.1\r\nHost: " + host + "\r\nConnection: Upgrade\r\nUpgrade: " + info.upgrade + "\r\n\r\n"
	if _, err := io.WriteString(conn, request); err != nil {
		return nil, err
	}
	if trace.InbandWroteRequest != nil {
		trace.InbandWroteRequest(addr, host, info.upgrade)
	}
	if err := readSwitch(conn, trace); err != nil {
		return nil, err
	}

	cfg := u.tls.Clone()
	if cfg.ServerName == "" {
		cfg.ServerName, _, _ = net.SplitHostPort(addr) // the host asked for
	}
	tlsConn := tls.Client(conn, cfg)
	err := tlsConn.HandshakeContext(ctx)
	if trace.InbandHandshakeDone != nil {
		trace.InbandHandshakeDone(tlsConn.ConnectionState(), err)
	}
	if err != nil {
		return nil, fmt.Errorf("upgrade: in-band TLS handshake: %w", err)
	}
	if err := readOptionsAnswer(tlsConn, trace); err != nil {
		return nil, err
	}
	if !stop() {
		return nil, context.Cause(ctx)
	}
	tlsConn.SetDeadline(time.Time{})
	return tlsConn, nil
}

// readSwitch reads the answer to the OPTIONS in clear and checks that it
// switches to TLS and that nothing follows it: the next bytes must be the
// server's TLS handshake, which it cannot send before our ClientHello.
func readSwitch(conn net.Conn, trace *Trace) error {
	br := bufio.NewReader(&cappedReader{r: conn, left: inbandMaxHeader})
	tp := textproto.NewReader(br)
	line, err := tp.ReadLine()
	if err != nil {
		return fmt.Errorf("%w: reading the answer to OPTIONS: %w", errInbandRefused, err)
	}
	status, err := parseStatusLine(line)
	if err != nil {
		return err
	}
	mime, err := tp.ReadMIMEHeader()
	if err != nil {
		return fmt.Errorf("%w: reading the %d's header: %w", errInbandRefused, status, err)
	}
	header := http.Header(mime)
	if trace.InbandGotResponse != nil {
		trace.InbandGotResponse(status, header)
	}
	if status != http.StatusSwitchingProtocols {
		// Apache ≥ 2.4.64 answers 200: it no longer upgrades in-band.
		return fmt.Errorf("%w: OPTIONS answered %d %s in clear", errInbandRefused, status, http.StatusText(status))
	}
	// A 1xx ends at its header whatever Content-Length or
	// Transfer-Encoding it carries (RFC 9112 §6.3; ippeveprinter sends
	// both): nothing is read as its body. Bytes a server sends as one are
	// caught below, or fail the handshake.
	// Connection may say Upgrade or Keep-Alive (CUPS); the status and the
	// handshake are what count. One that closes cannot switch.
	if httpguts.HeaderValuesContainsToken(header["Connection"], "close") {
		return fmt.Errorf("%w: 101 with Connection: close", errInbandRefused)
	}
	if !namesTLS(header) {
		return fmt.Errorf("%w: 101 whose Upgrade %q does not name TLS", errInbandRefused, header["Upgrade"])
	}
	if n := br.Buffered(); n > 0 {
		return fmt.Errorf("%w: %d bytes in clear after the 101, before the TLS handshake", ErrInbandDesync, n)
	}
	return nil
}

// parseStatusLine parses "HTTP/1.1 101 Switching Protocols". A 101 needs
// HTTP/1.1 or later.
func parseStatusLine(line string) (int, error) {
	proto, rest, _ := strings.Cut(line, " ")
	code, _, _ := strings.Cut(rest, " ")
	major, minor, ok := http.ParseHTTPVersion(proto)
	status, err := strconv.Atoi(code)
	if !ok || major != 1 || minor < 1 || len(code) != 3 || err != nil || status < 100 {
		return 0, fmt.Errorf("%w: malformed status line %q", errInbandRefused, shorten(line))
	}
	return status, nil
}

func namesTLS(h http.Header) bool {
	offered, err := ParseUpgrade(h)
	if err != nil {
		return false
	}
	for _, p := range offered {
		if strings.EqualFold(p.Name, "TLS") {
			return true
		}
	}
	return false
}

// readOptionsAnswer reads the server's response to the OPTIONS inside TLS
// (RFC 2817 §3.3) and checks it is a success that leaves the connection
// open and clean: nothing may follow it before our first request.
func readOptionsAnswer(conn *tls.Conn, trace *Trace) error {
	br := bufio.NewReader(&cappedReader{r: conn, left: inbandMaxHeader})
	options := &http.Request{Method: http.MethodOptions}
	var resp *http.Response
	for interim := 0; ; interim++ {
		var err error
		if resp, err = http.ReadResponse(br, options); err != nil {
			return fmt.Errorf("%w: %w", errInbandOptions, err)
		}
		if resp.StatusCode == http.StatusSwitchingProtocols {
			return fmt.Errorf("%w: a second 101, inside TLS", ErrInbandDesync)
		}
		if resp.StatusCode >= 200 || interim == inbandMaxInterim {
			break
		}
	}
	if trace.InbandGotOptions != nil {
		trace.InbandGotOptions(resp.StatusCode)
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%w: answered %s", errInbandOptions, resp.Status)
	}
	if resp.Close {
		// Connection: close, or a body that ends only with the connection.
		return fmt.Errorf("%w: the server ends the connection after it", errInbandOptions)
	}
	_, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("%w: reading its body: %w", errInbandOptions, err)
	}
	if n := br.Buffered(); n > 0 {
		return fmt.Errorf("%w: %d bytes after the response to the OPTIONS", ErrInbandDesync, n)
	}
	return checkNothingPending(conn)
}

// checkNothingPending reports an error if conn holds decrypted bytes not yet
// read: the rest of a record that carried the OPTIONS response, or records
// that came with it. An expired read deadline makes the check not wait; a
// timeout does not break a tls.Conn.
func checkNothingPending(conn *tls.Conn) error {
	conn.SetReadDeadline(time.Unix(1, 0))
	var probe [1]byte
	n, err := conn.Read(probe[:])
	var netErr net.Error
	switch {
	case n > 0:
		return fmt.Errorf("%w: bytes after the response to the OPTIONS", ErrInbandDesync)
	case errors.As(err, &netErr) && netErr.Timeout():
		return nil // nothing there, as it should be
	default:
		return fmt.Errorf("%w: the connection failed after it: %w", errInbandOptions, err)
	}
}

// cappedReader fails once more than left bytes have been read, without
// shrinking any read: a bufio.Reader over it sees whole TLS records, so
// bytes sent after a response land in its buffer where they can be seen.
type cappedReader struct {
	r    io.Reader
	left int
}

func (c *cappedReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, fmt.Errorf("upgrade: in-band TLS: more than %d bytes of header", inbandMaxHeader)
	}
	n, err := c.r.Read(p)
	c.left -= n
	return n, err
}
