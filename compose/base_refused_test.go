package compose_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/h426/upgrade"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"golang.org/x/oauth2"
)

// Middleware placed as Base hides the *http.Transport whose roots, proxy
// and dialer the upgraded connections must inherit: on a 426 with a usable
// offer RoundTrip refuses with ErrBaseNotTransport, naming the fix, and
// sends nothing more.
func TestMiddlewareAsBaseRefused(t *testing.T) {
	cases := []struct {
		name string
		wrap func(*http.Transport) http.RoundTripper
	}{
		{"otelhttp", func(legacy *http.Transport) http.RoundTripper { return otelhttp.NewTransport(legacy) }},
		{"oauth2", func(legacy *http.Transport) http.RoundTripper {
			return &oauth2.Transport{Source: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "t0ken"}), Base: legacy}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := startServer(t, strictH2)
			up := &upgrade.Transport{Base: c.wrap(legacyBase(s))}
			t.Cleanup(func() { up.Close() })

			resp, err := (&http.Client{Transport: up}).Get(s.URL)
			if resp != nil {
				readAll(t, resp)
			}
			if !errors.Is(err, upgrade.ErrBaseNotTransport) {
				t.Fatalf("got %v, %v; want an error matching upgrade.ErrBaseNotTransport", resp, err)
			}
			if !strings.Contains(err.Error(), "outside") {
				t.Errorf("error %q does not name the fix (middleware outside)", err)
			}
			if n := s.Count(); n != 1 {
				t.Errorf("server saw %d requests, want 1: nothing replayed", n)
			}
		})
	}
}
