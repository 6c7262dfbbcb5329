package compose_test

import (
	"net/http"
	"testing"

	"github.com/h426/upgrade"
	"golang.org/x/oauth2"
)

// oauth2.Transport outside, upgrade.Transport inside, the legacy
// *http.Transport as its Base: the bearer token is on every request the
// server sees, the refused one, its replay over HTTP/2 and the remembered
// ones after it.
func TestOAuth2OutsideUpgrade(t *testing.T) {
	s := startServer(t, strictH2)
	up := &upgrade.Transport{Base: legacyBase(s)}
	t.Cleanup(func() { up.Close() })
	client := &http.Client{Transport: &oauth2.Transport{
		Source: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "t0ken"}),
		Base:   up,
	}}

	for i := range 3 {
		resp, err := client.Get(s.URL + "/r")
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if got := readAll(t, resp); resp.StatusCode != 200 || resp.Proto != "HTTP/2.0" || got != "ok\n" {
			t.Errorf("request %d: %d over %s, body %q; want 200 over HTTP/2.0, body %q", i, resp.StatusCode, resp.Proto, got, "ok\n")
		}
		if !verifiedByCA(t, resp, s) {
			t.Errorf("request %d: not verified by the test CA that only Base trusts", i)
		}
	}

	seen := s.Requests()
	if len(seen) != 4 || s.Refused() != 1 {
		t.Fatalf("server saw %d requests, %d refused; want 4 (426, replay, 2 remembered), 1 refused", len(seen), s.Refused())
	}
	wantProto := []string{"HTTP/1.1", "HTTP/2.0", "HTTP/2.0", "HTTP/2.0"}
	for i, r := range seen {
		if r.Proto != wantProto[i] || r.Refused != (i == 0) {
			t.Errorf("server request %d: %s refused=%t, want %s refused=%t", i, r.Proto, r.Refused, wantProto[i], i == 0)
		}
		if got := r.Header.Get("Authorization"); got != "Bearer t0ken" {
			t.Errorf("server request %d (%s): Authorization %q, want %q", i, r.Proto, got, "Bearer t0ken")
		}
	}
}
