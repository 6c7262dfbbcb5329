// Package upgrade provides an http.RoundTripper that follows 426 Upgrade
// Required responses.
//
// A server answers 426 when it will not serve a request over the protocol it
// came on, and names in its Upgrade header what it would take instead
// (RFC 9110 §15.5.22, §7.8): HTTP/2, h2c, HTTP/3, or a newer TLS. [Transport]
// wraps another RoundTripper and passes everything through untouched until
// such a response arrives; then it picks the first offered protocol it can
// speak and may use, and sends the request once more over it.
//
// This goes beyond the plain http.RoundTripper contract, which says a
// RoundTripper does not interpret responses or resend requests. Use it where
// a second, identical request is harmless: a 426 means the server did not
// act on the first one. Do not use it for requests whose body cannot be
// produced again (no GetBody, already sent): those get the 426 back.
//
// Servers state the same demand in two other places, and the same decision
// applies: a TLS handshake refused with the alert protocol_version or
// no_application_protocol before any byte of the request left, and an
// Alt-Svc header advertising HTTP/3 on any response. Beyond those it never
// upgrades on its own initiative, and it never sends an Upgrade header but
// the one RFC 2817's in-band TLS asks for after a 426 demanded it.
//
// Base must be the *http.Transport itself, so that upgraded connections
// inherit its roots, proxy and dialer: put middleware (tracing, auth,
// retries) outside the Transport, where it sees every request, replays
// included.
package upgrade

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
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
	// Upgraded transports are cloned from it and inherit its dialer, proxy,
	// timeouts and TLS settings; over TCP, its own TLS dialer
	// (DialTLSContext) too, and a connection it makes must then meet the
	// demand (TLS version, ALPN h2). So Base must be an *http.Transport for anything to be
	// upgraded: put middleware (tracing, auth, retries) outside this
	// Transport, where it sees every request, replays included. Any other
	// Base gets ErrBaseNotTransport on a 426 it would follow, unless
	// Template is set.
	Base http.RoundTripper

	// Template, when set, is the transport upgraded ones are cloned from
	// instead of Base, for a Base that is not an *http.Transport, such as a
	// test's recording or fault-injecting wrapper. Setting it accepts that
	// replays and remembered requests do not go through Base. Nil means
	// Base.
	Template *http.Transport

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

	// DirectHTTP3 lets HTTP/3 be chosen when Base dials through a
	// DialContext or Dial of its own (a SOCKS or VPN dialer, an SSRF
	// guard, a custom resolver): QUIC cannot go through it, so HTTP/3 then
	// opens its own UDP socket and resolves the host with
	// net.DefaultResolver, around that dialer. False means HTTP/3 is not
	// chosen for such a Base (ErrOwnDialer), as it is not when a proxy
	// applies.
	DirectHTTP3 bool

	// HTTP3HandshakeTimeout bounds how long setting up a QUIC connection
	// may go without progress before HTTP/3 counts as failed and the next
	// offer is tried, so a network that drops UDP costs little. Zero means
	// 2 s (quic-go's own default, 5 s, is long for a fallback). A request's
	// context that ends sooner stops it sooner.
	HTTP3HandshakeTimeout time.Duration

	// IgnoreAltSvc turns off following Alt-Svc (RFC 7838): when false, an
	// HTTP/3 alternative a response over TLS advertises on the same host
	// and port is remembered for the origin, for its max-age, and later
	// requests that open a new connection go over HTTP/3.
	IgnoreAltSvc bool

	// HTTP3FallbackDelay is how long a new QUIC connection's handshake goes
	// alone when a TCP protocol stands behind HTTP/3 (a later offer of the
	// 426, or Base for a remembered route). Then that protocol's TCP
	// connection is dialed beside it, and the first connection up carries
	// the request, which is sent once, over it alone; if TCP was first,
	// HTTP/3 is marked broken for the address. So a network that drops UDP
	// costs about this, not HTTP3HandshakeTimeout, and a handshake a little
	// slower than this still wins when TCP is slower yet. Zero means 300 ms
	// (Chromium and curl start their TCP contender after a few hundred
	// milliseconds); negative means no race: QUIC has
	// HTTP3HandshakeTimeout, and TCP goes only after it failed.
	HTTP3FallbackDelay time.Duration

	// MemoryTTL is how long the protocol an origin demanded is remembered,
	// so that later requests go straight to it. Zero means 24 hours, as
	// Alt-Svc's default.
	MemoryTTL time.Duration

	// MemorySize bounds how many origins are remembered; the least recently
	// used are forgotten first. Zero means 4096; negative turns the memory
	// off, so every request meets its 426 anew.
	MemorySize int

	closed atomic.Bool // set once by Close; read on every request

	inner  innerSet    // one transport per target (inner.go)
	broken brokenMarks // offers that failed lately, per origin (broken.go)

	altSvcRefused atomic.Pointer[refusedAltSvc] // the last advertisement a broken mark refused (altsvc.go)

	memoryOnce sync.Once
	mem        atomic.Pointer[memory] // nil until something is learned or imported (memory.go)

	now    func() time.Time // the clock; nil means time.Now (tests set it)
	coarse coarseClock      // the time for checks on every request (clock.go)
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

