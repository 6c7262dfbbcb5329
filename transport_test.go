package upgrade

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/h426/upgrade/internal/testserver"
)

// Each upgrade target, from the protocol a legacy client speaks to the one
// the server demands.
func TestUpgradeTargets(t *testing.T) {
	tests := []struct {
		name      string
		server    testserver.Config
		floor     uint16
		wantProto string
		wantTLS   uint16 // 0: in clear
		wantALPN  string
	}{
		{"h1 to h2 via HTTP/2", testserver.Config{TLS: true, Require: testserver.RequireHTTP2, Upgrade: []string{"HTTP/2"}}, 0, "HTTP/2.0", tls.VersionTLS12, "h2"},
		{"h1 to h2 via HTTP/2.0", testserver.Config{TLS: true, Require: testserver.RequireHTTP2, Upgrade: []string{"HTTP/2.0"}}, 0, "HTTP/2.0", tls.VersionTLS12, "h2"},
		{"h1 to h2 via lower-case h2", testserver.Config{TLS: true, Require: testserver.RequireHTTP2, Upgrade: []string{"H2"}}, 0, "HTTP/2.0", tls.VersionTLS12, "h2"},
		{"h1 to h2c via h2c", testserver.Config{Require: testserver.RequireHTTP2, Upgrade: []string{"h2c"}}, 0, "HTTP/2.0", 0, ""},
		{"h1 to h2c via HTTP/2", testserver.Config{Require: testserver.RequireHTTP2, Upgrade: []string{"HTTP/2"}}, 0, "HTTP/2.0", 0, ""},
		{"TLS 1.2 to 1.3", testserver.Config{TLS: true, Require: testserver.RequireTLS13, Upgrade: []string{"TLS/1.3"}}, 0, "HTTP/1.1", tls.VersionTLS13, "http/1.1"},
		{"first usable offer wins", testserver.Config{TLS: true, Require: testserver.RequireHTTP2, Upgrade: []string{"websocket, h2c", "HTTP/2, TLS/1.3"}}, 0, "HTTP/2.0", tls.VersionTLS12, "h2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startServer(t, tt.server)
			tr := newTransport(t, legacyBase(t, s.CertPool()))
			tr.MinTLSVersion = tt.floor

			resp, err := tr.RoundTrip(newRequest(t, testContext(t), "GET", s.URL+"/x", nil))
			if err != nil {
				t.Fatal(err)
			}
			if body := readAll(t, resp); resp.StatusCode != 200 || body != "ok\n" {
				t.Fatalf("status %d body %q, want 200 ok", resp.StatusCode, body)
			}
			if resp.Proto != tt.wantProto {
				t.Errorf("Proto %s, want %s", resp.Proto, tt.wantProto)
			}
			if got := tlsVersion(resp); got != tt.wantTLS && !(tt.wantTLS == tls.VersionTLS12 && got >= tt.wantTLS) {
				t.Errorf("TLS %s, want %s", tls.VersionName(got), tls.VersionName(tt.wantTLS))
			}
			seen := s.Requests()
			if len(seen) != 2 || !seen[0].Refused || seen[1].Refused {
				t.Fatalf("server saw %+v, want one refused request then one served", seen)
			}
			if seen[1].Proto != tt.wantProto || seen[1].ALPN != tt.wantALPN || seen[1].Path != "/x" || seen[1].Method != "GET" {
				t.Errorf("replay arrived as %s ALPN %q %s %s", seen[1].Proto, seen[1].ALPN, seen[1].Method, seen[1].Path)
			}
		})
	}
}

