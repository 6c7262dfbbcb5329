package upgrade

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/h426/upgrade/internal/testserver"
)

// The policy without a server, in the style of net/http's
// TestShouldCopyHeaderOnRedirect: what each offer becomes, for each kind of
// origin, 426, route and request.
func TestTargetFor(t *testing.T) {
	const (
		tls12 = tls.VersionTLS12
		tls13 = tls.VersionTLS13
	)
	h1Clear := situation{respMajor: 1, floor: tls12}
	h1TLS12 := situation{secure: true, respMajor: 1, respTLS: tls12, floor: tls12}
	h2TLS13 := situation{secure: true, respMajor: 2, respTLS: tls13, floor: tls12}
	h3 := situation{secure: true, respMajor: 3, respTLS: tls13, floor: tls12}
	h2c := situation{respMajor: 2, floor: tls12}
	with := func(s situation, change func(*situation)) situation { change(&s); return s }
	proxied := func(s *situation) { s.proxied = true }
	ownUpgrade := func(s *situation) { s.needsHTTP1 = true }
	floor13 := func(s *situation) { s.floor = tls13 }

	tests := []struct {
		s       situation
		offer   string
		want    target
		wantErr error
	}{
		// HTTP/2: over TLS on https://, h2c on http://.
		{h1TLS12, "HTTP/2", target{kind: targetHTTP2}, nil},
		{h1TLS12, "HTTP/2.0", target{kind: targetHTTP2}, nil},
		{h1TLS12, "h2", target{kind: targetHTTP2}, nil},
		{h1TLS12, "H2", target{kind: targetHTTP2}, nil},
		{h1Clear, "HTTP/2", target{kind: targetH2C}, nil},
		{h1Clear, "h2", target{kind: targetH2C}, nil},
		{h2TLS13, "HTTP/2", target{}, ErrNoChange},
		{h2c, "HTTP/2", target{}, ErrNoChange},
		{h3, "HTTP/2", target{kind: targetHTTP2}, nil},
		// h2c: never from https://.
		{h1Clear, "h2c", target{kind: targetH2C}, nil},
		{h1Clear, "H2C", target{kind: targetH2C}, nil},
		{h1TLS12, "h2c", target{}, ErrDowngrade},
		{h2TLS13, "h2c", target{}, ErrDowngrade},
		{h2c, "h2c", target{}, ErrNoChange},
		// HTTP/3: https:// only.
		{h1TLS12, "HTTP/3", target{kind: targetHTTP3}, nil},
		{h1TLS12, "h3", target{kind: targetHTTP3}, nil},
		{h2TLS13, "HTTP/3.0", target{kind: targetHTTP3}, nil},
		{h1Clear, "HTTP/3", target{}, ErrNeedsTLS},
		{h3, "h3", target{}, ErrNoChange},
		// TLS: a stricter TLS on https://, in-band TLS on http://; never
		// below the floor, and no change when the 426 met the demand.
		{h1TLS12, "TLS/1.3", target{kind: targetTLS, minTLS: tls13}, nil},
		{h1TLS12, "TLS/1.2", target{}, ErrNoChange},
		{h1TLS12, "TLS/1.0", target{}, ErrNoChange},
		{h1TLS12, "TLS", target{}, ErrNoChange},
		{h2TLS13, "TLS/1.3", target{}, ErrNoChange},
		{h1Clear, "TLS/1.0", target{kind: targetInbandTLS, minTLS: tls12}, nil},
		{h1Clear, "TLS", target{kind: targetInbandTLS, minTLS: tls12}, nil},
		{h1Clear, "tls/1.3", target{kind: targetInbandTLS, minTLS: tls13}, nil},
		{with(h1Clear, floor13), "TLS/1.0", target{kind: targetInbandTLS, minTLS: tls13}, nil},
		{with(h1TLS12, floor13), "TLS/1.2", target{}, ErrNoChange},
		{h1TLS12, "TLS/2.0", target{}, ErrUnsupportedOffer},
		// Not upgrades this transport makes.
		{h1TLS12, "websocket", target{}, ErrUnsupportedOffer},
		{h1TLS12, "HTTP/1.1", target{}, ErrUnsupportedOffer},
		{h1Clear, "HTTP/2.5", target{}, ErrUnsupportedOffer},
		// A proxy carries the request: nothing that needs a direct route.
		{with(h1Clear, proxied), "h2c", target{}, ErrProxied},
		{with(h1Clear, proxied), "HTTP/2", target{}, ErrProxied},
		{with(h1Clear, proxied), "TLS/1.2", target{}, ErrProxied},
		{with(h1TLS12, proxied), "HTTP/3", target{}, ErrProxied},
		{with(h1TLS12, proxied), "HTTP/2", target{kind: targetHTTP2}, nil},
		{with(h1TLS12, proxied), "TLS/1.3", target{kind: targetTLS, minTLS: tls13}, nil},
		// A request with an upgrade of its own stays on HTTP/1.1.
		{with(h1TLS12, ownUpgrade), "HTTP/2", target{}, ErrUnsupportedOffer},
		{with(h1TLS12, ownUpgrade), "HTTP/3", target{}, ErrUnsupportedOffer},
		{with(h1Clear, ownUpgrade), "h2c", target{}, ErrUnsupportedOffer},
		{with(h1TLS12, ownUpgrade), "TLS/1.3", target{kind: targetTLS, minTLS: tls13, http1Only: true}, nil},
		{with(h1Clear, ownUpgrade), "TLS/1.2", target{kind: targetInbandTLS, minTLS: tls12}, nil},
	}
	for _, tt := range tests {
		offer := parseOne(t, tt.offer)
		got, err := targetFor(tt.s, offer)
		if got != tt.want || !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
			t.Errorf("targetFor(%+v, %s) = %+v, %v; want %+v, %v", tt.s, tt.offer, got, err, tt.want, tt.wantErr)
		}
	}
}