// http3FallbackDelay is HTTP3FallbackDelay's value; 0 means none.
func (t *Transport) http3FallbackDelay() time.Duration {
	switch {
	case t.HTTP3FallbackDelay < 0:
		return 0
	case t.HTTP3FallbackDelay == 0:
		return 300 * time.Millisecond
	}
	return t.HTTP3FallbackDelay
}

func (t *Transport) floor() uint16 {
	if t.MinTLSVersion != 0 {
		return t.MinTLSVersion
	}
	return tls.VersionTLS12
}

// transportRequest is one call of RoundTrip, carried through every step
// below.
type transportRequest struct {
	req    *http.Request // the caller's; never modified
	trace  *Trace        // set by the first step that reports: a pass-through never looks
	bodies replayBody    // hands out the body for each attempt
	origin origin        // set by the first step that needs it

	// Set once a 426 is being handled.
	resp426 *http.Response
	offered []Protocol // its Upgrade header, parsed once
	// outgrown is the remembered protocol the 426 came over, if it did:
	// the origin demands more than it once did, on some path at least.
	outgrown  *candidate
	askedBase bool  // the request went through Base after the outgrown route's 426
	refusal   error // Base's refused TLS handshake, when it stands for the 426

	// remembered is set when the response came over the protocol
	// remembered for the origin: an Alt-Svc on it has nothing to teach.
	remembered bool
}

// RoundTrip sends req through Base, or straight over the protocol its
// origin demanded before (see MemoryTTL). A response other than 426 is
// returned as it is. On a 426 whose Upgrade header offers something usable,
// the 426 is drained and closed and a clone of req is sent once over the
// offered protocol; the response to that is returned, whatever its status.
// When nothing usable is offered, or the body cannot be sent again, the 426
// is returned untouched. When every usable offer fails before a response,
// the error is an *UpgradeError.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	switch {
	case req == nil:
		return nil, errNilRequest
	case t.closed.Load():
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, ErrClosed
	case req.URL == nil:
		return t.base().RoundTrip(req) // which says what is wrong, as it would alone
	}
	r := &transportRequest{req: req, bodies: replayBody{req: req}}
	resp, err := t.send(r)
	return t.answer(r, resp, err)
}

// answer is RoundTrip's answer once send has one: the response as it is,
// or a 426, in HTTP or in TLS, followed. Kept out of RoundTrip, so that
// the frames below it while a request is out stay small: a goroutine's
// first request through the Transport should not have to grow its stack.
//
//go:noinline
func (t *Transport) answer(r *transportRequest, resp *http.Response, err error) (*http.Response, error) {
	req := r.req
	if err == nil && resp == nil {
		err = errNilResponse // as http.Client would say
	}
	if err != nil && req.URL.Scheme == "https" && !answeredInside(err) {
		if demand := handshakeDemand(err, t.template()); demand != nil {
			// A refused handshake that states a demand is a 426 in
			// another layer (refusal.go).
			r.refusal = err
			return t.upgrade(r, demandResponse(req, protocolNames(demand)))
		}
	}
	if err != nil || resp.StatusCode != http.StatusUpgradeRequired {
		r.bodies.done()
		if err == nil && resp.TLS != nil && resp.ProtoMajor < 3 && !r.remembered {
			t.learnAltSvc(r, resp) // altsvc.go
		}
		return resp, err
	}
	return t.upgrade(r, resp)
}

var (
	errNilRequest  = errors.New("upgrade: nil Request")
	errNilResponse = errors.New("upgrade: RoundTripper returned a nil *Response with a nil error")
)

