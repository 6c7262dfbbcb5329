package main

import (
	"fmt"
	"io"
	"runtime/debug"
)

// shortUsage follows a usage error.
const shortUsage = "usage: h426 [options] URL, or h426 demo; h426 --help lists the options\n"

// helpText is "h426 --help". TestHelpNamesEveryOption keeps it in step
// with newFlagSet.
const helpText = `usage: h426 [options] URL
       h426 demo [-h]

A curl-like client that follows 426 Upgrade Required, and TLS handshakes
refused with a demand, to HTTP/2, h2c, HTTP/3, a newer TLS, or TLS in-band
(RFC 2817). Options go before or after the URL; one-letter ones combine
(-sSf, -vo FILE); -- ends the options.

Request:
  -X, --request METHOD    method (default GET, POST with -d, HEAD with -I)
  -H, --header 'N: v'     add a request header; repeatable
  -d, --data DATA         request body; @FILE sends the file as is; repeated
                          -d are joined with &
  -m, --max-time SECONDS  give up after this long; 0 for no limit (default 30)
  -L, --location          follow redirects, up to 50 (default: do not)

Output:
  -o, --output FILE       write the body (and -i's head) to FILE, not stdout
  -i, --include           print the status line and headers before the body
  -I, --head              send HEAD and print the status line and headers
  -w, --write-out FORMAT  print FORMAT after the transfer: %{http_code},
                          %{http_version} (1.1, 2, 3), %{url_effective},
                          %{content_type}, %{size_download}, %{time_total};
                          \n, \t, \r, \\ and %% as in curl
  -f, --fail              status 400 or more: print no body, exit 22
  -s, --silent            print no errors or warnings
  -S, --show-error        with -s, print errors all the same
  -v, --verbose           show each connection, request and upgrade step on
                          stderr

First request (what it offers; upgrades go further when a server demands):
  --http1.1               HTTP/1.1 only, ALPN http/1.1
  --http2                 HTTP/2 or HTTP/1.1, by ALPN over TLS (the default)
  --http3                 HTTP/3 straight away for https:// URLs; if QUIC
                          gets no answer, TCP as without it
  --tlsv1.0, --tlsv1.1,
  --tlsv1.2, --tlsv1.3    least TLS version (default 1.2)
  --tls-max VERSION       highest TLS version: 1.0, 1.1, 1.2 or 1.3
  --legacy                --http1.1 --tls-max 1.2, so strict servers demand
                          an upgrade and -v shows it

TLS and upgrades:
  --cacert FILE           trust the PEM root certificates in FILE, also for
                          upgraded connections
  -k, --insecure          do not verify server certificates
  --min-tls VERSION       least TLS version of upgraded connections: 1.2 or
                          1.3 (default 1.2)
  --memory FILE           load what origins demanded from FILE (if there)
                          and save it back, so the next run goes straight to it

  -h, --help              this text
  -V, --version           the version of h426 and of the Go it was built with

Exit status: 0 when a response came, whatever its status; 22 with -f and a
status of 400 or more; 1 on an error; 2 on a usage error.
`

// demoHelp is "h426 demo --help".
const demoHelp = `usage: h426 demo

Starts loopback test servers, one per upgrade scenario (a 426 demanding
HTTP/2, h2c, HTTP/3, TLS 1.3 or in-band TLS; a refused handshake; an
Alt-Svc; the origin memory; offers that cannot or must not be followed),
sends each a GET, and prints what happened: the final answer, how many
requests reached the server, and what it demanded and the client did.
The client speaks HTTP/1.1 and TLS 1.2 at most unless the scenario's name
says otherwise. Nothing leaves the machine. The exit status is 1 if any
scenario did not end as it should.
`

// writeVersion is "h426 --version".
func writeVersion(w io.Writer) {
	version, goVersion := "(unknown)", "(unknown)"
	if info, ok := debug.ReadBuildInfo(); ok {
		version, goVersion = info.Main.Version, info.GoVersion
	}
	fmt.Fprintf(w, "h426 %s (%s)\n", version, goVersion)
	fmt.Fprintln(w, "Upgrades: HTTP/2 h2c HTTP/3 TLS/1.3 TLS-in-band(RFC 2817) Alt-Svc")
}
