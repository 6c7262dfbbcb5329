package upgrade

import (
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Alt-Svc (RFC 7838): most servers that want HTTP/3 never answer 426; they
// advertise it on ordinary responses (RFC 9114 §3.1.1), as Caddy does with
// `Alt-Svc: h3=":443"; ma=2592000`. Such an advertisement is remembered
// for the origin like a 426's demand, so that later requests go over
// HTTP/3, with the same rules: never through a proxy or around Base's
// dialer, never over a broken mark. The alternative may name another port
// or host: the QUIC handshake verifies the certificate for the origin's
// host, not the alternative's (RFC 7838 §2.1), so a server that cannot
// prove it is the origin gets no request. As in Chromium, an alternative
// on a port below 1024 is taken only from an origin on one too, so that a
// page on a high port cannot point clients at a privileged service.
//
// persist=1 asks that an alternative outlive a change of network; this
// transport sees no such change and keeps every alternative for its ma.

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
	port     string        // the alternative's port, never empty
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
// came over TCP and TLS, advertises it (the first alternative it may use), and
// forgets it on "clear". It writes nothing when nothing changes, so a
// server that repeats its Alt-Svc on every response costs a header lookup.
func (t *Transport) learnAltSvc(r *transportRequest, resp *http.Response) {
	lines, ok := resp.Header["Alt-Svc"]
	if !ok || t.IgnoreAltSvc {
		return
	}
	if r.origin == (origin{}) {
		r.origin = originOf(r.req)
	}
	if last := t.altSvcRefused.Load(); last != nil && last.repeats(r.origin, lines, t.recent()) {
		return
	}
	m := t.memory()
	if m == nil {
		return
	}
	h3 := target{kind: targetHTTP3}
	if slot := m.lookup(r.origin, t.recent()); slot != nil {
		// What a 426 demanded, or an earlier advertisement taught: only an
		// advertisement's "clear" of its own changes it.
		if via := &slot.via; via.target.kind == targetHTTP3 && via.offer.Is("h3", "") && slices.ContainsFunc(lines, mayClear) {
			if _, clear := parseAltSvc(lines); clear {
				t.forgetAltSvc(r, via)
			}
		}
		return
	}
	// Before the header is parsed: a server repeats it on every response,
	// and one that may not be followed should cost no more than this.
	route := t.situationOf(r.req, resp.ProtoMajor, tlsVersion(resp))
	route.needsHTTP1 = false // the advertisement is for the origin, not for this request
	if refuseRoute(h3, route) != nil {
		return
	}
	if until, broken := t.broken.brokenUntil(brokenKeyOf(r.origin, h3), t.clock()); broken {
		if len(lines) == 1 {
			t.altSvcRefused.Store(&refusedAltSvc{origin: r.origin, value: lines[0], until: until})
		}
		return // a broken mark outlives any advertisement
	}
	alts, _ := parseAltSvc(lines)
	for _, alt := range alts {
		authority, ok := alternativeFor(r.req.URL, alt)
		if !ok {
			continue
		}
		if alt.maxAge <= 0 {
			return
		}
		via := candidate{offer: Protocol{Name: "h3"}, target: h3, alt: authority}
		m.put(r.origin, memoryEntry{via: via, expires: t.clock().Add(alt.maxAge)})
		if r.trace == nil {
			r.trace = traceFrom(r.req.Context())
		}
		if r.trace.AltSvc != nil {
			r.trace.AltSvc(AltSvcInfo{Origin: r.origin.String(), Protocol: via.offer, Alternative: authority, MaxAge: alt.maxAge})
		}
		return
	}
}

// refusedAltSvc is an advertisement a broken mark refused, until the mark
// ends. A server repeats its Alt-Svc on every response, every one of them
// while its UDP is blocked: recognising the same line for the same origin
// costs two comparisons, where deciding again costs a memory lookup and the
// broken marks' lock.
type refusedAltSvc struct {
	origin origin
	value  string
	until  time.Time
}

func (a *refusedAltSvc) repeats(o origin, lines []string, now time.Time) bool {
	return len(lines) == 1 && lines[0] == a.value && o == a.origin && now.Before(a.until)
}

// mayClear reports whether an Alt-Svc line may be "clear", without parsing it.
func mayClear(line string) bool { return strings.Contains(line, "clear") }

// alternativeFor returns where HTTP/3 is reached for the origin of u when
// alt advertises it: "" for the origin's own host and port, else host:port.
// It refuses any protocol but h3, and a port below 1024 for an origin on a
// port above.
func alternativeFor(u *url.URL, alt altService) (string, bool) {
	if alt.protocol != "h3" {
		return "", false
	}
	port := u.Port()
	if port == "" {
		port = defaultPort(u.Scheme == "https")
	}
	altPort, err := strconv.ParseUint(alt.port, 10, 16)
	originPort, _ := strconv.ParseUint(port, 10, 16)
	if err != nil || altPort == 0 || (altPort < 1024 && originPort >= 1024) {
		return "", false
	}
	host := alt.host
	switch {
	case host == "" || strings.EqualFold(host, u.Hostname()):
		if altPort == originPort {
			return "", true
		}
		host = u.Hostname()
	case !validHost(host):
		return "", false
	}
	return net.JoinHostPort(host, strconv.FormatUint(altPort, 10)), true
}

// validHost reports whether host is an IP address or a DNS name (letters,
// digits, hyphens and dots), so that an alternative is never a string a
// resolver or a log would read as something else.
func validHost(host string) bool {
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	if len(host) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(host, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

func (t *Transport) forgetAltSvc(r *transportRequest, via *candidate) {
	t.memory().forget(r.origin)
	if r.trace == nil {
		r.trace = traceFrom(r.req.Context())
	}
	if r.trace.AltSvc != nil {
		r.trace.AltSvc(AltSvcInfo{Origin: r.origin.String(), Protocol: via.offer, Cleared: true})
	}
}
