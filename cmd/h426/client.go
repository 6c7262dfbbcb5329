package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"slices"
	"time"

	"github.com/h426/upgrade"
)

// fetch sends the request the options describe and writes the response
// body, with -i its head first, to stdout.
func fetch(o options, stdout, stderr io.Writer) (err error) {
	tlsConf, err := clientTLS(o, stderr)
	if err != nil {
		return err
	}
	transport := &upgrade.Transport{
		Base:          newBase(o.legacy, tlsConf),
		MinTLSVersion: uint16(o.minTLS),
	}
	defer func() { err = errors.Join(err, transport.Close()) }()
	if o.memory != "" {
		if err := loadMemory(transport, o.memory, stderr); err != nil {
			return err
		}
		defer func() { err = errors.Join(err, saveMemory(transport, o.memory)) }()
	}

	ctx, cancel := withTimeout(context.Background(), o.timeout)
	defer cancel()
	req, err := newRequest(ctx, o)
	if err != nil {
		return err
	}
	var trace *verbose
	if o.verbose {
		trace = newVerbose(stderr, req)
		defer trace.stop()
		req = req.WithContext(trace.context(req.Context()))
	}

	resp, err := newClient(transport).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if trace != nil {
		trace.final(resp)
	}
	if o.include {
		writeHead(stdout, resp)
	}
	_, err = io.Copy(stdout, resp.Body)
	return err
}

// loadMemory imports the origin memory from file; a missing file is an
// empty memory, so the first run creates it.
func loadMemory(transport *upgrade.Transport, file string, stderr io.Writer) error {
	f, err := os.Open(file)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	_, skipped, err := transport.ImportMemory(f)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	if skipped > 0 {
		fmt.Fprintf(stderr, "h426: %s: skipped %d expired or invalid entries\n", file, skipped)
	}
	return nil
}

// saveMemory writes the origin memory to file, replacing it whole.
func saveMemory(transport *upgrade.Transport, file string) error {
	var buf bytes.Buffer
	if err := transport.ExportMemory(&buf); err != nil {
		return err
	}
	return os.WriteFile(file, buf.Bytes(), 0o600)
}

// newClient wraps rt in a client that, like curl, does not follow redirects.
func newClient(rt http.RoundTripper) *http.Client {
	return &http.Client{
		Transport: rt,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// newBase returns the transport every request goes through first; upgraded
// transports are cloned from it. legacy pins it to HTTP/1.1 and at most
// TLS 1.2, so that a strict server answers 426 and the upgrade shows.
func newBase(legacy bool, tlsConf *tls.Config) *http.Transport {
	base := http.DefaultTransport.(*http.Transport).Clone()
	base.TLSClientConfig = tlsConf
	if legacy {
		base.Protocols = new(http.Protocols)
		base.Protocols.SetHTTP1(true)
		base.TLSClientConfig.MaxVersion = tls.VersionTLS12
		// ALPN http/1.1, as curl --http1.1 offers it: an h2-only server
		// then refuses the handshake with no_application_protocol.
		base.TLSClientConfig.NextProtos = []string{"http/1.1"}
	}
	return base
}

// clientTLS returns the TLS settings from --cacert and -k.
func clientTLS(o options, stderr io.Writer) (*tls.Config, error) {
	conf := &tls.Config{}
	if o.insecure {
		fmt.Fprintln(stderr, "h426: warning: -k: server certificates are not verified")
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

// writeHead prints the status line and the headers in sorted order.
func writeHead(w io.Writer, resp *http.Response) {
	fmt.Fprintf(w, "%s %s\n", resp.Proto, resp.Status)
	for _, name := range slices.Sorted(maps.Keys(resp.Header)) {
		for _, value := range resp.Header[name] {
			fmt.Fprintf(w, "%s: %s\n", name, value)
		}
	}
	fmt.Fprintln(w)
}

// reportError prints err and, for a failed upgrade, every attempt.
func reportError(w io.Writer, err error) {
	fmt.Fprintf(w, "h426: %v\n", err)
	var failed *upgrade.UpgradeError
	if !errors.As(err, &failed) {
		return
	}
	fmt.Fprintf(w, "h426: the 426 offered: %s\n", protocolList(failed.Offered))
	for _, a := range failed.Attempts {
		fmt.Fprintf(w, "h426:   %s: %v\n", a.Protocol, a.Err)
	}
}
