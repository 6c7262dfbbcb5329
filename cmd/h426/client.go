package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/h426/upgrade"
)

// maxRedirects is how many redirects -L follows, curl's --max-redirs default.
const maxRedirects = 50

// errHTTPFailed is -f's error for a status of 400 or more.
var errHTTPFailed = errors.New("the requested URL returned error")

// fetch sends the request the options describe, writes the response as
// they ask, and returns the exit status.
func fetch(o options, stdout, stderr io.Writer) int {
	errOut, warnOut := stderr, stderr
	if o.silent {
		warnOut = io.Discard
		if !o.showErr {
			errOut = io.Discard
		}
	}
	start := time.Now()
	got, err := transfer(o, stdout, stderr, warnOut)
	got.elapsed = time.Since(start)
	if o.writeOut != "" {
		io.WriteString(stdout, got.expand(string(o.writeOut)))
	}
	switch {
	case errors.Is(err, errHTTPFailed):
		fmt.Fprintf(errOut, "h426: %v\n", err)
		return exitHTTPFailed
	case err != nil:
		reportError(errOut, err)
		return exitError
	}
	return exitOK
}

// transfer does the work of fetch; -v writes to stderr, warnings to warnings.
func transfer(o options, stdout, stderr, warnings io.Writer) (got transferInfo, err error) {
	tlsConf, err := clientTLS(o, warnings)
	if err != nil {
		return got, err
	}
	transport := &upgrade.Transport{
		Base:          newBase(o.first, tlsConf),
		MinTLSVersion: uint16(o.minTLS),
	}
	defer func() { err = errors.Join(err, transport.Close()) }()

	ctx, cancel := withTimeout(context.Background(), o.timeout)
	defer cancel()
	req, err := newRequest(ctx, o)
	if err != nil {
		return got, err
	}
	var trace *verbose
	if o.verbose {
		trace = newVerbose(stderr, req)
		defer trace.stop()
		req = req.WithContext(trace.context(req.Context()))
	}
	if o.memory != "" {
		if err := loadMemory(transport, o.memory, warnings); err != nil {
			return got, err
		}
	}
	var seed *memoryEntry
	if o.first.http == "3" {
		if seed, err = preferHTTP3(transport, req, warnings); err != nil {
			return got, err
		}
		if trace != nil && seed != nil {
			trace.seeded = seed.Origin
		}
	}
	if o.memory != "" {
		defer func() { err = errors.Join(err, saveMemory(transport, o.memory, seed)) }()
	}

	resp, err := newClient(transport, o.follow, trace).Do(req)
	if err != nil {
		return got, err
	}
	defer resp.Body.Close()
	got = infoOf(resp)
	if trace != nil {
		trace.final(resp)
	}
	if o.fail && resp.StatusCode >= 400 {
		return got, fmt.Errorf("%w: %d", errHTTPFailed, resp.StatusCode)
	}
	out, closeOut, err := openOutput(o.output, stdout)
	if err != nil {
		return got, err
	}
	defer func() { err = errors.Join(err, closeOut()) }()
	if o.include || o.head {
		writeHead(out, resp)
	}
	got.size, err = io.Copy(out, resp.Body)
	return got, err
}

// newClient wraps rt in a client that, like curl, follows redirects only
// when asked (-L).
func newClient(rt http.RoundTripper, follow bool, trace *verbose) *http.Client {
	return &http.Client{
		Transport: rt,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			switch {
			case !follow:
				return http.ErrUseLastResponse
			case len(via) > maxRedirects:
				return fmt.Errorf("stopped after %d redirects", maxRedirects)
			}
			if trace != nil {
				trace.redirect(req)
			}
			return nil
		},
	}
}

// legacy is what --legacy and the demo's client offer first: HTTP/1.1 and
// TLS 1.2 at most, so that a strict server answers with a demand.
var legacy = firstRequest{http: "1.1", maxTLS: tls.VersionTLS12}

// newBase returns the transport every request goes through first, offering
// what first says; upgraded transports are cloned from it.
func newBase(first firstRequest, tlsConf *tls.Config) *http.Transport {
	base := http.DefaultTransport.(*http.Transport).Clone()
	base.TLSClientConfig = tlsConf
	tlsConf.MinVersion, tlsConf.MaxVersion = first.minTLS, first.maxTLS
	if first.http == "1.1" {
		base.Protocols = new(http.Protocols)
		base.Protocols.SetHTTP1(true)
		// ALPN http/1.1, as curl --http1.1 offers it: an h2-only server
		// then refuses the handshake with no_application_protocol.
		tlsConf.NextProtos = []string{"http/1.1"}
	}
	return base
}

// clientTLS returns the TLS settings from --cacert and -k.
func clientTLS(o options, warnings io.Writer) (*tls.Config, error) {
	conf := &tls.Config{}
	if o.insecure {
		fmt.Fprintln(warnings, "h426: warning: -k: server certificates are not verified")
		conf.InsecureSkipVerify = true
	}
	if o.caFile != "" {
		roots, err := loadRoots(o.caFile)
		if err != nil {
			return nil, err
		}
		conf.RootCAs = roots
	}
	return conf, nil
}

func loadRoots(name string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--cacert %s: no PEM certificate found", name)
	}
	return roots, nil
}

// newRequest builds the request. The body is a bytes.Reader so that
// net/http sets GetBody and the transport may send it again after a 426.
func newRequest(ctx context.Context, o options) (*http.Request, error) {
	method := o.method
	var body io.Reader
	if o.data.set {
		body = bytes.NewReader(o.data.body)
		if method == "" {
			method = http.MethodPost
		}
	}
	if method == "" {
		method = http.MethodGet
	}
	req, err := http.NewRequestWithContext(ctx, method, o.url, body)
	if err != nil {
		return nil, err
	}
	for _, h := range o.headers {
		if http.CanonicalHeaderKey(h.name) == "Host" {
			req.Host = h.value // net/http sends req.Host, not Header["Host"]
			continue
		}
		req.Header.Add(h.name, h.value)
	}
	if o.data.set && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded") // as curl -d does
	}
	return req, nil
}

func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d == 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}