// send sends the request over the protocol remembered for its origin, or
// through Base. A remembered protocol that fails before a connection is
// forgotten and the request goes through Base, if its body allows; or,
// when HTTP/3 lost the race to a TCP connection, over that connection.
func (t *Transport) send(r *transportRequest) (*http.Response, error) {
	m := t.mem.Load()
	if m == nil || m.empty() {
		return t.base().RoundTrip(r.bodies.first()) // nothing remembered: one load
	}
	var resp *http.Response
	var err error
	via, inner := t.express(r, m)
	if via != nil {
		resp, err = inner.roundTrip(r.req, via) // as it is: express found nothing to change
	} else if via, inner = t.recall(r, m); via != nil {
		resp, err = t.sendRemembered(r, via, inner)
	} else {
		return t.base().RoundTrip(r.bodies.first())
	}
	return t.overRemembered(r, via, resp, err)
}

// overRemembered is what follows a request over via, the route remembered
// for its origin: the response, or Base's after a failure before any
// connection. Kept out of send for the frames' sake, as answer is.
//
//go:noinline
func (t *Transport) overRemembered(r *transportRequest, via *candidate, resp *http.Response, err error) (*http.Response, error) {
	if err != nil || t.broken.any() { // a response with nothing marked has nothing to clear
		t.noteOutcome(r, via.target, err)
	}
	switch {
	case err == nil && resp.StatusCode == http.StatusUpgradeRequired:
		t.forget(r, via, nil)
		outgrown := *via // a copy: the slot may go
		r.outgrown = &outgrown
		return resp, nil
	case err == nil:
		r.remembered = true
		return resp, nil
	case !beforeConnection(err) || r.req.Context().Err() != nil:
		return nil, err
	}
	t.forget(r, via, err)
	if via.target.kind == targetInbandTLS {
		// Base would send it in clear, where the server demanded TLS and
		// the switch failed, perhaps at an attacker's hands.
		return nil, err
	}
	again, ok := r.bodies.again()
	if !ok {
		return nil, err
	}
	if tcpIsUp(err) {
		// HTTP/3 lost its race: the TCP connection that won waits in
		// asBase's transport, which Base's own dialer would not take.
		return t.sendOver(again, &candidate{target: asBase})
	}
	return t.base().RoundTrip(again)
}

// sendRemembered sends the request over via, the route recall found for
// it, asking what express did not need to.
func (t *Transport) sendRemembered(r *transportRequest, via *candidate, inner *innerTransport) (*http.Response, error) {
	traceRemembered(r, via)
	out := r.bodies.first()
	if via.target.multiplexed() && hasHopByHop(out.Header) {
		out = withoutHopByHop(out, r.req)
	}
	if inner != nil {
		return t.sendThrough(inner, out, via)
	}
	return t.sendOver(out, via)
}

// express returns the route remembered for the request, and its inner
// transport, when every question recall and sendRemembered ask of a
// request has its common answer, without asking them one by one: the
// origin is the one learned last, named by the request in canonical form
// and with no other Host; its route is unexpired and plain (memorySlot's
// express); nothing is marked broken; the body, if any, can be made again;
// and the header neither asks for HTTP/1.1 nor holds what HTTP/2 and
// HTTP/3 forbid. Otherwise it returns nil, and recall asks. So the
// requests a client sends to the origin it talks to cost about what
// passing through does.
func (t *Transport) express(r *transportRequest, m *memory) (*candidate, *innerTransport) {
	slot := m.last.Load()
	if slot == nil {
		return nil, nil
	}
	inner := slot.express.Load()
	req := r.req
	if inner == nil || slot.origin.host != req.URL.Host || slot.origin.vhost != "" ||
		(req.Host != "" && req.Host != req.URL.Host) || slot.origin.secure != (req.URL.Scheme == "https") ||
		t.broken.any() || t.closed.Load() ||
		(hasBody(req) && req.GetBody == nil) || needsHTTP1(req) ||
		(slot.via.target.multiplexed() && hasHopByHop(req.Header)) ||
		!t.recent().Before(slot.expires) {
		return nil, nil
	}
	m.touch(slot)
	r.origin = slot.origin
	traceRemembered(r, &slot.via)
	return &slot.via, inner
}

// traceRemembered finds the request's trace and tells it that the request
// goes over via, remembered for its origin.
func traceRemembered(r *transportRequest, via *candidate) {
	r.trace = traceFrom(r.req.Context())
	if r.trace.Remembered != nil {
		r.trace.Remembered(MemoryInfo{Origin: r.origin.String(), Protocol: via.offer})
	}
}

