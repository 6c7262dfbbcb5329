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
// Options may come before or after the URL, one-letter ones may be combined
// (-sSf, -vo FILE), and "--" ends them. They follow curl's: -X, -H, -d, -i,
// -I, -o, -L, -s, -S, -f, -w, -v, -k, -m, --cacert, --http1.1, --http2,
// --http3, --tlsv1.0 to --tlsv1.3 and --tls-max choose what the first
// request offers; "h426 --help" lists them all. Without -L redirects are
// not followed; with -f a status of 400 or more exits 22 and prints no body.
//
// --legacy is --http1.1 --tls-max 1.2: a strict server then answers with a
// demand, and -v shows the upgrade. --http3 sends the first request over
// HTTP/3 and, when QUIC gets no answer, over TCP as without it. --min-tls
// sets the least TLS version for upgraded connections, and --memory keeps
// what origins demanded in a file from one run to the next.
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