// The rules no combination may break, over every token × scheme × 426's
// protocol × proxy × request kind.
func TestTargetForInvariants(t *testing.T) {
	tokens := []string{"HTTP/2", "HTTP/2.0", "h2", "h2c", "HTTP/3", "HTTP/3.0", "h3", "TLS", "TLS/1.0",
		"TLS/1.1", "TLS/1.2", "TLS/1.3", "TLS/9.9", "websocket", "HTTP/1.1", "HTTP/1.0"}
	type arrival struct {
		secure     bool
		major      int
		tlsVersion uint16
	}
	arrivals := []arrival{
		{false, 1, 0}, {false, 2, 0},
		{true, 1, tls.VersionTLS12}, {true, 1, tls.VersionTLS13}, {true, 2, tls.VersionTLS12},
		{true, 2, tls.VersionTLS13}, {true, 3, tls.VersionTLS13},
	}
	for _, token := range tokens {
		offer := parseOne(t, token)
		for _, a := range arrivals {
			for _, proxied := range []bool{false, true} {
				for _, own := range []bool{false, true} {
					for _, floor := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
						s := situation{secure: a.secure, respMajor: a.major, respTLS: a.tlsVersion, proxied: proxied, needsHTTP1: own, floor: floor}
						tgt, err := targetFor(s, offer)
						name := fmt.Sprintf("%s %+v", token, s)
						if err != nil {
							if tgt != (target{}) {
								t.Errorf("%s: refused with a target %+v", name, tgt)
							}
							continue
						}
						checkInvariants(t, name, s, offer, tgt)
					}
				}
			}
		}
	}
}

func checkInvariants(t *testing.T, name string, s situation, offer Protocol, tgt target) {
	t.Helper()
	switch {
	case s.secure && !tgt.encrypted():
		t.Errorf("%s: https:// origin sent in clear (%+v)", name, tgt)
	case s.proxied && tgt.directRoute():
		t.Errorf("%s: proxied request on a direct route (%+v)", name, tgt)
	case s.needsHTTP1 && tgt.multiplexed():
		t.Errorf("%s: own upgrade over HTTP/2 or HTTP/3", name)
	case s.needsHTTP1 && tgt.kind == targetTLS && !tgt.http1Only:
		t.Errorf("%s: own upgrade over a TLS that may offer h2", name)
	case tgt.multiplexed() && s.respMajor == 2 && tgt.kind != targetHTTP3:
		t.Errorf("%s: HTTP/2 again after a 426 over HTTP/2", name)
	case tgt.kind == targetHTTP3 && s.respMajor == 3:
		t.Errorf("%s: HTTP/3 again after a 426 over HTTP/3", name)
	case (tgt.kind == targetTLS || tgt.kind == targetInbandTLS) && tgt.minTLS < s.floor:
		t.Errorf("%s: minimum TLS %x below the floor", name, tgt.minTLS)
	case tgt.kind == targetTLS && s.respTLS >= tgt.minTLS:
		t.Errorf("%s: TLS target no stricter than the 426's connection", name)
	}
}

