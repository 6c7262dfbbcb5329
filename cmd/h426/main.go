// Command h426 is a curl-like HTTP client built on upgrade.Transport: when a
// server answers 426 Upgrade Required, it follows the offer to HTTP/2, h2c
// or a stricter TLS, and -v shows each step.
//
// Usage:
//
//	h426 [flags] URL
//	h426 demo
//
// "h426 demo" runs the client against loopback test servers, one per
// upgrade scenario, and prints what happened in a table.
package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// Exit codes: a response of any status is a success, as with curl.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// run is main without the process, so tests can call it.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "demo" {
		return runDemo(args[1:], stdout, stderr)
	}
	opts, err := parseArgs(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		return exitUsage // parseArgs has said why
	}
	if err := fetch(opts, stdout, stderr); err != nil {
		reportError(stderr, err)
		return exitError
	}
	return exitOK
}

// options is what the command line asks for.
type options struct {
	method   string
	headers  headerFlag
	data     dataFlag
	include  bool
	verbose  bool
	caFile   string
	insecure bool
	legacy   bool
	minTLS   tlsVersionFlag
	memory   string        // file the origin memory is loaded from and saved to
	timeout  time.Duration // 0: no limit
	url      string
}

// parseArgs reads flags, then exactly one URL. Errors are reported on
// stderr with the usage before they are returned.
func parseArgs(args []string, stderr io.Writer) (options, error) {
	var o options
	var seconds float64
	fs := flag.NewFlagSet("h426", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.method, "X", "", "request `method` (default GET, or POST with -d)")
	fs.Var(&o.headers, "H", "request header `'Name: value'`, repeatable")
	fs.Var(&o.data, "d", "request body `data`; @file sends the file as is; repeated -d are joined with &")
	fs.BoolVar(&o.include, "i", false, "print the status line and response headers before the body")
	fs.BoolVar(&o.verbose, "v", false, "show the request, the 426 and the upgrade on stderr")
	fs.StringVar(&o.caFile, "cacert", "", "trust the PEM root certificates in `file`, also for upgraded connections")
	fs.BoolVar(&o.insecure, "k", false, "do not verify server certificates (insecure)")
	fs.BoolVar(&o.legacy, "legacy", false, "first attempt with HTTP/1.1 only and TLS 1.2 at most, so servers ask for an upgrade")
	fs.Var(&o.minTLS, "min-tls", "least TLS `version` for upgraded connections: 1.2 or 1.3 (default 1.2)")
	fs.StringVar(&o.memory, "memory", "", "load what origins demanded from `file` (if present) and save it back after the request")
	fs.Float64Var(&seconds, "m", 30, "give up after this many `seconds`; 0 for no limit")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: h426 [flags] URL\n       h426 demo\n\nflags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return options{}, err // the flag package has printed it
	}
	if err := o.finish(fs.Args(), seconds); err != nil {
		fmt.Fprintf(fs.Output(), "h426: %v\n", err)
		fs.Usage()
		return options{}, err
	}
	return o, nil
}

// finish checks what the flag package cannot: the URL and the timeout.
func (o *options) finish(rest []string, seconds float64) error {
	switch {
	case len(rest) == 0:
		return errors.New("no URL given")
	case len(rest) > 1:
		return fmt.Errorf("one URL expected, got %q (flags go before the URL)", rest)
	case seconds < 0:
		return fmt.Errorf("-m %v: must not be negative", seconds)
	}
	u, err := url.Parse(rest[0])
	if err != nil {
		return err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q: want an http:// or https:// URL", rest[0])
	}
	o.url = rest[0]
	o.timeout = time.Duration(seconds * float64(time.Second))
	return nil
}

// header is one -H flag.
type header struct{ name, value string }

// headerFlag collects -H flags in order.
type headerFlag []header

func (h *headerFlag) String() string {
	lines := make([]string, len(*h))
	for i, f := range *h {
		lines[i] = f.name + ": " + f.value
	}
	return strings.Join(lines, ", ")
}

func (h *headerFlag) Set(line string) error {
	name, value, ok := strings.Cut(line, ":")
	value = strings.TrimSpace(value)
	switch {
	case !ok:
		return errors.New("want 'Name: value'")
	case !httpguts.ValidHeaderFieldName(name):
		return fmt.Errorf("%q is not a valid header name", name)
	case !httpguts.ValidHeaderFieldValue(value):
		return fmt.Errorf("%q is not a valid header value", value)
	}
	*h = append(*h, header{name: name, value: value})
	return nil
}

// dataFlag is the body from -d flags; set tells an empty -d from none.
type dataFlag struct {
	set  bool
	body []byte
}

func (d *dataFlag) String() string { return string(d.body) }

// Set reads "@file" at once, so a missing file is a usage error.
func (d *dataFlag) Set(arg string) error {
	part := []byte(arg)
	if name, ok := strings.CutPrefix(arg, "@"); ok {
		var err error
		if part, err = os.ReadFile(name); err != nil {
			return err
		}
	}
	if d.set {
		d.body = append(d.body, '&') // as curl joins repeated -d
	}
	d.body = append(d.body, part...)
	d.set = true
	return nil
}

// tlsVersionFlag is --min-tls; zero leaves the library's floor, TLS 1.2.
type tlsVersionFlag uint16

func (v *tlsVersionFlag) String() string {
	if *v == 0 {
		return ""
	}
	return tls.VersionName(uint16(*v))
}

func (v *tlsVersionFlag) Set(s string) error {
	switch s {
	case "1.2":
		*v = tls.VersionTLS12
	case "1.3":
		*v = tls.VersionTLS13
	default:
		return errors.New("want 1.2 or 1.3")
	}
	return nil
}