// withoutHopByHop returns a copy of out without the headers of one HTTP/1.1
// connection, for HTTP/2 and HTTP/3. Kept out of send: few requests carry
// them.
//
//go:noinline
func withoutHopByHop(out, caller *http.Request) *http.Request {
	out = out.Clone(out.Context())
	out.Trailer = caller.Trailer // the caller's body may fill it in as it is read
	removeHopByHop(out.Header)
	return out
}

// recall returns the protocol remembered for the request's origin when the
// request may go over it, and CheckUpgrade, if set, still allows it; with
// it, the inner transport to send it through, if already known. m is the
// memory, with something in it.
//
// The candidate is the memory's own, not a copy: a remembered request
// reads a few words of it, and copying it through every frame would cost
// stack. Nothing writes it.
func (t *Transport) recall(r *transportRequest, m *memory) (*candidate, *innerTransport) {
	r.origin = originOf(r.req)
	slot := m.lookup(r.origin, t.recent())
	if slot == nil {
		return nil, nil
	}
	via := &slot.via
	inner := slot.inner.Load()
	needsHTTP1 := needsHTTP1(r.req)
	if inner == nil || needsHTTP1 {
		// What depends on the Transport's settings alone, decided again
		// until the slot knows its inner transport.
		var ok bool
		if via, inner, ok = t.settle(slot, needsHTTP1); !ok {
			return nil, nil
		}
	}
	if via.target.directRoute() && t.proxied(r.req) {
		return nil, nil // refuseRoute's ErrProxied
	}
	if t.broken.any() && t.broken.isBroken(brokenKeyOf(r.origin, via.target), t.recent()) {
		// What broke is the path to the address: another virtual host
		// behind it, or an imported route, does not try it again.
		return nil, nil
	}
	if t.CheckUpgrade != nil && !t.stillAllowed(r.req, via) {
		return nil, nil
	}
	if inner != nil && t.closed.Load() {
		// Close ran since RoundTrip looked: the slot's inner transport is
		// closed, and sendOver, finding none, says ErrClosed.
		inner = nil
	}
	return via, inner
}

// settle is recall's decision for a slot whose inner transport is not
// known, or a request that needs HTTP/1.1: whether the Transport's settings
// allow the slot's route for such a request, and the candidate fitted to it.
// For a request that does not need HTTP/1.1 and a built inner transport,
// the slot keeps it: the settings do not change after first use. Kept out
// of recall, which every remembered request runs.
//
//go:noinline
func (t *Transport) settle(slot *memorySlot, needsHTTP1 bool) (*candidate, *innerTransport, bool) {
	if t.template() == nil {
		return nil, nil, false
	}
	via := &slot.via
	route := situation{needsHTTP1: needsHTTP1}
	route.ownDialer = via.target.ownSocket() && t.ownDialer() // asked only where it matters
	if tgt := forRequest(via.target, needsHTTP1); tgt != via.target {
		fitted := *via
		fitted.target = tgt
		via = &fitted
	}
	if refuseRoute(via.target, route) != nil { // proxied is recall's to ask, per request
		return nil, nil, false
	}
	if via != &slot.via {
		return via, nil, true // fitted to this request alone
	}
	inner := t.inner.find(via.target)
	if inner != nil && !needsHTTP1 {
		if t.CheckUpgrade == nil && via.upgrade == "" && !t.proxiedOrigin(slot.origin) {
			slot.express.Store(inner)
		}
		slot.inner.Store(inner)
	}
	return via, inner, true
}

// stillAllowed asks CheckUpgrade whether it allows via for req: what the
// hook would veto after a 426 it vetoes before one, so the memory never
// changes an answer. Kept out of recall, and out of its stack frame: the
// 426 it builds would triple the frame of every remembered request, and a
// fresh goroutine's first request would grow its stack for it.
//
//go:noinline
func (t *Transport) stillAllowed(req *http.Request, via *candidate) bool {
	order, err := t.CheckUpgrade(req, demandResponse(req, via.demands()), []Protocol{via.offer})
	return err == nil && len(picked([]candidate{*via}, order)) > 0
}

