package upgrade

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// CheckUpgradeFunc decides which offered protocols to try after a 426, in
// the style of http.Client.CheckRedirect. It receives the request as the
// caller sent it, the 426 response (its body must not be read) and the
// offers the transport can speak and may use, in the server's order. It
// returns the protocols to try, in order; ones not in usable are ignored,
// so a hook can narrow and reorder but never widen the security policy. An
// error vetoes the upgrade: the 426 is returned and the trace reports the
// error. It is asked too before a protocol remembered for the origin is
// used, and after a TLS handshake refused with a demand (refusal.go); resp
// is then a 426 standing for that demand, its Upgrade header naming it.
type CheckUpgradeFunc func(req *http.Request, resp *http.Response, usable []Protocol) ([]Protocol, error)

// DefaultCheckUpgrade tries every usable offer in the server's order.
func DefaultCheckUpgrade(req *http.Request, resp *http.Response, usable []Protocol) ([]Protocol, error) {
	return usable, nil
}

// The functions below are the policy: pure functions of what they are
// given, with no I/O, so that policy_test.go can run every case without a
// server. The caller's CheckUpgrade only sees what passes them.

// situation is what the policy needs to know about a 426 and the request it
// answers.
type situation struct {
	secure     bool   // the origin is https://
	respMajor  int    // the HTTP major version the 426 came over
	respTLS    uint16 // the TLS version it came over; 0 in clear
	proxied    bool   // a proxy would carry the request
	ownDialer  bool   // Base dials through a DialContext of its own, and HTTP/3 may not go around it
	needsHTTP1 bool   // the request is a CONNECT or has an upgrade of its own
	floor      uint16 // the least TLS version any upgraded connection uses
}

// usableOffers maps each offer to the target it would go to, in the
// server's order, or to the reason it is left out.
func usableOffers(s situation, offered []Protocol) ([]candidate, []Skipped) {
	var usable []candidate
	var skipped []Skipped
	for _, offer := range offered {
		tgt, reason := targetFor(s, offer)
		if reason == nil {
			for _, earlier := range usable {
				if earlier.target == tgt {
					reason = fmt.Errorf("%w: same as the earlier offer %s", ErrNoChange, earlier.offer)
					break
				}
			}
		}
		if reason != nil {
			skipped = append(skipped, Skipped{Protocol: offer, Reason: reason})
			continue
		}
		usable = append(usable, newCandidate(offer, tgt, offered))
	}
	return usable, skipped
}

// newCandidate is offer going to tgt. An in-band TLS switch names the
// server's own TLS tokens back to it (offered is the whole list).
func newCandidate(offer Protocol, tgt target, offered []Protocol) candidate {
	c := candidate{offer: offer, target: tgt}
	if tgt.kind == targetInbandTLS {
		c.upgrade = inbandTokens(offered, offer)
	}
	return c
}

// targetFor maps one offer to its target, or says why it may not be taken.
//
//	offer                    https:// origin            http:// origin
//	HTTP/2, HTTP/2.0, h2     HTTP/2 over TLS (ALPN h2)  h2c, prior knowledge
//	h2c                      refused: would drop TLS    h2c, prior knowledge
//	HTTP/3, HTTP/3.0, h3     HTTP/3 over QUIC           refused: needs TLS
//	TLS, TLS/1.0 … TLS/1.3   a stricter TLS             in-band TLS (RFC 2817)
//	anything else            not an upgrade we make
func targetFor(s situation, offer Protocol) (target, error) {
	tgt, err := mapOffer(s, offer)
	if err != nil {
		return target{}, err
	}
	if err := refuseRoute(tgt, s); err != nil {
		return target{}, err
	}
	return tgt, nil
}

func mapOffer(s situation, offer Protocol) (target, error) {
	switch {
	case isHTTP2(offer):
		if s.respMajor == 2 {
			return target{}, ErrNoChange
		}
		if s.secure {
			return target{kind: targetHTTP2}, nil
		}
		return target{kind: targetH2C}, nil
	case offer.Is("h2c", ""):
		if s.secure {
			return target{}, ErrDowngrade
		}
		if s.respMajor == 2 {
			return target{}, ErrNoChange
		}
		return target{kind: targetH2C}, nil
	case isHTTP3(offer):
		switch {
		case !s.secure:
			return target{}, ErrNeedsTLS
		case s.respMajor == 3:
			return target{}, ErrNoChange
		}
		return target{kind: targetHTTP3}, nil
	case strings.EqualFold(offer.Name, "TLS"):
		// The offer names the least version the server takes; the new
		// connection also keeps to our floor, but only the offer decides
		// whether the 426's connection already met the demand.
		asked, least := uint16(tls.VersionTLS10), s.floor
		if offer.Version != "" {
			v, ok := tlsVersions[offer.Version]
			if !ok {
				return target{}, ErrUnsupportedOffer
			}
			asked, least = v, max(least, v)
		}
		if s.respTLS >= asked {
			return target{}, ErrNoChange
		}
		if !s.secure {
			return target{kind: targetInbandTLS, minTLS: least}, nil
		}
		return forRequest(target{kind: targetTLS, minTLS: least}, s.needsHTTP1), nil
	}
	return target{}, ErrUnsupportedOffer
}