// A 426 whose offers would change nothing, or are not ours to take, comes
// back untouched with its body readable, after a single request.
func TestUnusableOffersReturnThe426(t *testing.T) {
	tests := []struct {
		name       string
		tls        bool
		upgrade    []string
		wantReason error
		wantSkip   error
	}{
		{"no Upgrade header", true, nil, ErrNoUsableOffer, nil},
		{"empty Upgrade header", true, []string{""}, ErrNoUsableOffer, nil},
		{"websocket", true, []string{"websocket"}, ErrNoUsableOffer, ErrUnsupportedOffer},
		{"HTTP/1.1", true, []string{"HTTP/1.1"}, ErrNoUsableOffer, ErrUnsupportedOffer},
		{"unknown TLS version", true, []string{"TLS/2.0"}, ErrNoUsableOffer, ErrUnsupportedOffer},
		{"h2c on https would drop TLS", true, []string{"h2c"}, ErrNoUsableOffer, ErrDowngrade},
		{"TLS/1.0 on a TLS 1.2 connection", true, []string{"TLS/1.0"}, ErrNoUsableOffer, ErrNoChange},
		{"TLS on a TLS 1.2 connection", true, []string{"TLS"}, ErrNoUsableOffer, ErrNoChange},
		{"TLS/1.2 on a TLS 1.2 connection", true, []string{"TLS/1.2"}, ErrNoUsableOffer, ErrNoChange},
		{"unknown TLS version on http", false, []string{"TLS/2.0"}, ErrNoUsableOffer, ErrUnsupportedOffer},
		{"malformed header", true, []string{"HTTP/2, web socket"}, new(ParseError), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startServer(t, testserver.Config{TLS: tt.tls, Require: testserver.RefuseAll, Upgrade: tt.upgrade})
			tr := newTransport(t, legacyBase(t, s.CertPool()))
			var rec recorder
			ctx := WithTrace(testContext(t), rec.trace())

			resp, err := tr.RoundTrip(newRequest(t, ctx, "GET", s.URL, nil))
			if err != nil {
				t.Fatal(err)
			}
			if body := readAll(t, resp); resp.StatusCode != 426 || body != "426 upgrade required\n" {
				t.Errorf("status %d body %q, want the 426 and its body", resp.StatusCode, body)
			}
			if n := s.Count(); n != 1 {
				t.Errorf("server saw %d requests, want 1", n)
			}
			reason := rec.reason(t)
			if pe := new(ParseError); errors.As(tt.wantReason, &pe) {
				if !errors.As(reason, &pe) {
					t.Errorf("reason %v, want a *ParseError", reason)
				}
			} else if !errors.Is(reason, tt.wantReason) {
				t.Errorf("reason %v, want %v", reason, tt.wantReason)
			}
			if tt.wantSkip != nil {
				skipped := rec.decided[0].Skipped
				if len(skipped) != 1 || !errors.Is(skipped[0].Reason, tt.wantSkip) {
					t.Errorf("skipped %v, want one for %v", skipped, tt.wantSkip)
				}
			}
		})
	}
}

// A TLS/x.y offer the connection falls short of is met at the floor when the
// floor is higher: the new connection never goes below MinTLSVersion.
func TestTLSOfferRaisedToTheFloor(t *testing.T) {
	s := startServer(t, testserver.Config{TLS: true, MinTLSVersion: tls.VersionTLS10, Require: testserver.RequireTLS13, Upgrade: []string{"TLS/1.1"}})
	base := legacyBase(t, s.CertPool())
	base.TLSClientConfig.MinVersion, base.TLSClientConfig.MaxVersion = tls.VersionTLS10, tls.VersionTLS10
	tr := newTransport(t, base)
	tr.MinTLSVersion = tls.VersionTLS13

	resp, err := tr.RoundTrip(newRequest(t, testContext(t), "GET", s.URL, nil))
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	seen := s.Requests()
	if resp.StatusCode != 200 || tlsVersion(resp) != tls.VersionTLS13 || len(seen) != 2 || seen[0].TLSVersion != tls.VersionTLS10 {
		t.Errorf("got %d over %s after %+v; want TLS 1.0 refused, then 200 over TLS 1.3", resp.StatusCode, tls.VersionName(tlsVersion(resp)), seen)
	}
}

// Responses other than 426 pass through as they are, Upgrade header or not.
func TestNon426PassesThrough(t *testing.T) {
	s := startServer(t, testserver.Config{TLS: true, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Upgrade", "HTTP/2")
		w.WriteHeader(http.StatusOK)
	})})
	tr := newTransport(t, legacyBase(t, s.CertPool()))
	resp, err := tr.RoundTrip(newRequest(t, testContext(t), "GET", s.URL, nil))
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	if resp.StatusCode != 200 || resp.Proto != "HTTP/1.1" || s.Count() != 1 {
		t.Errorf("status %d over %s, server saw %d; want 200 over HTTP/1.1 once", resp.StatusCode, resp.Proto, s.Count())
	}
}

// fixedResponse is a RoundTripper answering every request with one response.
type fixedResponse struct {
	resp  *http.Response
	calls int
}

func (f *fixedResponse) RoundTrip(*http.Request) (*http.Response, error) {
	f.calls++
	return f.resp, nil
}