// upgrade handles a 426: it decides what to try and, if anything, drains
// the 426 and replays the request.
func (t *Transport) upgrade(r *transportRequest, resp *http.Response) (*http.Response, error) {
	if resp.Body == nil {
		resp.Body = http.NoBody // net/http tolerates it from a RoundTripper; so does this
	}
	r.resp426 = resp
	r.origin = originOf(r.req)
	if r.trace == nil {
		r.trace = traceFrom(r.req.Context())
	}
	offered, parseErr := ParseUpgrade(resp.Header)
	r.offered = offered
	switch {
	case r.refusal != nil:
		if r.trace.HandshakeRefused != nil {
			r.trace.HandshakeRefused(HandshakeRefusedInfo{Err: r.refusal, Demand: offered})
		}
	case r.trace.Got426 != nil:
		r.trace.Got426(Got426Info{Offered: offered, Err: parseErr, Proto: resp.Proto, TLS: tlsVersion(resp), Header: resp.Header})
	}
	candidates, skipped, reason := t.decide(r, parseErr)
	if reason == nil && r.outgrown != nil {
		// HAProxy may demand HTTP/2 at / and TLS 1.3 at /tls13only:
		// remembered alone, each route would meet the other's 426 in turn.
		for i := range candidates {
			candidates[i] = combine(*r.outgrown, candidates[i])
		}
	}
	var first io.ReadCloser
	if reason == nil {
		first, reason = r.bodies.next()
	}
	if reason != nil {
		candidates = nil
	}
	if r.trace.Decided != nil {
		r.trace.Decided(DecisionInfo{Candidates: offersOf(candidates), Skipped: skipped, Reason: reason})
	}
	if errors.Is(reason, ErrBaseNotTransport) {
		r.bodies.done()
		resp.Body.Close()
		return nil, reason
	}
	if errors.Is(reason, ErrNoUsableOffer) && r.outgrown != nil && !r.askedBase {
		// The remembered protocol met a demand it cannot state (HTTP/2
		// carries no Upgrade header): ask Base, as a fresh Transport would.
		if again, ok := r.bodies.again(); ok {
			drain426(resp)
			resp.Body.Close()
			r.askedBase = true
			resp, err := t.base().RoundTrip(again)
			if err != nil || resp.StatusCode != http.StatusUpgradeRequired {
				r.bodies.done()
				return resp, err
			}
			return t.upgrade(r, resp)
		}
	}
	if reason != nil {
		r.bodies.done()
		if r.refusal != nil {
			return nil, r.refusal // Base's own answer: there is no 426 to return
		}
		return resp, nil
	}
	drain426(resp)
	return t.replay(r, candidates, first)
}

// decide returns the candidates to try, in order, and the offers left out;
// or the reason the 426 goes back to the caller untouched.
func (t *Transport) decide(r *transportRequest, parseErr error) ([]candidate, []Skipped, error) {
	if parseErr != nil {
		return nil, nil, parseErr
	}
	if alreadyReplayed(r.req, r.resp426) {
		return nil, nil, ErrAlreadyReplayed
	}
	s := t.situationOf(r.req, r.resp426.ProtoMajor, tlsVersion(r.resp426))
	usable, skipped := usableOffers(s, r.offered)
	usable, skipped = t.dropBroken(r, usable, skipped)
	if t.CheckUpgrade != nil {
		// DefaultCheckUpgrade keeps them all, in order: only a caller's
		// hook is worth the copy.
		order, err := t.CheckUpgrade(r.req, r.resp426, offersOf(usable))
		if err != nil {
			return nil, skipped, err
		}
		usable = picked(usable, order)
	}
	if len(usable) == 0 {
		return nil, skipped, ErrNoUsableOffer
	}
	if t.template() == nil {
		return nil, skipped, fmt.Errorf("%w (Base is %T)", ErrBaseNotTransport, t.base())
	}
	return usable, skipped, nil
}

// situationOf is what the policy needs to know about req, answered with a
// 426 over HTTP major version respMajor and TLS version respTLS (0 in
// clear). A remembered route, read on every request, builds its own, asking
// the Proxy func only when the route needs to know.
func (t *Transport) situationOf(req *http.Request, respMajor int, respTLS uint16) situation {
	return situation{
		secure:     req.URL.Scheme == "https",
		respMajor:  respMajor,
		respTLS:    respTLS,
		proxied:    t.proxied(req),
		ownDialer:  t.ownDialer(),
		needsHTTP1: needsHTTP1(req),
		floor:      t.floor(),
	}
}

