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
// error.
type CheckUpgradeFunc func(req *http.Request, resp *http.Response, usable []Protocol) ([]Protocol, error)

// DefaultCheckUpgrade tries every usable offer in the server's order.
func DefaultCheckUpgrade(req *http.Request, resp *http.Response, usable []Protocol) ([]Protocol, error) {
	return usable, nil
}

// targetKind is the mechanism a replay goes through.
type targetKind uint8

const (
	targetHTTP2     targetKind = iota + 1 // HTTP/2 over TLS, ALPN h2
	targetH2C                             // HTTP/2 in clear, prior knowledge
	targetTLS                             // the caller's protocols over a stricter TLS
	targetHTTP3                           // HTTP/3 over QUIC, same host and port, UDP
	targetInbandTLS                       // HTTP/1.1 in TLS begun in-band on an http:// connection (RFC 2817)
)

// target identifies one inner transport: a kind and, for targetTLS and
// targetInbandTLS, the least TLS version its connections accept.
type target struct {
	kind   targetKind
	minTLS uint16
	// inband is, for targetInbandTLS, the Upgrade value its connections ask
	// for: the TLS tokens the 426 offered (inbandTokens), so it takes few
	// distinct values.
	inband string
}

// candidate is an offer the transport will try and where it goes.
type candidate struct {
	offer  Protocol
	target target
}

// tlsVersions maps the versions a "TLS/x.y" token may carry.
var tlsVersions = map[string]uint16{
	"1.0": tls.VersionTLS10,
	"1.1": tls.VersionTLS11,
	"1.2": tls.VersionTLS12,
	"1.3": tls.VersionTLS13,
}

// choose maps each offer to a target or to the reason it is left out
// (DESIGN §2 and §4). These rules are not the caller's to override:
// CheckUpgrade only sees what passes them.
func (t *Transport) choose(req *http.Request, resp *http.Response, offered []Protocol) ([]candidate, []Skipped) {
	var usable []candidate
	var skipped []Skipped
	for _, offer := range offered {
		tgt, reason := t.targetFor(req, resp, offer)
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
		usable = append(usable, candidate{offer: offer, target: tgt})
	}
	return usable, skipped
}

// targetFor maps an offer to its target (DESIGN §2), then refuses targets
// that cannot go through the proxy that would carry req (DESIGN §4).
func (t *Transport) targetFor(req *http.Request, resp *http.Response, offer Protocol) (target, error) {
	tgt, err := t.mapOffer(req, resp, offer)
	if err == nil && needsDirectRoute(tgt) && t.proxied(req) {
		return target{}, ErrProxied
	}
	return tgt, err
}

// needsDirectRoute reports whether tgt cannot go through an HTTP proxy:
// the proxy, not the origin, would get the h2c preface or the in-band
// switch, and QUIC does not go through one at all.
func needsDirectRoute(tgt target) bool {
	return tgt.kind == targetH2C || tgt.kind == targetHTTP3 || tgt.kind == targetInbandTLS
}

func (t *Transport) mapOffer(req *http.Request, resp *http.Response, offer Protocol) (target, error) {
	secure := req.URL.Scheme == "https"
	if needsHTTP1(req) && (isHTTP2(offer) || offer.Is("h2c", "") || isHTTP3(offer)) {
		return target{}, errOwnUpgrade
	}
	switch {
	case isHTTP2(offer):
		if resp.ProtoMajor == 2 {
			return target{}, ErrNoChange
		}
		if secure {
			return target{kind: targetHTTP2}, nil
		}
		return target{kind: targetH2C}, nil
	case offer.Is("h2c", ""):
		if secure {
			return target{}, ErrDowngrade
		}
		if resp.ProtoMajor == 2 {
			return target{}, ErrNoChange
		}
		return target{kind: targetH2C}, nil
	case isHTTP3(offer):
		switch {
		case !secure:
			return target{}, ErrNeedsTLS
		case resp.ProtoMajor == 3:
			return target{}, ErrNoChange
		}
		return target{kind: targetHTTP3}, nil
	case strings.EqualFold(offer.Name, "TLS"):
		// The offer names the least version the server takes; the new
		// connection also keeps to our floor, but only the offer decides
		// whether the 426's connection already met the demand.
		asked, least := uint16(tls.VersionTLS10), t.floor()
		if offer.Version != "" {
			v, ok := tlsVersions[offer.Version]
			if !ok {
				return target{}, ErrUnsupportedOffer
			}
			asked, least = v, max(least, v)
		}
		if resp.TLS != nil && resp.TLS.Version >= asked {
			return target{}, ErrNoChange
		}
		if !secure {
			// RFC 2817 in-band TLS on the same port (DESIGN §2).
			return target{kind: targetInbandTLS, minTLS: least, inband: inbandTokens(resp.Header, offer)}, nil
		}
		return target{kind: targetTLS, minTLS: least}, nil
	}
	return target{}, ErrUnsupportedOffer
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

func (t *Transport) checkUpgrade() CheckUpgradeFunc {
	if t.CheckUpgrade != nil {
		return t.CheckUpgrade
	}
	return DefaultCheckUpgrade
}

// applyCheck runs the caller's hook and keeps only what it returns that is
// usable, in the hook's order.
func (t *Transport) applyCheck(req *http.Request, resp *http.Response, usable []candidate) ([]candidate, error) {
	if t.CheckUpgrade == nil {
		return usable, nil // DefaultCheckUpgrade keeps them all, in order
	}
	offers := make([]Protocol, len(usable))
	for i, c := range usable {
		offers[i] = c.offer
	}
	picked, err := t.checkUpgrade()(req, resp, offers)
	if err != nil {
		return nil, err
	}
	var ordered []candidate
	for _, p := range picked {
		for _, c := range usable {
			if c.offer == p && !containsOffer(ordered, p) {
				ordered = append(ordered, c)
				break
			}
		}
	}
	return ordered, nil
}

func containsOffer(cs []candidate, p Protocol) bool {
	for _, c := range cs {
		if c.offer == p {
			return true
		}
	}
	return false
}
