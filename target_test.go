package upgrade

import (
	"crypto/tls"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/h426/upgrade/internal/testserver"
)

// The floor applies to HTTP/2 upgrades too.
func TestFloorAppliesToHTTP2(t *testing.T) {
	s := startServer(t, testserver.Config{TLS: true, MaxTLSVersion: tls.VersionTLS12, Require: testserver.RequireHTTP2, Upgrade: []string{"HTTP/2"}})
	tr := newTransport(t, legacyBase(t, s.CertPool()))
	tr.MinTLSVersion = tls.VersionTLS13
	resp, err := tr.RoundTrip(newRequest(t, testContext(t), "GET", s.URL, nil))
	if err == nil {
		readAll(t, resp)
		t.Fatalf("replayed over %s TLS %s below the 1.3 floor", resp.Proto, tls.VersionName(tlsVersion(resp)))
	}
}

// A warm start: the first HTTP/3 request builds its transport from Base
// while Base's own first request sets itself up. -race must stay quiet.
func TestWarmStartDoesNotRaceBase(t *testing.T) {
	h3 := startServer(t, testserver.Config{TLS: true, HTTP3: true, Require: testserver.RequireHTTP3, Upgrade: []string{"h3"}})
	plain := startServer(t, testserver.Config{TLS: true, CA: h3.CA()})
	for range 10 {
		base := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: h3.CertPool()}, ForceAttemptHTTP2: true}
		tr := &Transport{Base: base}
		warm := `{"version":1,"entries":[{"origin":"` + h3.URL + `","protocol":"h3","expires":"2999-01-01T00:00:00Z"}]}`
		if n, _, err := tr.ImportMemory(strings.NewReader(warm)); err != nil || n != 1 {
			t.Fatal(n, err)
		}
		var wg sync.WaitGroup
		for _, u := range []string{h3.URL, plain.URL} {
			wg.Go(func() {
				resp, err := tr.RoundTrip(newRequest(t, testContext(t), "GET", u, nil))
				if err != nil {
					t.Error(err)
					return
				}
				readAll(t, resp)
			})
		}
		wg.Wait()
		tr.Close()
	}
}

// Every kind of target has a row in upgradePairs, so tests run over
// forEachPair cover it.
func TestUpgradePairsCoverEveryKind(t *testing.T) {
	for kind := range kinds {
		if kind == 0 {
			continue
		}
		if !slices.ContainsFunc(upgradePairs, func(p upgradePair) bool { return p.kind == targetKind(kind) }) {
			t.Errorf("target kind %d has no upgrade pair", kind)
		}
	}
}

// One upgraded request per pair arrives over the kind's protocol, at the
// least TLS version the pair demands.
func TestEveryPairUpgrades(t *testing.T) {
	forEachPair(t, func(t *testing.T, p upgradePair) {
		s := startServer(t, p.server)
		tr := newTransport(t, legacyBase(t, s.CertPool()))
		resp, err := tr.RoundTrip(newRequest(t, testContext(t), "GET", s.URL, nil))
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
		if resp.StatusCode != 200 || resp.Proto != p.wantProto || tlsVersion(resp) < p.wantTLS {
			t.Errorf("%d over %s TLS %x, want 200 over %s TLS >= %x", resp.StatusCode, resp.Proto, tlsVersion(resp), p.wantProto, p.wantTLS)
		}
	})
}
