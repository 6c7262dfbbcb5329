package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptrace"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/h426/upgrade"
)

// verbose prints, in the manner of curl -v, what happens to one request:
// each connection and request sent, the 426 and its offers, the decision,
// each replay and what the origin memory did. upgrade.Trace tells the
// upgrade steps; httptrace tells what went on the wire, for the first
// attempt and for replays alike.
type verbose struct {
	mu     sync.Mutex // guards the fields below: httptrace hooks run on transport goroutines
	w      io.Writer  // io.Discard once stopped
	method string     // of the request being sent; -L changes them
	target string     // its request URI
	quic   bool       // the connection the request goes on is QUIC
	sent   bool       // its request line is printed
	seeded string     // the origin --http3 sent straight to HTTP/3, if any
}

func newVerbose(w io.Writer, req *http.Request) *verbose {
	return &verbose{w: w, method: req.Method, target: req.URL.RequestURI()}
}

// context returns ctx with the net/http and the upgrade traces attached.
func (v *verbose) context(ctx context.Context) context.Context {
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GotConn:          v.gotConn,
		WroteHeaderField: v.wroteHeaderField,
	})
	return upgrade.WithTrace(ctx, &upgrade.Trace{
		Got426:              v.got426,
		HandshakeRefused:    v.handshakeRefused,
		AltSvc:              v.altSvc,
		Raced:               v.raced,
		Decided:             v.decided,
		ReplayStart:         v.replayStart,
		ReplayDone:          v.replayDone,
		Learned:             v.learned,
		Remembered:          v.remembered,
		Forgot:              v.forgot,
		InbandWroteRequest:  v.wroteUpgradeRequest,
		InbandGotResponse:   v.gotUpgradeResponse,
		InbandHandshakeDone: v.inbandHandshakeDone,
		InbandGotOptions:    v.gotOptionsResponse,
	})
}

// stop silences the hooks: a transport goroutine must not write once the
// command has returned.
func (v *verbose) stop() {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.w = io.Discard
}

func (v *verbose) printf(format string, args ...any) {
	v.mu.Lock()
	defer v.mu.Unlock()
	fmt.Fprintf(v.w, format+"\n", args...)
}

// gotConn starts an attempt: every request, replays included, gets a
// connection before its header is written.
func (v *verbose) gotConn(info httptrace.GotConnInfo) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.quic, v.sent = isQUIC(info.Conn), false
	how := "connected to"
	if info.Reused {
		how = "reusing connection to"
	}
	fmt.Fprintf(v.w, "* %s %s (%s)\n", how, info.Conn.RemoteAddr(), v.security(info.Conn))
}

// isQUIC reports whether conn is HTTP/3's: quic-go stands a net.Conn over
// a UDP address in for its QUIC connection.
func isQUIC(conn net.Conn) bool {
	addr := conn.RemoteAddr()
	return addr != nil && addr.Network() == "udp"
}

// security names the TLS version and ALPN protocol of conn, if any.
func (v *verbose) security(conn net.Conn) string {
	if v.quic {
		// quic-go's stand-in hides the TLS state, but QUIC is always
		// TLS 1.3 (RFC 9001 §4.2) and the transport offers only h3.
		return "QUIC, TLS 1.3, ALPN h3"
	}
	c, ok := conn.(interface{ ConnectionState() tls.ConnectionState })
	if !ok {
		return "cleartext"
	}
	return stateName(c.ConnectionState())
}

// stateName names the TLS version and ALPN protocol of a connection.
func stateName(state tls.ConnectionState) string {
	if state.NegotiatedProtocol == "" {
		return tls.VersionName(state.Version)
	}
	return tls.VersionName(state.Version) + ", ALPN " + state.NegotiatedProtocol
}

// wroteHeaderField prints the header line by line as it is encoded, before
// it goes on the wire, so it comes before anything the server answers: a
// writer goroutine's WroteHeaders may come after the response. HTTP/2 and
// HTTP/3 send pseudo-header fields first (":method", RFC 9113 §8.3) and
// HTTP/1.1 never does, which tells them apart even in cleartext (h2c).
func (v *verbose) wroteHeaderField(name string, values []string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.sent {
		proto := "HTTP/1.1"
		switch {
		case v.quic:
			proto = "HTTP/3"
		case strings.HasPrefix(name, ":"):
			proto = "HTTP/2"
		}
		fmt.Fprintf(v.w, "> %s %s %s\n", v.method, v.target, proto)
		v.sent = true
	}
	if strings.HasPrefix(name, ":") {
		return
	}
	for _, value := range values {
		fmt.Fprintf(v.w, "> %s: %s\n", name, value)
	}
}

// redirect is called by -L before the request to the next location.
func (v *verbose) redirect(req *http.Request) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.method, v.target = req.Method, req.URL.RequestURI()
	fmt.Fprintf(v.w, "* following the redirect to %s\n", req.URL)
}

func (v *verbose) got426(info upgrade.Got426Info) {
	v.printf("< %s 426 Upgrade Required (%s)", info.Proto, tlsName(info.TLS))
	v.printHeader(info.Header)
	if info.Err != nil {
		v.printf("* bad Upgrade header: %v", info.Err)
		return
	}
	v.printf("* offered: %s", protocolList(info.Offered))
}

