package upgrade

import (
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Alt-Svc (RFC 7838): most servers that want HTTP/3 never answer 426; they
// advertise it on ordinary responses (RFC 9114 §3.1.1), as Caddy does with
// `Alt-Svc: h3=":443"; ma=2592000`. Such an advertisement is remembered
// for the origin like a 426's demand, so that later requests go over
// HTTP/3, with the same rules: same host and port only (the alternative's
// certificate must be valid for the origin, RFC 7838 §2.1, which the same
// host guarantees), never through a proxy or around Base's dialer, never
// over a broken mark.

// Bounds on what an Alt-Svc header may cost.
const (
	maxAltSvcBytes        = 8 << 10
	maxAltSvcAlternatives = 32
	defaultAltSvcMaxAge   = 24 * time.Hour // RFC 7838 §3.1
)

// altService is one alternative of an Alt-Svc header.
type altService struct {
	protocol string        // the ALPN protocol ID, such as "h3"
	host     string        // empty: the origin's host
	port     string        // the alternative's port
	maxAge   time.Duration // ma
}

// parseAltSvc parses Alt-Svc header lines: "clear", or alternatives
// `protocol-id="[host]:port"` with parameters. Malformed alternatives are
// skipped, as RFC 7838 §3 asks; a header beyond the bounds yields nothing.
func parseAltSvc(lines []string) (alts []altService, clear bool) {
	size := 0
	for _, line := range lines {
		size += len(line)
	}
	if size > maxAltSvcBytes {
		return nil, false
	}
	for _, line := range lines {
		for _, value := range splitOutsideQuotes(line, ',') {
			value = trimOWS(value)
			if value == "clear" {
				return nil, true
			}
			if alt, ok := parseAlternative(value); ok {
				if len(alts) == maxAltSvcAlternatives {
					return alts, false
				}
				alts = append(alts, alt)
			}
		}
	}
	return alts, false
}

// parseAlternative parses `h3=":443"; ma=3600; persist=1`.
func parseAlternative(value string) (altService, bool) {
	parts := splitOutsideQuotes(value, ';')
	id, authority, ok := strings.Cut(trimOWS(parts[0]), "=")
	if !ok || !isToken(id) {
		return altService{}, false
	}
	authority, ok = unquote(authority)
	if !ok {
		return altService{}, false
	}
	host, port, err := net.SplitHostPort(authority)
	if n, perr := strconv.ParseUint(port, 10, 16); err != nil || perr != nil || n == 0 {
		return altService{}, false
	}
	alt := altService{protocol: id, host: host, port: port, maxAge: defaultAltSvcMaxAge}
	for _, param := range parts[1:] {
		name, v, _ := strings.Cut(trimOWS(param), "=")
		if !strings.EqualFold(name, "ma") {
			continue
		}
		if v, ok = unquote(v); !ok {
			return altService{}, false
		}
		seconds, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return altService{}, false
		}
		alt.maxAge = time.Duration(seconds) * time.Second
	}
	return alt, true
}

// splitOutsideQuotes splits s at sep where sep is not inside a quoted
// string.
func splitOutsideQuotes(s string, sep byte) []string {
	var parts []string
	quoted, escaped, start := false, false, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case escaped:
			escaped = false
		case quoted && c == '\\':
			escaped = true
		case c == '"':
			quoted = !quoted
		case !quoted && c == sep:
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	return append(parts, s[start:])
}

// unquote returns a token as it is, or a quoted string's content.
func unquote(s string) (string, bool) {
	if isToken(s) {
		return s, true
	}
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' {
		return "", false
	}
	var b strings.Builder
	for i := 1; i < len(s)-1; i++ {
		c := s[i]
		if c == '\\' && i+1 < len(s)-1 {
			i++
			c = s[i]
		} else if c == '"' || c == '\\' {
			return "", false
		}
		b.WriteByte(c)
	}
	return b.String(), true
}

// learnAltSvc remembers HTTP/3 for the request's origin when resp, which
// came over TCP and TLS, advertises it on the same host and port, and
// forgets it on "clear". It writes nothing when nothing changes, so a
// server that repeats its Alt-Svc on every response costs a header lookup.
func (t *Transport) learnAltSvc(r *transportRequest, resp *http.Response) {
	lines, ok := resp.Header["Alt-Svc"]
	if !ok || t.IgnoreAltSvc {
		return
	}
	alts, clear := parseAltSvc(lines)
	if r.origin == (origin{}) {
		r.origin = originOf(r.req)
	}
	m := t.memory()
	if m == nil {
		return
	}
	via, remembered := m.lookup(r.origin, t.recent())
	if clear {
		if remembered && via.target.kind == targetHTTP3 && via.offer.Is("h3", "") {
			t.forgetAltSvc(r, via)
		}
		return
	}
	if remembered {
		return // a 426's demand, or what an earlier advertisement taught
	}
	_, port, _ := net.SplitHostPort(r.req.URL.Host)
	if port == "" {
		port = defaultPort(true)
	}
	for _, alt := range alts {
		if alt.protocol != "h3" || alt.port != port || (alt.host != "" && !strings.EqualFold(alt.host, r.req.URL.Hostname())) {
			continue
		}
		h3 := candidate{offer: Protocol{Name: "h3"}, target: target{kind: targetHTTP3}}
		route := t.situationOf(r.req, resp.ProtoMajor, tlsVersion(resp))
		route.needsHTTP1 = false // the advertisement is for the origin, not for this request
		if alt.maxAge <= 0 || refuseRoute(h3.target, route) != nil ||
			t.broken.isBroken(brokenKeyOf(r.origin, h3.target), t.clock()) {
			return // a broken mark outlives any advertisement
		}
		m.put(r.origin, memoryEntry{via: h3, expires: t.clock().Add(alt.maxAge)})
		if r.trace == nil {
			r.trace = traceFrom(r.req.Context())
		}
		if r.trace.AltSvc != nil {
			r.trace.AltSvc(AltSvcInfo{Origin: r.origin.String(), Protocol: h3.offer, MaxAge: alt.maxAge})
		}
		return
	}
}

func (t *Transport) forgetAltSvc(r *transportRequest, via candidate) {
	t.memory().forget(r.origin)
	if r.trace == nil {
		r.trace = traceFrom(r.req.Context())
	}
	if r.trace.AltSvc != nil {
		r.trace.AltSvc(AltSvcInfo{Origin: r.origin.String(), Protocol: via.offer, Cleared: true})
	}
}