// Offers keep the server's order; two offers for one target count once;
// CheckUpgrade's answer can narrow and reorder, never widen.
func TestUsableOffersAndPicked(t *testing.T) {
	s := situation{secure: true, respMajor: 1, respTLS: tls.VersionTLS12, floor: tls.VersionTLS12}
	offered := parseList(t, "websocket, h2, HTTP/2, TLS/1.3, h2c, HTTP/3")
	usable, skipped := usableOffers(s, offered)
	if got := fmt.Sprint(offersOf(usable)); got != "[h2 TLS/1.3 HTTP/3]" {
		t.Errorf("usable %s, want [h2 TLS/1.3 HTTP/3]", got)
	}
	wantSkipped := []error{ErrUnsupportedOffer, ErrNoChange, ErrDowngrade}
	if len(skipped) != len(wantSkipped) {
		t.Fatalf("skipped %+v, want %d", skipped, len(wantSkipped))
	}
	for i, want := range wantSkipped {
		if !errors.Is(skipped[i].Reason, want) {
			t.Errorf("skipped[%d] = %+v, want %v", i, skipped[i], want)
		}
	}
	order := parseList(t, "HTTP/3, h2c, websocket, HTTP/3, h2")
	if got := fmt.Sprint(offersOf(picked(usable, order))); got != "[HTTP/3 h2]" {
		t.Errorf("picked %s, want [HTTP/3 h2]: narrowed and reordered, nothing added, each once", got)
	}
	if got := picked(usable, nil); len(got) != 0 {
		t.Errorf("picked nothing gave %+v", got)
	}
}

// After an encrypted attempt failed, only encrypted candidates remain.
func TestOnlyEncrypted(t *testing.T) {
	cs := []candidate{
		{offer: Protocol{"h2c", ""}, target: target{kind: targetH2C}},
		{offer: Protocol{"TLS", "1.2"}, target: target{kind: targetInbandTLS}},
		{offer: Protocol{"h2c", ""}, target: target{kind: targetH2C}},
	}
	if got := fmt.Sprint(offersOf(onlyEncrypted(cs))); got != "[TLS/1.2]" {
		t.Errorf("kept %s, want [TLS/1.2]", got)
	}
}

func TestNeedsHTTP1(t *testing.T) {
	tests := []struct {
		method string
		header http.Header
		want   bool
	}{
		{"GET", nil, false},
		{"CONNECT", nil, true},
		{"GET", http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}}, true},
		{"GET", http.Header{"Connection": {"keep-alive, upgrade"}, "Upgrade": {"websocket"}}, true},
		{"GET", http.Header{"Upgrade": {"websocket"}}, false},
		{"GET", http.Header{"Connection": {"Upgrade"}}, false},
	}
	for _, tt := range tests {
		req := &http.Request{Method: tt.method, Header: tt.header}
		if req.Header == nil {
			req.Header = http.Header{}
		}
		if got := needsHTTP1(req); got != tt.want {
			t.Errorf("needsHTTP1(%s %v) = %v, want %v", tt.method, tt.header, got, tt.want)
		}
	}
}

func parseOne(t *testing.T, token string) Protocol {
	t.Helper()
	offered := parseList(t, token)
	if len(offered) != 1 {
		t.Fatalf("%q is %d protocols", token, len(offered))
	}
	return offered[0]
}

func parseList(t *testing.T, list string) []Protocol {
	t.Helper()
	offered, err := ParseUpgrade(http.Header{"Upgrade": {list}})
	if err != nil {
		t.Fatal(err)
	}
	return offered
}