// replay sends the request once over the first candidate, with body; on a
// failure before any connection (dial, handshake, ALPN) it goes on to the
// next. Any response, whatever its status, ends the search: the request may
// have been acted on.
func (t *Transport) replay(r *transportRequest, candidates []candidate, body io.ReadCloser) (*http.Response, error) {
	defer r.bodies.done()
	ctx := r.req.Context()
	marked := markReplayed(ctx)
	var attempts []Attempt
	for i := 0; i < len(candidates); i++ {
		c := candidates[i]
		if r.trace.ReplayStart != nil {
			r.trace.ReplayStart(c.offer)
		}
		ctx := marked
		if c.target.kind == targetHTTP3 {
			if next := slices.IndexFunc(candidates[i+1:], func(next candidate) bool { return !next.target.ownSocket() }); next >= 0 {
				ctx = raceWith(ctx, candidates[i+1+next].target) // a slow QUIC handshake races it (race.go)
			} else {
				c.quicOnly = true // no TCP protocol behind it, now and when remembered: the whole setup bound
			}
		}
		out := r.req.Clone(ctx)
		out.Body = body
		out.Trailer = r.req.Trailer // the caller's body may fill it in as it is read
		if c.target.multiplexed() {
			removeHopByHop(out.Header)
		}
		resp, err := t.sendOver(out, &c)
		t.noteOutcome(r, c.target, err)
		if err == nil {
			if resp.StatusCode != http.StatusUpgradeRequired {
				t.learn(r, c)
			}
			if r.trace.ReplayDone != nil {
				r.trace.ReplayDone(ReplayDoneInfo{Protocol: c.offer, StatusCode: resp.StatusCode, Proto: resp.Proto, TLS: tlsVersion(resp)})
			}
			return resp, nil
		}
		attempts = append(attempts, Attempt{Protocol: c.offer, Err: err})
		early := beforeConnection(err) && ctx.Err() == nil
		if early && c.target.encrypted() {
			candidates = append(candidates[:i+1], onlyEncrypted(candidates[i+1:])...)
		}
		fallback := early && i+1 < len(candidates)
		if r.trace.ReplayDone != nil {
			r.trace.ReplayDone(ReplayDoneInfo{Protocol: c.offer, Err: err, Fallback: fallback})
		}
		if !early {
			// The request may have reached the server, or the caller gave
			// up: report it as a transport would.
			return nil, err
		}
		if !fallback {
			break
		}
		if body, err = r.bodies.next(); err != nil {
			attempts = append(attempts, Attempt{Protocol: candidates[i+1].offer, Err: err})
			break
		}
	}
	if r.refusal != nil {
		return nil, &UpgradeError{Offered: r.offered, Attempts: attempts, Refusal: r.refusal}
	}
	return nil, &UpgradeError{Offered: r.offered, Attempts: attempts, Response: r.resp426}
}

// sendOver sends out over the inner transport for c, built on first use. A
// failure before any connection carries the connectError mark (dial.go).
func (t *Transport) sendOver(out *http.Request, c *candidate) (*http.Response, error) {
	tgt := c.target
	inner, err := t.inner.entry(tgt, func() http.RoundTripper { return kinds[tgt.kind].build(t, tgt) })
	if err != nil {
		if out.Body != nil {
			out.Body.Close() // no transport took it, and RoundTrip must close it
		}
		return nil, err
	}
	return t.sendThrough(inner, out, c)
}

// sendThrough sends out over inner, the inner transport for c.
func (t *Transport) sendThrough(inner *innerTransport, out *http.Request, c *candidate) (*http.Response, error) {
	if c.upgrade != "" {
		out = withInbandUpgrade(out, c.upgrade)
	}
	if !c.target.directRoute() && t.proxied(out) {
		return throughProxy{inner.send}.RoundTrip(out)
	}
	return inner.roundTrip(out, c)
}

// CloseIdleConnections closes the idle connections of Base and of every
// upgraded transport.
func (t *Transport) CloseIdleConnections() {
	for _, rt := range t.inner.all() {
		closeIdle(rt)
	}
	closeIdle(t.base())
}

// Close releases every upgraded transport and Base's idle connections.
// Later calls to RoundTrip fail with ErrClosed. Requests already in flight
// finish. Close is idempotent.
func (t *Transport) Close() error {
	if t.closed.Swap(true) {
		return nil
	}
	errs := t.inner.close()
	closeIdle(t.base())
	return errors.Join(errs...)
}

func tlsVersion(resp *http.Response) uint16 {
	if resp.TLS == nil {
		return 0
	}
	return resp.TLS.Version
}