func TestNon426IsTheSameObjectAndCostsNoAllocation(t *testing.T) {
	want := &http.Response{StatusCode: 200, Header: http.Header{"Upgrade": {"h2c"}}, Body: http.NoBody}
	base := &fixedResponse{resp: want}
	tr := &Transport{Base: base}
	req, _ := http.NewRequest("GET", "http://127.0.0.1/", nil)

	got, err := tr.RoundTrip(req)
	if err != nil || got != want || base.calls != 1 {
		t.Fatalf("got %p, %v after %d calls; want the base's response %p after 1", got, err, base.calls, want)
	}
	if allocs := testing.AllocsPerRun(100, func() { tr.RoundTrip(req) }); allocs != 0 {
		t.Errorf("pass-through allocates %v times per request", allocs)
	}
}

// The loop guard: one replay per RoundTrip, also across nested Transports.
func TestLoopGuard(t *testing.T) {
	tests := []struct {
		name string
		wrap func(t *testing.T, base http.RoundTripper) http.RoundTripper
	}{
		{"one transport", func(t *testing.T, base http.RoundTripper) http.RoundTripper { return newTransport(t, base) }},
		{"nested transports", func(t *testing.T, base http.RoundTripper) http.RoundTripper {
			return newTransport(t, newTransport(t, base))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startServer(t, testserver.Config{TLS: true, Require: testserver.RefuseAll, Upgrade: []string{"HTTP/2"}})
			rt := tt.wrap(t, legacyBase(t, s.CertPool()))
			resp, err := rt.RoundTrip(newRequest(t, testContext(t), "GET", s.URL, nil))
			if err != nil {
				t.Fatal(err)
			}
			readAll(t, resp)
			if resp.StatusCode != 426 || resp.Proto != "HTTP/2.0" {
				t.Errorf("got %d over %s, want the replay's 426 over HTTP/2.0", resp.StatusCode, resp.Proto)
			}
			if n := s.Count(); n != 2 {
				t.Errorf("server saw %d requests, want 2", n)
			}
		})
	}
}

func TestCheckUpgrade(t *testing.T) {
	veto := errors.New("not today")
	tests := []struct {
		name       string
		check      CheckUpgradeFunc
		wantStatus int
		wantTLS    uint16
		wantReason error
	}{
		{"veto", func(*http.Request, *http.Response, []Protocol) ([]Protocol, error) { return nil, veto }, 426, tls.VersionTLS12, veto},
		{"choose none", func(*http.Request, *http.Response, []Protocol) ([]Protocol, error) { return nil, nil }, 426, tls.VersionTLS12, ErrNoUsableOffer},
		{"reorder", func(_ *http.Request, _ *http.Response, usable []Protocol) ([]Protocol, error) {
			return []Protocol{usable[1], usable[0]}, nil
		}, 200, tls.VersionTLS13, nil},
		{"cannot widen", func(*http.Request, *http.Response, []Protocol) ([]Protocol, error) {
			return []Protocol{{"h2c", ""}}, nil
		}, 426, tls.VersionTLS12, ErrNoUsableOffer},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startServer(t, testserver.Config{TLS: true, Require: testserver.RequireTLS13, Upgrade: []string{"HTTP/2, TLS/1.3, h2c"}})
			tr := newTransport(t, legacyBase(t, s.CertPool()))
			tr.CheckUpgrade = tt.check
			var rec recorder
			resp, err := tr.RoundTrip(newRequest(t, WithTrace(testContext(t), rec.trace()), "GET", s.URL, nil))
			if err != nil {
				t.Fatal(err)
			}
			readAll(t, resp)
			if resp.StatusCode != tt.wantStatus || tlsVersion(resp) != tt.wantTLS {
				t.Errorf("got %d over %s, want %d over %s", resp.StatusCode, tls.VersionName(tlsVersion(resp)), tt.wantStatus, tls.VersionName(tt.wantTLS))
			}
			if reason := rec.reason(t); !errors.Is(reason, tt.wantReason) {
				t.Errorf("reason %v, want %v", reason, tt.wantReason)
			}
		})
	}
}