// A WebSocket handshake needs HTTP/1.1: neither the memory nor a 426 sends
// it over HTTP/2 with its Upgrade header stripped.
func TestOwnUpgradeStaysOnHTTP1(t *testing.T) {
	s := startServer(t, testserver.Config{TLS: true,
		Require: func(r *http.Request) bool { return r.ProtoMajor >= 2 || r.Header.Get("Upgrade") == "websocket" },
		Upgrade: []string{"HTTP/2"}})
	tr := newTransport(t, legacyBase(t, s.CertPool()))
	resp, err := tr.RoundTrip(newRequest(t, testContext(t), "GET", s.URL+"/api", nil)) // learns HTTP/2
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	ws := newRequest(t, testContext(t), "GET", s.URL+"/ws", nil)
	ws.Header.Set("Connection", "Upgrade")
	ws.Header.Set("Upgrade", "websocket")
	resp, err = tr.RoundTrip(ws)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	seen := s.Requests()
	if last := seen[len(seen)-1]; last.Path != "/ws" || last.Proto != "HTTP/1.1" || last.Header.Get("Upgrade") != "websocket" {
		t.Errorf("WebSocket handshake arrived as %s %s with Upgrade %q", last.Path, last.Proto, last.Header.Get("Upgrade"))
	}

	t.Run("a 426 offering HTTP/2 to it", func(t *testing.T) {
		s := startServer(t, testserver.Config{TLS: true, Require: testserver.RefuseAll, Upgrade: []string{"HTTP/2"}})
		tr := newTransport(t, legacyBase(t, s.CertPool()))
		var rec recorder
		ws := newRequest(t, WithTrace(testContext(t), rec.trace()), "GET", s.URL, nil)
		ws.Header.Set("Connection", "Upgrade")
		ws.Header.Set("Upgrade", "websocket")
		resp, err := tr.RoundTrip(ws)
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
		if resp.StatusCode != 426 || s.Count() != 1 || !errors.Is(rec.decided[0].Skipped[0].Reason, ErrUnsupportedOffer) {
			t.Errorf("got %d after %d requests, skipped %v; want the 426 back", resp.StatusCode, s.Count(), rec.decided[0].Skipped)
		}
	})
}

// A stricter TLS keeps a request that needs HTTP/1.1 on HTTP/1.1, whether
// the demand is met now or remembered: its connections offer only
// http/1.1, as net/http's own do for such a request, even when Base speaks
// HTTP/2.
func TestOwnUpgradeOverStricterTLS(t *testing.T) {
	s := startServer(t, testserver.Config{TLS: true, Require: testserver.RequireTLS13, Upgrade: []string{"TLS/1.3"}})
	base := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.CertPool(), MaxVersion: tls.VersionTLS12}, ForceAttemptHTTP2: true}
	t.Cleanup(base.CloseIdleConnections)
	tr := newTransport(t, base)
	websocket := func() *http.Request {
		ws := newRequest(t, testContext(t), "GET", s.URL+"/ws", nil)
		ws.Header.Set("Connection", "Upgrade")
		ws.Header.Set("Upgrade", "websocket")
		return ws
	}
	for i, req := range []*http.Request{
		websocket(), // meets the 426 and is replayed
		newRequest(t, testContext(t), "GET", s.URL+"/api", nil), // remembered: HTTP/2 over TLS 1.3
		websocket(), // remembered, and still HTTP/1.1
	} {
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		readAll(t, resp)
		seen := s.Requests()
		last := seen[len(seen)-1]
		wantProto := "HTTP/1.1"
		if req.Header.Get("Upgrade") == "" {
			wantProto = "HTTP/2.0"
		}
		if resp.StatusCode != 200 || last.Proto != wantProto || last.TLSVersion != tls.VersionTLS13 || last.Header.Get("Upgrade") != req.Header.Get("Upgrade") {
			t.Errorf("request %d: %d; arrived over %s TLS %x with Upgrade %q, want %s over TLS 1.3", i, resp.StatusCode, last.Proto, last.TLSVersion, last.Header.Get("Upgrade"), wantProto)
		}
	}
}
