package upgrade

import (
	"net"
	"net/http"
	"strings"
)

// originOf returns the key for what is learned about a server:
// scheme://host:port of the URL, host lower-cased, default port filled in.
// A Host header other than the URL's names another virtual server behind
// the same address, so it is part of the key.
func originOf(req *http.Request) string {
	scheme := req.URL.Scheme
	host := strings.ToLower(req.URL.Hostname())
	port := req.URL.Port()
	if port == "" {
		port = defaultPort(scheme)
	}
	key := scheme + "://" + net.JoinHostPort(host, port)
	if req.Host != "" && !strings.EqualFold(req.Host, req.URL.Host) {
		key += " host=" + strings.ToLower(req.Host)
	}
	return key
}

func defaultPort(scheme string) string {
	if scheme == "https" {
		return "443"
	}
	return "80"
}