// Upgraded transports inherit the caller's TLS settings; TLSClientConfig
// on the Transport overrides them.
func TestInheritsTLSSettings(t *testing.T) {
	t.Run("client certificate from Base", func(t *testing.T) {
		clientCA, err := testserver.NewCA()
		if err != nil {
			t.Fatal(err)
		}
		cert, err := clientCA.ClientCert("alice")
		if err != nil {
			t.Fatal(err)
		}
		s := startServer(t, testserver.Config{TLS: true, ClientCAs: clientCA.CertPool(), Require: testserver.RequireTLS13, Upgrade: []string{"TLS/1.3"}})
		base := legacyBase(t, s.CertPool())
		base.TLSClientConfig.Certificates = []tls.Certificate{cert}
		base.TLSClientConfig.ServerName = "localhost"
		tr := newTransport(t, base)

		resp, err := tr.RoundTrip(newRequest(t, testContext(t), "GET", s.URL, nil))
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
		seen := s.Requests()
		if resp.StatusCode != 200 || len(seen) != 2 || seen[1].ClientCert != "alice" || seen[1].TLSVersion != tls.VersionTLS13 {
			t.Errorf("status %d, server saw %+v; want the replay over TLS 1.3 with alice's certificate", resp.StatusCode, seen)
		}
		if resp.TLS.ServerName != "localhost" {
			t.Errorf("replay's ServerName %q, want the inherited localhost", resp.TLS.ServerName)
		}
	})
	t.Run("TLSClientConfig overrides Base", func(t *testing.T) {
		s := startServer(t, testserver.Config{TLS: true, Require: testserver.RequireHTTP2, Upgrade: []string{"HTTP/2"}})
		otherCA, err := testserver.NewCA()
		if err != nil {
			t.Fatal(err)
		}
		tr := newTransport(t, legacyBase(t, s.CertPool()))
		tr.TLSClientConfig = &tls.Config{RootCAs: otherCA.CertPool()}

		resp, err := tr.RoundTrip(newRequest(t, testContext(t), "GET", s.URL, nil))
		var ue *UpgradeError
		if !errors.As(err, &ue) {
			t.Fatalf("got %v, %v; want an *UpgradeError", resp, err)
		}
		var certErr *tls.CertificateVerificationError
		if !errors.As(err, &certErr) {
			t.Errorf("error %v does not carry the certificate failure", err)
		}
		if ue.Response.StatusCode != 426 || readAll(t, ue.Response) != "426 upgrade required\n" {
			t.Errorf("UpgradeError.Response is not the buffered 426")
		}
		if len(ue.Attempts) != 1 || ue.Attempts[0].Protocol.String() != "HTTP/2" || len(ue.Offered) != 1 {
			t.Errorf("attempts %v offered %v", ue.Attempts, ue.Offered)
		}
		if !strings.HasPrefix(err.Error(), "upgrade: ") {
			t.Errorf("message %q lacks the package prefix", err)
		}
		if n := s.Count(); n != 1 {
			t.Errorf("server saw %d requests, want only the first", n)
		}
	})
}

func TestCloseReleasesAndRefuses(t *testing.T) {
	s := startServer(t, testserver.Config{TLS: true, Require: testserver.RequireHTTP2, Upgrade: []string{"HTTP/2"}})
	tr := &Transport{Base: legacyBase(t, s.CertPool())}
	resp, err := tr.RoundTrip(newRequest(t, testContext(t), "GET", s.URL, nil))
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if err := tr.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	body := &countingBody{r: strings.NewReader("x")}
	req := newRequest(t, testContext(t), "POST", s.URL, body)
	if _, err := tr.RoundTrip(req); !errors.Is(err, ErrClosed) {
		t.Fatalf("RoundTrip after Close: %v, want ErrClosed", err)
	}
	body.waitCloses(t)
}

// No fallback once the replay had a connection: the request may have been
// acted on.
func TestNoFallbackAfterConnection(t *testing.T) {
	abort := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { panic(http.ErrAbortHandler) })
	s := startServer(t, testserver.Config{TLS: true, Require: testserver.RequireHTTP2, Upgrade: []string{"HTTP/2, TLS/1.3"}, Handler: abort})
	tr := newTransport(t, legacyBase(t, s.CertPool()))
	_, err := tr.RoundTrip(newRequest(t, testContext(t), "GET", s.URL, nil))
	if err == nil {
		t.Fatal("want an error")
	}
	var ue *UpgradeError
	if errors.As(err, &ue) {
		t.Errorf("got *UpgradeError after a connection: %v", err)
	}
	if n := s.Count(); n != 2 {
		t.Errorf("server saw %d requests, want 2", n)
	}
}

