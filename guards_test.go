package upgrade

import (
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/h426/upgrade/internal/testserver"
)

type rtFunc func(*http.Request) (*http.Response, error)

func (f rtFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// Close landing between the 426 and the replay still closes the body once.
func TestCloseDuringUpgradeClosesOneShotBody(t *testing.T) {
	s := startServer(t, testserver.Config{TLS: true, Require: testserver.RequireHTTP2, Upgrade: []string{"HTTP/2"}})
	legacy := legacyBase(t, s.CertPool())
	var tr *Transport
	tr = newTransport(t, rtFunc(func(r *http.Request) (*http.Response, error) {
		resp, err := legacy.RoundTrip(r)
		tr.Close() // as if another goroutine closed the transport at the worst moment
		return resp, err
	}))
	body := &countingBody{r: strings.NewReader("payload")}
	req := newRequest(t, testContext(t), "POST", s.URL, body)
	req.Header.Set("Expect", "100-continue")
	legacy.ExpectContinueTimeout = 5 * time.Second
	if _, err := tr.RoundTrip(req); !errors.Is(err, ErrClosed) {
		t.Errorf("got %v, want ErrClosed", err)
	}
	body.waitCloses(t)
}

// A nested Transport does not upgrade a request the inner one replayed, even
// when the 426 offers something the inner one did not try.
func TestNestedTransportsReplayOnce(t *testing.T) {
	s := startServer(t, testserver.Config{TLS: true, Require: testserver.RefuseAll, Upgrade: []string{"HTTP/2, TLS/1.3"}})
	rt := newTransport(t, newTransport(t, legacyBase(t, s.CertPool())))
	resp, err := rt.RoundTrip(newRequest(t, testContext(t), "GET", s.URL, nil))
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	if n := s.Count(); n != 2 {
		t.Errorf("server saw %d requests, want 2", n)
	}
}

// no fallback once the replay had a connection (DESIGN §1.5).
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

// caller's request is not modified when its body is one-shot.
func TestOneShotCallerRequestUntouched(t *testing.T) {
	s := startServer(t, testserver.Config{TLS: true, Require: testserver.RequireHTTP2, Upgrade: []string{"HTTP/2"}})
	base := legacyBase(t, s.CertPool())
	base.ExpectContinueTimeout = 5 * time.Second
	tr := newTransport(t, base)
	body := &countingBody{r: strings.NewReader("payload")}
	req := newRequest(t, testContext(t), "POST", s.URL, body)
	req.Header.Set("Expect", "100-continue")
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	if req.Body != body {
		t.Errorf("caller's req.Body replaced by %T", req.Body)
	}
	body.waitCloses(t)
}

// Close closes idle upgraded connections (not only busy ones).
func TestCloseClosesIdleUpgradedConnections(t *testing.T) {
	for _, up := range []string{"HTTP/2", "h2c", "TLS/1.3"} {
		t.Run(up, func(t *testing.T) {
			req := testserver.RequireHTTP2
			if up == "TLS/1.3" {
				req = testserver.RequireTLS13
			}
			s := startServer(t, testserver.Config{TLS: up != "h2c", Require: req, Upgrade: []string{up}})
			var conns connCounter
			base := legacyBase(t, s.CertPool())
			base.DialContext = conns.DialContext
			tr := &Transport{Base: base}
			resp, err := tr.RoundTrip(newRequest(t, testContext(t), "GET", s.URL, nil))
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			// Read to EOF and closed before Close: the connection is idle.
			resp.Body.Close()
			tr.Close()
			conns.waitAllClosed(t)
		})
	}
}

// the floor applies to HTTP/2 upgrades too.
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

// hop-by-hop Upgrade header is removed from an HTTP/2 replay.
func TestUpgradeHeaderDroppedFromHTTP2Replay(t *testing.T) {
	s := startServer(t, testserver.Config{TLS: true, Require: testserver.RequireHTTP2, Upgrade: []string{"HTTP/2"}})
	tr := newTransport(t, legacyBase(t, s.CertPool()))
	req := newRequest(t, testContext(t), "GET", s.URL, nil)
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Transfer-Encoding", "chunked")
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	if resp.Proto != "HTTP/2.0" || resp.StatusCode != 200 {
		t.Fatalf("got %d over %s, want 200 over HTTP/2.0", resp.StatusCode, resp.Proto)
	}
	for _, name := range []string{"Upgrade", "Transfer-Encoding"} {
		if v, ok := s.Requests()[1].Header[name]; ok {
			t.Errorf("HTTP/2 replay carried %s: %q", name, v)
		}
	}
}

// countingRespBody counts bytes drawn from the 426 body.
type countingRespBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (c countingRespBody) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// drain bounds are measured, not just "eventually finishes".
func TestDrainReadsAtMost64KiB(t *testing.T) {
	endless := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Upgrade", "HTTP/2")
		w.WriteHeader(426)
		chunk := make([]byte, 4096)
		for r.Context().Err() == nil {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	s := startServer(t, testserver.Config{TLS: true, Require: testserver.RequireHTTP2, Refuse: endless})
	legacy := legacyBase(t, s.CertPool())
	var drawn atomic.Int64
	tr := newTransport(t, rtFunc(func(r *http.Request) (*http.Response, error) {
		resp, err := legacy.RoundTrip(r)
		if err == nil {
			resp.Body = countingRespBody{resp.Body, &drawn}
		}
		return resp, err
	}))
	tr.TLSClientConfig = &tls.Config{RootCAs: s.CertPool()}
	resp, err := tr.RoundTrip(newRequest(t, testContext(t), "GET", s.URL, nil))
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	if n := drawn.Load(); n > drainLimit {
		t.Errorf("drained %d bytes, want at most %d", n, drainLimit)
	}
}

func TestReviewTrickleDrainTime(t *testing.T) {
	trickle := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Upgrade", "HTTP/2")
		w.WriteHeader(426)
		for r.Context().Err() == nil {
			if _, err := w.Write([]byte("x")); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			time.Sleep(20 * time.Millisecond)
		}
	})
	s := startServer(t, testserver.Config{TLS: true, Require: testserver.RequireHTTP2, Refuse: trickle})
	tr := newTransport(t, legacyBase(t, s.CertPool()))
	start := time.Now()
	resp, err := tr.RoundTrip(newRequest(t, testContext(t), "GET", s.URL, nil))
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	if d := time.Since(start); d > promptly {
		t.Errorf("replay delayed %v by a trickling 426", d)
	}
}

// The same with GetBody: the fresh body is closed once too.
func TestCloseDuringUpgradeClosesGetBodyBody(t *testing.T) {
	s := startServer(t, testserver.Config{TLS: true, Require: testserver.RequireHTTP2, Upgrade: []string{"HTTP/2"}})
	legacy := legacyBase(t, s.CertPool())
	var tr *Transport
	tr = newTransport(t, rtFunc(func(r *http.Request) (*http.Response, error) {
		resp, err := legacy.RoundTrip(r)
		tr.Close()
		return resp, err
	}))
	req := newRequest(t, testContext(t), "POST", s.URL, strings.NewReader("x"))
	var fresh []*countingBody
	req.GetBody = func() (io.ReadCloser, error) {
		b := &countingBody{r: strings.NewReader("x")}
		fresh = append(fresh, b)
		return b, nil
	}
	if _, err := tr.RoundTrip(req); !errors.Is(err, ErrClosed) {
		t.Errorf("got %v, want ErrClosed", err)
	}
	for i, b := range fresh {
		if n := b.closes.Load(); n != 1 {
			t.Errorf("GetBody body %d closed %d times", i, n)
		}
	}
}
