// Command h426 is a curl-like HTTP client built on upgrade.Transport: when a
// server answers 426 Upgrade Required, or refuses the TLS handshake in a way
// that states a demand, it follows the demand to HTTP/2, h2c, HTTP/3, a
// stricter TLS or TLS in-band (RFC 2817), and -v shows each step.
//
// Usage:
//
//	h426 [options] URL
//	h426 demo
//
// Options follow curl's and may come before or after the URL; one-letter
// ones combine (-sSf, -vo FILE) and "--" ends them. "h426 --help" lists
// them all:
//
//   - the request: -X, -H, -d, -m, and -L to follow redirects (without it
//     they are not followed, as in curl);
//   - the output: -o, -i, -I, -w (%{http_code}, %{http_version} and more),
//     -f (a status of 400 or more prints no body and exits 22), -s, -S,
//     and -v, which shows each connection, request and upgrade step;
//   - what the first request offers: --http1.1, --http2 (the default),
//     --http3, --tlsv1.0 to --tlsv1.3 (the least TLS version) and
//     --tls-max. --legacy is --http1.1 --tls-max 1.2, so that a strict
//     server answers with a demand and -v shows the upgrade. --http3 sends
//     an https:// request straight over HTTP/3 and, when QUIC gets no
//     answer, over TCP as without it;
//   - TLS and upgrades: --cacert, -k, --min-tls (the least TLS version of
//     upgraded connections) and --memory, which keeps what origins
//     demanded in a file from one run to the next.
//
// "h426 demo" runs the client against loopback test servers, one per
// upgrade scenario, and prints what happened to each.
package main

import (
	"io"
	"os"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// Exit codes: a response of any status is a success, as with curl, unless
// -f asks for a status of 400 or more to fail with curl's 22.
const (
	exitOK         = 0
	exitError      = 1
	exitUsage      = 2
	exitHTTPFailed = 22
)

// run is main without the process, so tests can call it.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "demo" {
		return runDemo(args[1:], stdout, stderr)
	}
	o, err := parseArgs(args, stderr)
	if err != nil {
		return exitUsage // parseArgs has said why
	}
	switch {
	case o.help:
		io.WriteString(stdout, helpText)
		return exitOK
	case o.version:
		writeVersion(stdout)
		return exitOK
	}
	return fetch(o, stdout, stderr)
}