// HTTP/2 offered on a 426 that already came over HTTP/2 changes nothing.
func TestHTTP2OverHTTP2IsNoChange(t *testing.T) {
	s := startServer(t, testserver.Config{TLS: true, Require: testserver.RefuseAll, Upgrade: []string{"HTTP/2"}})
	base := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.CertPool()}, ForceAttemptHTTP2: true}
	t.Cleanup(base.CloseIdleConnections)
	tr := newTransport(t, base)
	var rec recorder
	resp, err := tr.RoundTrip(newRequest(t, WithTrace(testContext(t), rec.trace()), "GET", s.URL, nil))
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	if s.Count() != 1 || resp.Proto != "HTTP/2.0" {
		t.Fatalf("server saw %d over %s", s.Count(), resp.Proto)
	}
	if sk := rec.decided[0].Skipped; len(sk) != 1 || !errors.Is(sk[0].Reason, ErrNoChange) {
		t.Errorf("skipped %v", sk)
	}
}

// Close releases every upgraded connection: an idle one at once, and one
// whose response is still being read once its body is closed, after the
// response finished. QUIC does not dial through Base's DialContext, so
// HTTP/3 has a test of its own (TestCloseLetsHTTP3ResponseFinish).
func TestCloseReleasesUpgradedConnections(t *testing.T) {
	forEachPair(t, func(t *testing.T, p upgradePair) {
		for _, inFlight := range []bool{false, true} {
			release := make(chan struct{})
			cfg := p.server
			cfg.Handler = heldResponse(release)
			s := startServer(t, cfg)
			var conns connCounter
			base := legacyBase(t, s.CertPool())
			base.DialContext = conns.DialContext
			tr := &Transport{Base: base}
			resp, err := tr.RoundTrip(newRequest(t, testContext(t), "GET", s.URL, nil))
			if err != nil {
				t.Fatal(err)
			}
			if !inFlight {
				close(release)
				readAll(t, resp) // to EOF and closed before Close: the connection is idle
			}
			if err := tr.Close(); err != nil {
				t.Fatal(err)
			}
			if inFlight {
				close(release)
				if body := readAll(t, resp); body != "ok\n" {
					t.Errorf("in flight at Close: got %q over %s", body, resp.Proto)
				}
			}
			conns.waitAllClosed(t)
		}
	}, targetHTTP2, targetH2C, targetTLS, targetInbandTLS)
}

// A failed TLS attempt never falls back to cleartext: an attacker who breaks
// the handshake must not win the request in clear.
func TestNoFallbackFromTLSToClear(t *testing.T) {
	otherCA, err := testserver.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	s := startServer(t, testserver.Config{InbandTLS: testserver.InbandRFC2817,
		Require: func(r *http.Request) bool { return r.TLS != nil || r.ProtoMajor == 2 },
		Upgrade: []string{"TLS/1.2, h2c"}})
	tr := newTransport(t, legacyBase(t, otherCA.CertPool())) // the server's certificate fails
	body := &countingBody{r: strings.NewReader("password=hunter2")}
	req := newRequest(t, testContext(t), "POST", s.URL+"/secret", body)
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("password=hunter2")), nil }

	_, err = tr.RoundTrip(req)
	var ue *UpgradeError
	if !errors.As(err, &ue) || len(ue.Attempts) != 1 || !isCertError(err) {
		t.Fatalf("got %v; want an *UpgradeError with only the in-band certificate failure", err)
	}
	checkNothingServedInClear(t, s.Requests())
}

// A remembered in-band origin whose switch fails returns the error; it does
// not send the request through Base, in clear.
func TestRememberedInbandFailureStaysEncrypted(t *testing.T) {
	otherCA, err := testserver.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	s := startServer(t, testserver.Config{InbandTLS: testserver.InbandRFC2817, Require: testserver.RequireTLS, Upgrade: cups})
	tr := newTransport(t, legacyBase(t, otherCA.CertPool()))
	remember(t, tr, s.URL, "TLS/1.2")
	_, err = tr.RoundTrip(newRequest(t, testContext(t), "POST", s.URL+"/secret", strings.NewReader("password=hunter2")))
	if !isCertError(err) {
		t.Fatalf("got %v, want the in-band certificate failure", err)
	}
	for _, r := range s.Requests() {
		if r.Method == "POST" {
			t.Errorf("the POST reached the server (TLS %x) after the in-band switch failed", r.TLSVersion)
		}
	}
}

