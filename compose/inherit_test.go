package compose_test

import (
	"context"
	"net/http"
	"slices"
	"testing"

	"github.com/h426/upgrade"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"golang.org/x/oauth2"
)

// compositions put each middleware outside an upgrade.Transport and return
// how to GET a URL through the result.
var compositions = []struct {
	name   string
	client func(t *testing.T, up *upgrade.Transport) func(url string) (*http.Response, error)
}{
	{"oauth2", func(_ *testing.T, up *upgrade.Transport) func(string) (*http.Response, error) {
		c := &http.Client{Transport: &oauth2.Transport{
			Source: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "t0ken"}),
			Base:   up,
		}}
		return c.Get
	}},
	{"otelhttp", func(t *testing.T, up *upgrade.Transport) func(string) (*http.Response, error) {
		tp := sdktrace.NewTracerProvider()
		t.Cleanup(func() { tp.Shutdown(context.Background()) })
		c := &http.Client{Transport: otelhttp.NewTransport(up, otelhttp.WithTracerProvider(tp))}
		return c.Get
	}},
	{"retryablehttp", func(_ *testing.T, up *upgrade.Transport) func(string) (*http.Response, error) {
		return newRetryClient(up).Get
	}},
}

// The test CA's roots are only in Base, never in
// upgrade.Transport.TLSClientConfig: the HTTP/2 replay and the remembered
// request verify the server with them, whatever middleware is outside.
func TestInheritsRootsFromBase(t *testing.T) {
	for _, c := range compositions {
		t.Run(c.name, func(t *testing.T) {
			s := startServer(t, strictH2)
			up := &upgrade.Transport{Base: legacyBase(s)} // no TLSClientConfig
			t.Cleanup(func() { up.Close() })
			get := c.client(t, up)

			for i := range 2 {
				resp, err := get(s.URL)
				if err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				readAll(t, resp)
				if resp.StatusCode != 200 || resp.Proto != "HTTP/2.0" {
					t.Errorf("request %d: %d over %s, want 200 over HTTP/2.0", i, resp.StatusCode, resp.Proto)
				}
				if !verifiedByCA(t, resp, s) {
					t.Errorf("request %d: not verified by the test CA that only Base trusts", i)
				}
			}
			if n, refused := s.Count(), s.Refused(); n != 3 || refused != 1 {
				t.Errorf("server saw %d requests, %d refused; want 3 (426, replay, remembered), 1", n, refused)
			}
		})
	}
}

// Base's proxy and dialer carry the upgraded connections too: Base can dial
// nothing but an HTTP CONNECT proxy, and the HTTP/2 replay reaches the
// server through a tunnel of its own, as the first request did.
func TestInheritsProxyAndDialerFromBase(t *testing.T) {
	for _, c := range compositions {
		t.Run(c.name, func(t *testing.T) {
			s := startServer(t, strictH2)
			proxy := startConnectProxy(t)
			dialer := &onlyTo{addr: proxy.url.Host}
			base := legacyBase(s)
			base.Proxy = http.ProxyURL(proxy.url)
			base.DialContext = dialer.DialContext
			up := &upgrade.Transport{Base: base}
			t.Cleanup(func() { up.Close() })
			get := c.client(t, up)

			for i := range 3 {
				resp, err := get(s.URL)
				if err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				readAll(t, resp)
				if resp.StatusCode != 200 || resp.Proto != "HTTP/2.0" {
					t.Errorf("request %d: %d over %s, want 200 over HTTP/2.0", i, resp.StatusCode, resp.Proto)
				}
			}

			// One tunnel for Base's HTTP/1.1 request that met the 426, one
			// for the HTTP/2 connection that carried the replay and the two
			// remembered requests.
			if got, want := proxy.Tunnels(), []string{s.Addr, s.Addr}; !slices.Equal(got, want) {
				t.Errorf("proxy tunnels %v, want %v", got, want)
			}
			if got, want := dialer.Dials(), []string{proxy.url.Host, proxy.url.Host}; !slices.Equal(got, want) {
				t.Errorf("dials %v, want %v: only the proxy, once per tunnel", got, want)
			}
			var protos []string
			for _, r := range s.Requests() {
				protos = append(protos, r.Proto)
			}
			if want := []string{"HTTP/1.1", "HTTP/2.0", "HTTP/2.0", "HTTP/2.0"}; !slices.Equal(protos, want) || s.Refused() != 1 {
				t.Errorf("server saw %v, %d refused; want %v, 1 refused", protos, s.Refused(), want)
			}
		})
	}
}
