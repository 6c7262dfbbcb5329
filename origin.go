package upgrade

import (
	"net"
	"net/http"
	"strings"
)

// origin identifies a server for what is learned about it: the
// URL's scheme, host (lower-cased) and port (default filled in). A Host
// header other than the URL's names another virtual server behind the same
// address, so it is part of the key. Built from the request's own strings,
// a key costs no allocation unless a host needs lower-casing.
type origin struct {
	scheme, host, port string
	vhost              string // the Host header when it differs from the URL's
}

func originOf(req *http.Request) origin {
	o := origin{
		scheme: req.URL.Scheme,
		host:   strings.ToLower(req.URL.Hostname()),
		port:   req.URL.Port(),
	}
	if o.port == "" {
		o.port = defaultPort(o.scheme)
	}
	if req.Host != "" && !strings.EqualFold(req.Host, req.URL.Host) {
		o.vhost = strings.ToLower(req.Host)
	}
	return o
}

// String returns scheme://host:port, as in an Alt-Svc cache.
func (o origin) String() string {
	return o.scheme + "://" + net.JoinHostPort(o.host, o.port)
}

func defaultPort(scheme string) string {
	if scheme == "https" {
		return "443"
	}
	return "80"
}