// What net/http tolerates from a caller or a RoundTripper does not panic:
// a nil request, a nil URL, a nil response with a nil error, and a 426
// with a nil Body (as mocks return).
func TestOddInputsDoNotPanic(t *testing.T) {
	t.Run("nil request", func(t *testing.T) {
		if _, err := (&Transport{}).RoundTrip(nil); err == nil {
			t.Error("no error")
		}
	})
	t.Run("nil URL", func(t *testing.T) {
		tr := newTransport(t, rtFunc(func(*http.Request) (*http.Response, error) { return nil, errors.New("base: nil URL") }))
		if _, err := tr.RoundTrip(&http.Request{Method: "GET", Header: http.Header{}}); err == nil || err.Error() != "base: nil URL" {
			t.Errorf("got %v, want Base's error", err)
		}
	})
	t.Run("nil response", func(t *testing.T) {
		tr := newTransport(t, rtFunc(func(*http.Request) (*http.Response, error) { return nil, nil }))
		if resp, err := tr.RoundTrip(newRequest(t, testContext(t), "GET", "http://127.0.0.1:1/", nil)); resp != nil || err == nil {
			t.Errorf("got %v, %v; want an error", resp, err)
		}
	})
	t.Run("426 with a nil Body", func(t *testing.T) {
		s := startServer(t, testserver.Config{TLS: true, Require: testserver.RequireHTTP2, Upgrade: []string{"HTTP/2"}})
		legacy := legacyBase(t, s.CertPool())
		for _, upgrade := range []string{"HTTP/2", "websocket"} {
			tr := newTransport(t, rtFunc(func(r *http.Request) (*http.Response, error) {
				return &http.Response{StatusCode: 426, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
					Header: http.Header{"Upgrade": {upgrade}}, Request: r}, nil
			}))
			tr.Template = legacy
			resp, err := tr.RoundTrip(newRequest(t, testContext(t), "GET", s.URL, nil))
			if err != nil {
				t.Fatal(err)
			}
			readAll(t, resp)
			want := map[string]int{"HTTP/2": 200, "websocket": 426}[upgrade]
			if resp.StatusCode != want {
				t.Errorf("Upgrade %s: status %d, want %d", upgrade, resp.StatusCode, want)
			}
		}
		time.Sleep(2 * drainTimeout) // a drain timer that outlived the call would fire by now
	})
}

// A Base that is not an *http.Transport hides the settings an upgraded
// connection must inherit: a 426 that would be followed gets an error
// naming the fix, one that would not is returned as it is, and Template
// says explicitly where to take the settings from.
func TestBaseNotTransport(t *testing.T) {
	s := startServer(t, testserver.Config{TLS: true, Require: testserver.RequireHTTP2, Upgrade: []string{"HTTP/2"}})
	legacy := legacyBase(t, s.CertPool())
	var sent atomic.Int32
	middleware := rtFunc(func(r *http.Request) (*http.Response, error) {
		sent.Add(1)
		return legacy.RoundTrip(r)
	})

	tr := newTransport(t, middleware)
	_, err := tr.RoundTrip(newRequest(t, testContext(t), "GET", s.URL, nil))
	if !errors.Is(err, ErrBaseNotTransport) || !strings.Contains(err.Error(), "outside") {
		t.Errorf("got %v, want ErrBaseNotTransport naming the fix", err)
	}
	if sent.Load() != 1 || s.Count() != 1 {
		t.Errorf("Base sent %d, server saw %d; want 1 and 1", sent.Load(), s.Count())
	}

	nothingUsable := startServer(t, testserver.Config{TLS: true, CA: s.CA(), Require: testserver.RefuseAll, Upgrade: []string{"websocket"}})
	resp, err := tr.RoundTrip(newRequest(t, testContext(t), "GET", nothingUsable.URL, nil))
	if err != nil || resp.StatusCode != 426 {
		t.Fatalf("got %v, %v; want the 426 untouched", resp, err)
	}
	resp.Body.Close()

	tr.Template = legacy
	resp, err = tr.RoundTrip(newRequest(t, testContext(t), "GET", s.URL, nil))
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	if resp.StatusCode != 200 || resp.Proto != "HTTP/2.0" {
		t.Errorf("with Template: %d over %s, want 200 over HTTP/2.0", resp.StatusCode, resp.Proto)
	}
}

// Request trailers reach the server on the replay: net/http lets the body
// fill in req.Trailer as it is read, so the replay shares the caller's map.
func TestReplayKeepsTrailers(t *testing.T) {
	forEachPair(t, func(t *testing.T, p upgradePair) {
		cfg := p.server
		cfg.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, r.Trailer.Get("X-Checksum"))
		})
		s := startServer(t, cfg)
		tr := newTransport(t, legacyBase(t, s.CertPool()))
		req := newRequest(t, testContext(t), "POST", s.URL, nil)
		req.Trailer = http.Header{"X-Checksum": nil}
		req.ContentLength = -1
		bodies := 0
		newBody := func() io.ReadCloser {
			bodies++
			sum := fmt.Sprint("sum-", bodies) // each body computes its own
			return io.NopCloser(&trailerSetter{r: strings.NewReader("payload"), set: func() { req.Trailer.Set("X-Checksum", sum) }})
		}
		req.Body = newBody()
		req.GetBody = func() (io.ReadCloser, error) { return newBody(), nil }
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		if body := readAll(t, resp); resp.StatusCode != 200 || body != "sum-2" {
			t.Errorf("%d over %s: server saw trailer %q, want sum-2, the replay's own", resp.StatusCode, resp.Proto, body)
		}
	}, targetHTTP2, targetH2C, targetTLS, targetInbandTLS)
}