func (v *verbose) altSvc(info upgrade.AltSvcInfo) {
	if info.Cleared {
		v.printf("* Alt-Svc: clear; %s forgets %s", info.Origin, info.Protocol)
		return
	}
	at := ""
	if info.Alternative != "" {
		at = " at " + info.Alternative
	}
	v.printf("* Alt-Svc: %s%s for %s, remembered for %v", info.Protocol, at, info.Origin, info.MaxAge)
}

func (v *verbose) raced(info upgrade.RaceInfo) {
	v.printf("* QUIC to %s not up within %v: TCP dialed beside it", info.Addr, info.Delay)
	switch {
	case info.Winner == "":
		v.printf("* neither won after %v: %v", info.Took.Round(time.Millisecond), info.Err)
	case info.Err != nil:
		v.printf("* %s won after %v (QUIC: %v)", info.Winner, info.Took.Round(time.Millisecond), info.Err)
	default:
		v.printf("* %s won after %v", info.Winner, info.Took.Round(time.Millisecond))
	}
}

func (v *verbose) handshakeRefused(info upgrade.HandshakeRefusedInfo) {
	v.printf("* TLS handshake refused: %v", info.Err)
	v.printf("* read as a demand for: %s", protocolList(info.Demand))
}

func (v *verbose) decided(info upgrade.DecisionInfo) {
	for _, s := range info.Skipped {
		v.printf("* skipping %s: %v", s.Protocol, s.Reason)
	}
	if info.Reason != nil {
		v.printf("* not upgrading: %v; the 426 is the answer", info.Reason)
		return
	}
	v.printf("* will try, in order: %s", protocolList(info.Candidates))
}

func (v *verbose) replayStart(p upgrade.Protocol) {
	v.printf("* replaying the request over %s", p)
}

func (v *verbose) replayDone(info upgrade.ReplayDoneInfo) {
	switch {
	case info.Err == nil:
		v.printf("* %s: answered over %s (%s)", info.Protocol, info.Proto, tlsName(info.TLS))
	case info.Fallback:
		v.printf("* %s failed: %v; falling back to the next offer", info.Protocol, info.Err)
	default:
		v.printf("* %s failed: %v; no fallback", info.Protocol, info.Err)
	}
}

// What the origin memory did.

func (v *verbose) remembered(info upgrade.MemoryInfo) {
	if info.Origin == v.seeded {
		v.printf("* --http3: going straight to %s", info.Protocol)
		return
	}
	v.printf("* remembered: %s demanded %s; going straight to it", info.Origin, info.Protocol)
}

func (v *verbose) learned(info upgrade.MemoryInfo) {
	v.printf("* remembering %s for %s", info.Protocol, info.Origin)
}

func (v *verbose) forgot(info upgrade.MemoryInfo) {
	if info.Err != nil {
		v.printf("* forgetting %s for %s: %v", info.Protocol, info.Origin, info.Err)
		return
	}
	v.printf("* forgetting %s for %s: it met a 426", info.Protocol, info.Origin)
}

// The steps of an in-band switch to TLS (RFC 2817) on a new connection.

func (v *verbose) wroteUpgradeRequest(addr, host, upgrade string) {
	v.printf("* asking %s to switch to TLS in-band (RFC 2817)", addr)
	v.printf("> OPTIONS * HTTP/1.1\n> Host: %s\n> Connection: Upgrade\n> Upgrade: %s", host, upgrade)
}

func (v *verbose) gotUpgradeResponse(status int, header http.Header) {
	v.printf("< HTTP/1.1 %d %s (no TLS)", status, http.StatusText(status))
	v.printHeader(header)
}

// printHeader prints a response header in sorted order, as -i does.
func (v *verbose) printHeader(header http.Header) {
	for _, name := range slices.Sorted(maps.Keys(header)) {
		for _, value := range header[name] {
			v.printf("< %s: %s", name, value)
		}
	}
}

func (v *verbose) inbandHandshakeDone(state tls.ConnectionState, err error) {
	if err != nil {
		v.printf("* TLS handshake on the same connection failed: %v", err)
		return
	}
	v.printf("* TLS handshake on the same connection: %s", stateName(state))
}

func (v *verbose) gotOptionsResponse(status int) {
	v.printf("< HTTP/1.1 %d %s to the OPTIONS, inside TLS", status, http.StatusText(status))
}

// final reports the response the caller gets.
func (v *verbose) final(resp *http.Response) {
	v.printf("* final: %s, %s, status %s", resp.Proto, tlsName(tlsVersion(resp)), resp.Status)
}

func tlsVersion(resp *http.Response) uint16 {
	if resp.TLS == nil {
		return 0
	}
	return resp.TLS.Version
}

// tlsName is tls.VersionName, with a word for no TLS at all.
func tlsName(version uint16) string {
	if version == 0 {
		return "no TLS"
	}
	return tls.VersionName(version)
}

func protocolList(ps []upgrade.Protocol) string {
	if len(ps) == 0 {
		return "nothing"
	}
	names := make([]string, len(ps))
	for i, p := range ps {
		names[i] = p.String()
	}
	return strings.Join(names, ", ")
}
