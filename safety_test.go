package upgrade

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/h426/upgrade/internal/testserver"
)

// A failed TLS attempt never falls back to cleartext: an attacker who breaks
// the handshake must not win the request in clear (DESIGN §4).
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
	warm := `{"version":1,"entries":[{"origin":"` + s.URL + `","protocol":"TLS/1.2","expires":"2999-01-01T00:00:00Z"}]}`
	if n, _, err := tr.ImportMemory(strings.NewReader(warm)); err != nil || n != 1 {
		t.Fatal(n, err)
	}
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

// Requests in flight together that meet one outage mark the protocol broken
// for the first period, not for the doubled-many-times one.
func TestBrokenMarkCountsOneOutageOnce(t *testing.T) {
	tr := &Transport{}
	clock := time.Now()
	tr.now = func() time.Time { return clock }
	h3 := target{kind: targetHTTP3}
	for range 20 {
		tr.noteOutcome(context.Background(), originA, h3, &connectError{errors.New("timeout")})
	}
	b := tr.brokenMarks()
	mark, ok := b.marks.Peek(brokenKeyOf(originA, h3))
	if !ok || mark.failures != 1 || !mark.until.Equal(clock.Add(brokenPeriod)) {
		t.Errorf("mark %+v after 20 failures at once, want 1 failure for %v", mark, brokenPeriod)
	}
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

// Close lets an HTTP/3 response being read finish, then releases QUIC.
func TestCloseLetsHTTP3ResponseFinish(t *testing.T) {
	release := make(chan struct{})
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "part1\n")
		w.(http.Flusher).Flush()
		<-release
		io.WriteString(w, "part2\n")
	})
	s := startServer(t, testserver.Config{TLS: true, HTTP3: true, Require: testserver.RequireHTTP3, Upgrade: []string{"h3"}, Handler: slow})
	tr := &Transport{Base: legacyBase(t, s.CertPool()), HTTP3HandshakeTimeout: quicSetup}
	resp, err := tr.RoundTrip(newRequest(t, testContext(t), "GET", s.URL, nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	close(release)
	if body := readAll(t, resp); body != "part1\npart2\n" {
		t.Errorf("in-flight %s response after Close: %q", resp.Proto, body)
	}
	// goleak in TestMain checks the QUIC socket went with the last response.
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
		warm := `{"version":1,"entries":[{"origin":"` + h3.URL + `","protocol":"h3","expires":"2999-01-01T00:00:00Z"}]}`
		if n, _, err := tr.ImportMemory(strings.NewReader(warm)); err != nil || n != 1 {
			t.Fatal(n, err)
		}
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

// Through an https:// proxy, the upgraded transport speaks plain TLS to the
// proxy and HTTP/2 to the origin inside the tunnel.
func TestHTTP2ThroughAnHTTPSProxy(t *testing.T) {
	s := startServer(t, testserver.Config{TLS: true, Require: testserver.RequireHTTP2, Upgrade: []string{"HTTP/2"}})
	cert, err := s.CA().ServerCert()
	if err != nil {
		t.Fatal(err)
	}
	proxy := startConnectProxy(t, &tls.Config{Certificates: []tls.Certificate{cert}})
	base := legacyBase(t, s.CertPool())
	base.Proxy = http.ProxyURL(proxy.url)
	tr := newTransport(t, base)
	resp, err := tr.RoundTrip(newRequest(t, testContext(t), "GET", s.URL, nil))
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	if resp.StatusCode != 200 || resp.Proto != "HTTP/2.0" || proxy.tunnels.Load() != 2 {
		t.Errorf("got %d over %s through %d tunnels, want 200 over HTTP/2.0 through 2", resp.StatusCode, resp.Proto, proxy.tunnels.Load())
	}
}