// trailerSetter calls set when its reader is done, as a body that computes
// a trailer does.
type trailerSetter struct {
	r   io.Reader
	set func()
}

func (b *trailerSetter) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.EOF {
		b.set()
	}
	return n, err
}

// wsEcho answers a WebSocket-style handshake with 101, then echoes one line.
var wsEcho = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	brw.Flush()
	line, _ := brw.ReadString('\n')
	brw.WriteString(line)
	brw.Flush()
})

// net/http documents that a 101 response's Body is an io.ReadWriteCloser
// (WebSocket clients assert it): a handshake replayed over a stricter TLS
// or in-band TLS keeps a body it can write to.
func TestWebSocket101BodyStaysWritable(t *testing.T) {
	forEachPair(t, func(t *testing.T, p upgradePair) {
		cfg := p.server
		cfg.Handler = wsEcho
		s := startServer(t, cfg)
		tr := newTransport(t, legacyBase(t, s.CertPool()))
		req := newRequest(t, testContext(t), "GET", s.URL+"/ws", nil)
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", "websocket")
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("got %d, want 101", resp.StatusCode)
		}
		rwc, ok := resp.Body.(io.ReadWriteCloser)
		if !ok {
			t.Fatalf("101 body is %T: not an io.ReadWriteCloser, as net/http promises", resp.Body)
		}
		io.WriteString(rwc, "ping\n")
		if line, _ := bufio.NewReader(rwc).ReadString('\n'); line != "ping\n" {
			t.Errorf("echo %q", line)
		}
	}, targetTLS, targetInbandTLS)
}

// Close releases an upgraded HTTP/2 connection through a proxy that was
// busy when it ran, once its response is done.
func TestCloseReleasesProxiedConnections(t *testing.T) {
	forEachPair(t, func(t *testing.T, p upgradePair) {
		release := make(chan struct{})
		cfg := p.server
		cfg.Handler = heldResponse(release)
		s := startServer(t, cfg)
		proxy := startConnectProxy(t, nil)
		var conns connCounter
		base := legacyBase(t, s.CertPool())
		base.Proxy = http.ProxyURL(proxy.url)
		base.DialContext = conns.DialContext
		tr := &Transport{Base: base}
		resp, err := tr.RoundTrip(newRequest(t, testContext(t), "GET", s.URL, nil))
		if err != nil {
			t.Fatal(err)
		}
		if err := tr.Close(); err != nil {
			t.Fatal(err)
		}
		close(release)
		if body := readAll(t, resp); body != "ok\n" {
			t.Fatalf("got %q", body)
		}
		conns.waitAllClosed(t)
	}, targetHTTP2) // HTTP/1.1 closes pooled connections after Close on its own; HTTP/2's pool does not
}

// gatedDialer dials through net.Dialer, counting open connections; the
// dial numbered gateAt waits for release.
type gatedDialer struct {
	connCounter
	calls   atomic.Int32
	gateAt  int32
	entered chan struct{}
	release chan struct{}
}

