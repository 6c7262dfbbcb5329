package upgrade

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"slices"
	"sync"
	"syscall"
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
	errs := capErrors(t)
	for range 10 {
		base := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: h3.CertPool()}, ForceAttemptHTTP2: true}
		tr := &Transport{Base: base, HTTP3HandshakeTimeout: quicSetup}
		remember(t, tr, h3.URL, "h3")
		var wg sync.WaitGroup
		for _, u := range []string{h3.URL, plain.URL} {
			wg.Go(func() {
				resp, err := tr.RoundTrip(newRequest(t, testContext(t), "GET", u, nil))
				if err == nil {
					err = drain(resp)
				}
				if err != nil {
					errs.Error(err)
				}
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

// Which Base dialers are a routing decision HTTP/3 would go around.
func TestOwnDialer(t *testing.T) {
	defaultClone := http.DefaultTransport.(*http.Transport).Clone()
	guarded := &net.Dialer{Control: func(network, address string, c syscall.RawConn) error { return nil }}
	tests := []struct {
		name   string
		base   *http.Transport
		direct bool
		want   bool
	}{
		{"zero http.Transport", &http.Transport{}, false, false},
		{"http.DefaultTransport's clone", defaultClone, false, false},
		{"a net.Dialer with a Control guard", &http.Transport{DialContext: guarded.DialContext}, false, true},
		{"a net.Dialer with its own resolver", &http.Transport{DialContext: (&net.Dialer{Resolver: &net.Resolver{PreferGo: true}}).DialContext}, false, true},
		{"a SOCKS-like func", &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) { return nil, errors.New("x") }}, false, true},
		{"a deprecated Dial", &http.Transport{Dial: net.Dial}, false, true}, //lint:ignore SA1019 the deprecated field is what is tested
		{"own dialer, DirectHTTP3", &http.Transport{DialContext: guarded.DialContext}, true, false},
	}
	for _, tt := range tests {
		tr := &Transport{Base: tt.base, DirectHTTP3: tt.direct}
		if got := tr.ownDialer(); got != tt.want {
			t.Errorf("%s: ownDialer %v, want %v", tt.name, got, tt.want)
		}
	}
}

// An upgraded request goes where Base would send it or not at all: with a
// dialer of Base's own, HTTP/3 (its own UDP socket, its own DNS lookup) is
// not chosen, the next offer is, over that dialer; DirectHTTP3 allows it.
func TestHTTP3NotAroundBasesDialer(t *testing.T) {
	for _, direct := range []bool{false, true} {
		multiplexed := func(r *http.Request) bool { return r.ProtoMajor >= 2 }
		s := startServer(t, testserver.Config{TLS: true, HTTP3: true, Require: multiplexed, Upgrade: []string{"HTTP/3, HTTP/2"}})
		var conns connCounter
		base := legacyBase(t, s.CertPool())
		base.DialContext = conns.DialContext
		tr := newTransport(t, base)
		tr.DirectHTTP3 = direct
		var rec recorder
		resp, err := tr.RoundTrip(newRequest(t, WithTrace(testContext(t), rec.trace()), "GET", s.URL, nil))
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
		wantProto, wantDials := "HTTP/2.0", int32(2)
		if direct {
			wantProto, wantDials = "HTTP/3.0", 1
		}
		if resp.StatusCode != 200 || resp.Proto != wantProto || conns.dialed() != wantDials {
			t.Errorf("DirectHTTP3 %v: %d over %s after %d dials, want %s after %d", direct, resp.StatusCode, resp.Proto, conns.dialed(), wantProto, wantDials)
		}
		if !direct {
			if sk := rec.decided[0].Skipped; len(sk) != 1 || !errors.Is(sk[0].Reason, ErrOwnDialer) {
				t.Errorf("skipped %+v, want HTTP/3 for ErrOwnDialer", sk)
			}
		}
	}
}
