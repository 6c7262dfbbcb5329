// Package upgrade provides an http.RoundTripper that follows 426 Upgrade
// Required responses.
//
// A server answers 426 when it will not serve a request over the protocol it
// came on, and names in its Upgrade header what it would take instead
// (RFC 9110 §15.5.22, §7.8): HTTP/2, h2c, or a newer TLS. [Transport] wraps
// another RoundTripper and passes everything through untouched until such a
// response arrives; then it picks the first offered protocol it can speak
// and may use, and sends the request once more over it.
//
// This goes beyond the plain http.RoundTripper contract, which says a
// RoundTripper does not interpret responses or resend requests. Use it where
// a second, identical request is harmless: a 426 means the server did not
// act on the first one. Do not use it for requests whose body cannot be
// produced again (no GetBody, already sent): those get the 426 back.
//
// It never upgrades on its own initiative and never sends an Upgrade header:
// it reacts only to a 426.
package upgrade

import (
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Transport is an http.RoundTripper that replays a request once over the
// protocol a 426 Upgrade Required response demands. The zero value wraps
// http.DefaultTransport and is ready to use.
//
// A Transport is safe for concurrent use by multiple goroutines. Its fields
// must not change after its first use.
type Transport struct {
	// Base sends every request first. Nil means http.DefaultTransport.
	// When Base is an *http.Transport, upgraded transports are cloned from
	// it and inherit its dialer, proxy, timeouts and TLS settings; a
	// custom TLS dialer (DialTLSContext) is not inherited, since the
	// upgraded handshake has to use the settings below.
	Base http.RoundTripper

	// TLSClientConfig, when set, replaces the TLS settings inherited from
	// Base for upgraded connections (root CAs, client certificates,
	// ServerName). Nil means Base's, or crypto/tls defaults.
	TLSClientConfig *tls.Config

	// MinTLSVersion is the floor for upgraded TLS connections: a "TLS/x.y"
	// offer raises the minimum to x.y but never below this. Zero means
	// TLS 1.2.
	MinTLSVersion uint16

	// CheckUpgrade narrows and orders the usable offers of a 426. Nil
	// means DefaultCheckUpgrade.
	CheckUpgrade CheckUpgradeFunc

	// HTTP3HandshakeTimeout bounds how long setting up a QUIC connection
	// may go without progress before HTTP/3 counts as failed and the next
	// offer is tried, so a network that drops UDP costs little. Zero means
	// 2 s (quic-go's own default, 5 s, is long for a fallback). A request's
	// context that ends sooner stops it sooner.
	HTTP3HandshakeTimeout time.Duration

	// MemoryTTL is how long the protocol an origin demanded is remembered,
	// so that later requests go straight to it. Zero means 24 hours, as
	// Alt-Svc's default.
	MemoryTTL time.Duration

	// MemorySize bounds how many origins are remembered; the least recently
	// used are forgotten first. Zero means 4096; negative turns the memory
	// off, so every request meets its 426 anew.
	MemorySize int

	closed atomic.Bool // set once by Close; read without the lock on every request

	mu    sync.Mutex                   // guards inner, and closed's transition
	inner map[target]http.RoundTripper // one per target, built on first use

	memoryOnce sync.Once
	mem        atomic.Pointer[memory] // nil until something is learned or imported (memory.go)
	innerBuilt atomic.Int32           // inner transports built, for tests

	brokenOnce sync.Once
	broken     *brokenMarks     // offers that failed per origin (fallback.go)
	now        func() time.Time // clock for broken marks; nil means time.Now (tests set it)
}

var _ http.RoundTripper = (*Transport)(nil)

func (t *Transport) base() http.RoundTripper {
	if t.Base != nil {
		return t.Base
	}
	return http.DefaultTransport
}

func (t *Transport) http3HandshakeTimeout() time.Duration {
	if t.HTTP3HandshakeTimeout > 0 {
		return t.HTTP3HandshakeTimeout
	}
	return 2 * time.Second
}

func (t *Transport) floor() uint16 {
	if t.MinTLSVersion != 0 {
		return t.MinTLSVersion
	}
	return tls.VersionTLS12
}

// RoundTrip sends req through Base, or straight over the protocol its
// origin demanded before (see MemoryTTL). A response other than 426 is
// returned as it is. On a 426 whose Upgrade header offers something usable, the 426
// is drained and closed and a clone of req is sent once over the offered
// protocol; the response to that is returned, whatever its status. When
// nothing usable is offered, or the body cannot be sent again, the 426 is
// returned untouched. When every usable offer fails before a response, the
// error is an *UpgradeError.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.closed.Load() {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, ErrClosed
	}
	if o, via, ok := t.recall(req); ok {
		return t.viaMemory(req, o, via)
	}
	return t.viaBase(req)
}

