package upgrade

import (
	"net"
	"net/http"
	"strings"
)

// origin identifies a server for what is learned about it: the URL's
// scheme and host:port, lower-cased, the scheme's default port left out so
// that "https://h" and "https://h:443" are one origin. A Host header other
// than the URL's names another virtual server behind the same address, so
// it is part of the key. Built from the request's own strings, a key costs
// no allocation unless a host needs lower-casing, and hashes two strings.
type origin struct {
	secure bool   // https://
	host   string // host[:port], the default port left out
	vhost  string // the Host header, likewise, when it differs
}

func originOf(req *http.Request) origin {
	o := origin{secure: req.URL.Scheme == "https"}
	o.host = canonicalHost(req.URL.Host, o.secure)
	if req.Host != "" && req.Host != req.URL.Host {
		if vhost := canonicalHost(req.Host, o.secure); vhost != o.host {
			o.vhost = vhost
		}
	}
	return o
}

// canonicalHost lower-cases hostport and drops the scheme's default port.
// It is idempotent: a host left with a port of its own after the drop
// ("h:443:443", which net/url accepts under GODEBUG=urlstrictcolons=0)
// keeps it whole, or "h:443" would name that origin and "h" another.
// express relies on it: a request whose host equals a slot's canonical
// host has that origin.
func canonicalHost(hostport string, secure bool) string {
	port := ":80"
	if secure {
		port = ":443"
	}
	if host, ok := strings.CutSuffix(hostport, port); ok && strings.LastIndexByte(host, ':') <= strings.LastIndexByte(host, ']') {
		hostport = host
	}
	return strings.ToLower(hostport) // the same string, unless it has upper case
}

func (o origin) scheme() string {
	if o.secure {
		return "https"
	}
	return "http"
}

// String returns scheme://host:port, as in an Alt-Svc cache.
func (o origin) String() string {
	hostport := o.host
	if _, _, err := net.SplitHostPort(hostport); err != nil {
		hostport = net.JoinHostPort(strings.Trim(hostport, "[]"), defaultPort(o.secure))
	}
	return o.scheme() + "://" + hostport
}

func defaultPort(secure bool) string {
	if secure {
		return "443"
	}
	return "80"
}