// forRequest fits tgt to a request that needs HTTP/1.1 (or not): a
// stricter TLS then offers only http/1.1.
func forRequest(tgt target, needsHTTP1 bool) target {
	if tgt.kind == targetTLS {
		tgt.http1Only = needsHTTP1
	}
	return tgt
}

// refuseRoute says why tgt may not carry a request, or nil when it may:
// an upgraded request goes where Base would send it, or not at all. The
// same rule holds for a fresh 426 and for a remembered route.
func refuseRoute(tgt target, s situation) error {
	switch {
	case s.needsHTTP1 && tgt.multiplexed():
		return errOwnUpgrade
	case s.proxied && tgt.directRoute():
		return ErrProxied
	case s.ownDialer && tgt.ownSocket():
		return ErrOwnDialer
	}
	return nil
}

// errOwnUpgrade: the request asks for an upgrade of its own (a WebSocket
// handshake) or is a CONNECT, which HTTP/2 and HTTP/3 would not carry as
// such: stripping its Upgrade header would turn it into another request.
var errOwnUpgrade = fmt.Errorf("%w: the request needs HTTP/1.1 for its own upgrade", ErrUnsupportedOffer)

// needsHTTP1 is net/http's rule for requests only HTTP/1.1 can carry.
func needsHTTP1(req *http.Request) bool {
	return req.Method == http.MethodConnect ||
		(httpguts.HeaderValuesContainsToken(req.Header["Connection"], "upgrade") && req.Header.Get("Upgrade") != "")
}

func isHTTP2(p Protocol) bool {
	return p.Is("HTTP", "2") || p.Is("HTTP", "2.0") || p.Is("h2", "")
}

func isHTTP3(p Protocol) bool {
	return p.Is("HTTP", "3") || p.Is("HTTP", "3.0") || p.Is("h3", "")
}

// tlsVersions maps the versions a "TLS/x.y" token may carry.
var tlsVersions = map[string]uint16{
	"1.0": tls.VersionTLS10,
	"1.1": tls.VersionTLS11,
	"1.2": tls.VersionTLS12,
	"1.3": tls.VersionTLS13,
}

// picked keeps the usable candidates CheckUpgrade returned, in its order,
// each once; a protocol it returns that is not usable is ignored.
func picked(usable []candidate, order []Protocol) []candidate {
	var kept []candidate
	for _, p := range order {
		for _, c := range usable {
			if c.offer == p && !containsOffer(kept, p) {
				kept = append(kept, c)
				break
			}
		}
	}
	return kept
}

func containsOffer(cs []candidate, p Protocol) bool {
	for _, c := range cs {
		if c.offer == p {
			return true
		}
	}
	return false
}

// onlyEncrypted keeps the candidates that run over TLS: after a TLS
// failure, which may be an attacker's, never fall back to cleartext.
func onlyEncrypted(cs []candidate) []candidate {
	kept := cs[:0]
	for _, c := range cs {
		if c.target.encrypted() {
			kept = append(kept, c)
		}
	}
	return kept
}

// offersOf returns the offers of cs, in order.
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

// combine returns next, lifted to meet what the origin demanded before
// (prev) as well, when one connection can meet both: HTTP/2 over a
// stricter TLS. Otherwise next as it is: the newer demand wins.
func combine(prev, next candidate) candidate {
	overTLS := func(k targetKind) bool { return k == targetHTTP2 || k == targetTLS }
	if !overTLS(prev.target.kind) || !overTLS(next.target.kind) {
		return next
	}
	lifted := next.target
	lifted.minTLS = max(prev.target.minTLS, next.target.minTLS)
	if prev.target.kind == targetHTTP2 && !next.target.http1Only {
		lifted.kind = targetHTTP2
	}
	if lifted == next.target {
		return next
	}
	next.target = lifted
	next.also = prev.offer
	return next
}

// demandResponse stands for a 426 where there is none: the one that taught
// a remembered protocol, or a refused TLS handshake (refusal.go), for
// CheckUpgrade and the policy. Its Upgrade header names the demand, its
// body is empty.
func demandResponse(req *http.Request, upgrade string) *http.Response {
	return &http.Response{
		Status: "426 Upgrade Required", StatusCode: http.StatusUpgradeRequired,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{"Upgrade": {upgrade}}, Body: http.NoBody, Request: req,
	}
}
