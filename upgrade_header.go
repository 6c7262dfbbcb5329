package upgrade

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// Bounds on what ParseUpgrade accepts, so a hostile server costs little.
const (
	maxUpgradeHeaderBytes = 8 << 10 // all Upgrade lines together
	maxOfferedProtocols   = 32
)

// Protocol is one element of an Upgrade header: a name and an optional
// version, as in "TLS/1.2" or "h2c" (RFC 9110 §7.8). Names compare
// case-insensitively; see [Protocol.Is].
type Protocol struct {
	Name    string
	Version string // empty when the element has no "/version"
}

// String returns the protocol as it appears in a header: "name" or "name/version".
func (p Protocol) String() string {
	if p.Version == "" {
		return p.Name
	}
	return p.Name + "/" + p.Version
}

// Is reports whether p names protocol name with the given version, comparing
// names case-insensitively as RFC 9110 §7.8 asks. An empty version matches
// only an element without one.
func (p Protocol) Is(name, version string) bool {
	return strings.EqualFold(p.Name, name) && strings.EqualFold(p.Version, version)
}

// ParseError reports an Upgrade header that does not follow RFC 9110 §7.8.
type ParseError struct {
	// Element is the offending list element, cut to 64 bytes; empty when the
	// header as a whole is at fault (too large, too many protocols).
	Element string
	// Index counts the non-empty elements before the offending one.
	Index int
	// Reason says what is wrong.
	Reason string
}

func (e *ParseError) Error() string {
	if e.Element == "" {
		return "upgrade: bad Upgrade header: " + e.Reason
	}
	return fmt.Sprintf("upgrade: bad Upgrade element %d %s: %s", e.Index, strconv.Quote(e.Element), e.Reason)
}

// ParseUpgrade returns the protocols listed in h's Upgrade header lines, in
// the order the server gave them. Empty list elements are skipped; an absent
// header gives a nil slice and no error. A malformed element, more than 32
// protocols or more than 8 KiB of header make a *ParseError.
//
// The returned strings share memory with h; the work is linear in the size
// of the header and allocates only the result.
func ParseUpgrade(h http.Header) ([]Protocol, error) {
	lines := h["Upgrade"] // the canonical key, as net/http stores it
	if len(lines) == 0 {
		return nil, nil
	}
	size, commas := 0, 0
	for _, line := range lines {
		size += len(line)
		commas += strings.Count(line, ",")
	}
	if size > maxUpgradeHeaderBytes {
		return nil, &ParseError{Reason: fmt.Sprintf("%d bytes, more than %d", size, maxUpgradeHeaderBytes)}
	}
	// At most one element per comma plus one per line; the bound is checked
	// again on what is really found, so empty elements don't count.
	capacity := min(commas+len(lines), maxOfferedProtocols+1)
	var offered []Protocol
	for _, line := range lines {
		for line != "" {
			element := line
			if comma := strings.IndexByte(line, ','); comma >= 0 {
				element, line = line[:comma], line[comma+1:]
			} else {
				line = ""
			}
			element = trimOWS(element)
			if element == "" {
				continue
			}
			if len(offered) == maxOfferedProtocols {
				return nil, &ParseError{Reason: fmt.Sprintf("more than %d protocols", maxOfferedProtocols)}
			}
			p, reason := parseProtocol(element)
			if reason != "" {
				return nil, &ParseError{Element: shorten(element), Index: len(offered), Reason: reason}
			}
			if offered == nil {
				offered = make([]Protocol, 0, capacity)
			}
			offered = append(offered, p)
		}
	}
	return offered, nil
}

// trimOWS removes optional whitespace (RFC 9110 §5.6.3) around s.
func trimOWS(s string) string {
	for s != "" && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for s != "" && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// parseProtocol splits one trimmed element into name and version, both of
// which must be tokens: protocol = protocol-name ["/" protocol-version].
func parseProtocol(element string) (Protocol, string) {
	name, version := element, ""
	slash := strings.IndexByte(element, '/')
	if slash >= 0 {
		name, version = element[:slash], element[slash+1:]
	}
	if !isToken(name) {
		return Protocol{}, "protocol name is not a token"
	}
	if slash >= 0 && !isToken(version) {
		return Protocol{}, "protocol version is not a token"
	}
	return Protocol{Name: name, Version: version}, ""
}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !tokenByte[s[i]] {
			return false
		}
	}
	return true
}

// tokenByte is httpguts.IsTokenRune as a table over bytes, for the hot loop.
var tokenByte = func() (table [256]bool) {
	for b := range table {
		table[b] = httpguts.IsTokenRune(rune(b))
	}
	return table
}()

func shorten(s string) string {
	const limit = 64
	if len(s) > limit {
		return s[:limit]
	}
	return s
}