func (g *gatedDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if g.calls.Add(1) == g.gateAt {
		close(g.entered)
		select {
		case <-g.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return g.connCounter.DialContext(ctx, network, addr)
}

// Close releases a connection whose dial was under way when it ran, once
// its response is done.
func TestCloseWaitsForConnectionsBeingDialed(t *testing.T) {
	s := startServer(t, testserver.Config{Require: testserver.RequireHTTP2, Upgrade: []string{"h2c"}})
	g := &gatedDialer{gateAt: 3, entered: make(chan struct{}), release: make(chan struct{})}
	base := &http.Transport{DialContext: g.DialContext}
	t.Cleanup(base.CloseIdleConnections)
	tr := newTransport(t, base)

	// Dial 1: Base meets the 426; dial 2: the h2c replay. h2c is remembered.
	resp, err := tr.RoundTrip(newRequest(t, testContext(t), "GET", s.URL, nil))
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	if resp.ProtoMajor != 2 {
		t.Fatalf("first request over %s, want HTTP/2", resp.Proto)
	}
	tr.CloseIdleConnections()
	waitOpen(t, &g.connCounter, 0, promptly)

	// Dial 3, over the remembered h2c route, is held while Close runs.
	done := make(chan error, 1)
	go func() {
		resp, err := tr.RoundTrip(newRequest(t, testContext(t), "GET", s.URL, nil))
		if err == nil {
			err = drain(resp)
		}
		done <- err
	}()
	<-g.entered
	tr.Close()
	close(g.release)
	if err := <-done; err != nil {
		t.Fatalf("request in flight at Close: %v", err)
	}
	tr.CloseIdleConnections()
	if !waitOpen(t, &g.connCounter, 0, 3*time.Second) {
		t.Errorf("%d connections still open 3 s after Close, the request done and CloseIdleConnections called; want 0",
			g.open())
		base.CloseIdleConnections()
		// Not reachable through tr any more: close it through the server.
		s.Close()
	}
}

// waitOpen waits up to d for c to count want open connections.
func waitOpen(t *testing.T, c *connCounter, want int32, d time.Duration) bool {
	t.Helper()
	deadline := time.Now().Add(d)
	for c.open() != want && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	return c.open() == want
}

// Close landing after RoundTrip looked at it, while a remembered route is
// recalled, refuses the request as Close between a 426 and its replay does:
// the inner transport the memory's slot keeps is closed, and a connection
// dialed through it now would be left open, nothing to close it.
func TestCloseDuringRecallRefuses(t *testing.T) {
	forEachPair(t, func(t *testing.T, p upgradePair) {
		s := startServer(t, p.server)
		var conns connCounter
		base := legacyBase(t, s.CertPool())
		base.DialContext = conns.DialContext
		var closing atomic.Bool
		tr := newTransport(t, base)
		tr.CheckUpgrade = func(req *http.Request, resp *http.Response, usable []Protocol) ([]Protocol, error) {
			if closing.Load() {
				tr.Close() // as if another goroutine closed the transport at the worst moment
			}
			return usable, nil
		}
		getAs(t, tr, s.URL, "") // a 426, replayed and remembered
		getAs(t, tr, s.URL, "") // over the remembered route: its slot keeps the inner transport
		tr.CloseIdleConnections()
		conns.waitAllClosed(t)

		closing.Store(true)
		body := &countingBody{r: strings.NewReader("x")}
		resp, err := tr.RoundTrip(newRequest(t, testContext(t), "POST", s.URL, body))
		if resp != nil {
			drain(resp)
		}
		if !errors.Is(err, ErrClosed) {
			t.Errorf("request recalled as Close ran: got %v (%d connections dialed), want ErrClosed", err, conns.dialed())
		}
		body.waitCloses(t)
		if !waitOpen(t, &conns, 0, promptly) {
			t.Errorf("%d connections open after Close and the request done, want 0", conns.open())
			s.Close() // not reachable through tr any more: close it through the server
		}
	}, targetHTTP2, targetH2C, targetTLS, targetInbandTLS)
}

// A request that got past the closed check as Close ran reaches an inner
// transport that was closed under it: it dials nothing, so no connection
// is left that nobody would close.
func TestClosedInnerTransportDialsNothing(t *testing.T) {
	forEachPair(t, func(t *testing.T, p upgradePair) {
		s := startServer(t, p.server)
		var conns connCounter
		base := legacyBase(t, s.CertPool())
		base.DialContext = conns.DialContext
		tr := newTransport(t, base)
		getAs(t, tr, s.URL, "") // a 426, replayed and remembered
		inner := tr.inner.all()
		if len(inner) != 1 {
			t.Fatalf("%d inner transports, want 1", len(inner))
		}
		tcp, ok := inner[0].(*tcpTransport)
		if !ok {
			t.Fatalf("inner transport %T, want *tcpTransport", inner[0])
		}
		tr.Close()
		conns.waitAllClosed(t)
		dialed := conns.dialed()

		resp, err := tcp.RoundTripper.RoundTrip(newRequest(t, testContext(t), "GET", s.URL, nil))
		if resp != nil {
			drain(resp)
		}
		if !errors.Is(err, ErrClosed) || conns.dialed() != dialed {
			t.Errorf("request through the closed inner transport: %v, %d connections dialed; want ErrClosed and none", err, conns.dialed()-dialed)
		}
	}, targetHTTP2, targetH2C, targetTLS, targetInbandTLS)
}