// viaBase sends req through Base and handles a 426.
func (t *Transport) viaBase(req *http.Request) (*http.Response, error) {
	first, held := holdBody(req)
	resp, err := t.base().RoundTrip(first)
	if err != nil || resp.StatusCode != http.StatusUpgradeRequired {
		held.release()
		return resp, err
	}
	return t.upgrade(req, held, resp)
}

// upgrade handles a 426: decide, then drain and replay (DESIGN §1).
func (t *Transport) upgrade(req *http.Request, held *oneShotBody, resp *http.Response) (*http.Response, error) {
	trace := traceFrom(req.Context())
	offered, parseErr := ParseUpgrade(resp.Header)
	trace.got426(Got426Info{Offered: offered, Err: parseErr, Proto: resp.Proto, TLS: tlsVersion(resp)})

	bodies := &replayBody{req: req, current: held}
	origin := originOf(req)
	candidates, skipped, first, reason := t.decide(req, origin, resp, offered, parseErr, bodies)
	if trace.Decided != nil {
		trace.Decided(DecisionInfo{Candidates: offersOf(candidates), Skipped: skipped, Reason: reason})
	}
	if reason != nil {
		bodies.done()
		return resp, nil
	}
	drain426(resp)
	return t.replay(req, origin, bodies, first, candidates, offered, resp, trace)
}

// decide returns the candidates to try and the body for the first attempt,
// or the reason the 426 goes back to the caller untouched.
func (t *Transport) decide(req *http.Request, origin origin, resp *http.Response, offered []Protocol, parseErr error, bodies *replayBody) ([]candidate, []Skipped, io.ReadCloser, error) {
	if parseErr != nil {
		return nil, nil, nil, parseErr
	}
	if alreadyReplayed(req, resp) {
		return nil, nil, nil, ErrAlreadyReplayed
	}
	usable, skipped := t.choose(req, resp, offered)
	usable, skipped = t.dropBroken(origin, usable, skipped)
	candidates, err := t.applyCheck(req, resp, usable)
	if err != nil {
		return nil, skipped, nil, err
	}
	if len(candidates) == 0 {
		return nil, skipped, nil, ErrNoUsableOffer
	}
	first, err := bodies.next()
	if err != nil {
		return nil, skipped, nil, err
	}
	return candidates, skipped, first, nil
}

func offersOf(cs []candidate) []Protocol {
	if len(cs) == 0 {
		return nil
	}
	offers := make([]Protocol, len(cs))
	for i, c := range cs {
		offers[i] = c.offer
	}
	return offers
}

// CloseIdleConnections closes the idle connections of Base and of every
// upgraded transport.
func (t *Transport) CloseIdleConnections() {
	for _, rt := range t.innerTransports() {
		closeIdle(rt)
	}
	closeIdle(t.base())
}

// Close releases every upgraded transport and Base's idle connections.
// Later calls to RoundTrip fail with ErrClosed. Requests already in flight
// finish. Close is idempotent.
func (t *Transport) Close() error {
	t.mu.Lock()
	if t.closed.Swap(true) {
		t.mu.Unlock()
		return nil
	}
	inner := t.inner
	t.inner = nil
	t.mu.Unlock()

	var errs []error
	for _, rt := range inner {
		closeIdle(rt)
		if c, ok := rt.(io.Closer); ok {
			errs = append(errs, c.Close())
		}
	}
	closeIdle(t.base())
	return errors.Join(errs...)
}

func (t *Transport) innerTransports() []http.RoundTripper {
	t.mu.Lock()
	defer t.mu.Unlock()
	rts := make([]http.RoundTripper, 0, len(t.inner))
	for _, rt := range t.inner {
		rts = append(rts, rt)
	}
	return rts
}
