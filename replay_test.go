package upgrade

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/h426/upgrade/internal/testserver"
)

// served drops the in-band "OPTIONS *" from what a server saw.
func served(seen []testserver.Request) []testserver.Request {
	var requests []testserver.Request
	for _, r := range seen {
		if r.Method != http.MethodOptions || r.Path != "*" {
			requests = append(requests, r)
		}
	}
	return requests
}

// Which bodies may be sent again, and that the server receives
// exactly the caller's bytes when they are, over every protocol pair.
func TestReplayBodies(t *testing.T) {
	forEachPair(t, func(t *testing.T, p upgradePair) { testReplayBodies(t, p.server) })
}

func testReplayBodies(t *testing.T, server testserver.Config) {
	payload := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
	tests := []struct {
		name       string
		method     string
		body       func() io.Reader // nil: no body
		expect     bool             // send Expect: 100-continue
		wantStatus int
		wantBody   []byte // what the replay must deliver
	}{
		{"GET without body", "GET", nil, false, 200, nil},
		{"DELETE without body", "DELETE", nil, false, 200, nil},
		{"POST with NoBody", "POST", func() io.Reader { return http.NoBody }, false, 200, nil},
		{"POST with GetBody", "POST", func() io.Reader { return bytes.NewReader(payload) }, false, 200, payload},
		{"PUT with GetBody", "PUT", func() io.Reader { return strings.NewReader("small") }, false, 200, []byte("small")},
		{"one-shot body already sent", "POST", func() io.Reader { return &countingBody{r: bytes.NewReader(payload)} }, false, 426, nil},
		{"one-shot body held back by 100-continue", "POST", func() io.Reader { return &countingBody{r: bytes.NewReader(payload)} }, true, 200, payload},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startServer(t, server)
			base := legacyBase(t, s.CertPool())
			base.ExpectContinueTimeout = 5 * time.Second
			tr := newTransport(t, base)
			var body io.Reader
			if tt.body != nil {
				body = tt.body()
			}
			req := newRequest(t, testContext(t), tt.method, s.URL, body)
			if tt.expect {
				req.Header.Set("Expect", "100-continue")
			}

			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			readAll(t, resp)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			seen := served(s.Requests())
			if tt.wantStatus == 426 {
				if len(seen) != 1 {
					t.Errorf("server saw %d requests, want 1", len(seen))
				}
			} else {
				if len(seen) != 2 || seen[1].Method != tt.method {
					t.Fatalf("server saw %+v, want the %s replayed once", seen, tt.method)
				}
				if got := seen[1]; got.BodyLen != int64(len(tt.wantBody)) || got.BodySHA256 != sha256.Sum256(tt.wantBody) {
					t.Errorf("replay delivered %d bytes (sha %x), want %d", got.BodyLen, got.BodySHA256[:4], len(tt.wantBody))
				}
			}
			if cb, ok := body.(*countingBody); ok {
				cb.waitCloses(t)
			}
		})
	}
}

// A one-shot body is closed once, whether or not it gets replayed and
// whatever the outcome.
func TestOneShotBodyClosedOnce(t *testing.T) {
	tests := []struct {
		name    string
		server  testserver.Config
		expect  bool
		wantErr bool
	}{
		{"no 426", testserver.Config{TLS: true}, false, false},
		{"426 and no usable offer", testserver.Config{TLS: true, Require: testserver.RefuseAll, Upgrade: []string{"websocket"}}, true, false},
		{"426 and replay", testserver.Config{TLS: true, Require: testserver.RequireHTTP2, Upgrade: []string{"HTTP/2"}}, true, false},
		{"426 and every attempt fails", testserver.Config{TLS: true, HTTP1Only: true, Require: testserver.RequireHTTP2, Upgrade: []string{"HTTP/2"}}, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startServer(t, tt.server)
			base := legacyBase(t, s.CertPool())
			base.ExpectContinueTimeout = 5 * time.Second
			tr := newTransport(t, base)
			body := &countingBody{r: strings.NewReader("payload")}
			req := newRequest(t, testContext(t), "POST", s.URL, body)
			if tt.expect {
				req.Header.Set("Expect", "100-continue")
			}
			resp, err := tr.RoundTrip(req)
			if (err != nil) != tt.wantErr {
				t.Fatalf("error %v, want error: %v", err, tt.wantErr)
			}
			if resp != nil {
				readAll(t, resp)
			}
			body.waitCloses(t)
		})
	}
}

func TestGetBodyErrorReturnsThe426(t *testing.T) {
	s := startServer(t, testserver.Config{TLS: true, Require: testserver.RequireHTTP2, Upgrade: []string{"HTTP/2"}})
	tr := newTransport(t, legacyBase(t, s.CertPool()))
	var rec recorder
	req := newRequest(t, WithTrace(testContext(t), rec.trace()), "POST", s.URL, strings.NewReader("x"))
	broken := errors.New("source gone")
	req.GetBody = func() (io.ReadCloser, error) { return nil, broken }

	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	if resp.StatusCode != 426 || s.Count() != 1 {
		t.Errorf("status %d after %d requests, want the 426 after 1", resp.StatusCode, s.Count())
	}
	if reason := rec.reason(t); !errors.Is(reason, broken) {
		t.Errorf("reason %v, want the GetBody error", reason)
	}
}

// The replay is a clone: the caller's request is untouched, and the headers
// that belong to one HTTP/1.1 connection do not reach HTTP/2.
func TestReplayLeavesCallerRequestAndDropsHopByHop(t *testing.T) {
	s := startServer(t, testserver.Config{TLS: true, Require: testserver.RequireHTTP2, Upgrade: []string{"HTTP/2"}})
	tr := newTransport(t, legacyBase(t, s.CertPool()))
	req := newRequest(t, testContext(t), "POST", s.URL+"/p?q=1", strings.NewReader("body"))
	req.Header.Set("Connection", "X-Hop, keep-alive")
	req.Header.Set("X-Hop", "1")
	req.Header.Set("Keep-Alive", "timeout=5")
	req.Header.Set("Proxy-Connection", "keep-alive")
	req.Header.Set("TE", "trailers, deflate")
	req.Header.Set("X-End-To-End", "kept")
	before := req.Header.Clone()
	beforeURL := req.URL.String()

	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	if resp.StatusCode != 200 || resp.Proto != "HTTP/2.0" {
		t.Fatalf("got %d over %s, want 200 over HTTP/2.0", resp.StatusCode, resp.Proto)
	}
	if req.URL.String() != beforeURL || len(req.Header) != len(before) {
		t.Errorf("caller's request changed: %s %v", req.URL, req.Header)
	}
	for name, values := range before {
		if strings.Join(req.Header[name], ",") != strings.Join(values, ",") {
			t.Errorf("caller's header %s changed to %q", name, req.Header[name])
		}
	}
	replayed := s.Requests()[1].Header
	for _, name := range []string{"Connection", "X-Hop", "Keep-Alive", "Proxy-Connection"} {
		if v, ok := replayed[name]; ok {
			t.Errorf("replay carried hop-by-hop %s: %q", name, v)
		}
	}
	if got := replayed.Get("Te"); got != "trailers" {
		t.Errorf("replay's TE %q, want trailers", got)
	}
	if got := replayed.Get("X-End-To-End"); got != "kept" {
		t.Errorf("replay lost an end-to-end header: %q", got)
	}
}

// A 426 body that never ends, or trickles, is cut at the drain bound: the
// replay still completes, within the request's own deadline.
func TestDrainIsBounded(t *testing.T) {
	tests := []struct {
		name  string
		write func(w io.Writer, flush func(), ctx context.Context)
	}{
		{"endless", func(w io.Writer, flush func(), ctx context.Context) {
			chunk := bytes.Repeat([]byte("x"), 4096)
			for ctx.Err() == nil {
				if _, err := w.Write(chunk); err != nil {
					return
				}
				flush()
			}
		}},
		{"one byte at a time", func(w io.Writer, flush func(), ctx context.Context) {
			for ctx.Err() == nil {
				if _, err := w.Write([]byte("x")); err != nil {
					return
				}
				flush()
				select {
				case <-ctx.Done():
				case <-time.After(20 * time.Millisecond):
				}
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			refuse := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Upgrade", "HTTP/2")
				w.WriteHeader(http.StatusUpgradeRequired)
				tt.write(w, w.(http.Flusher).Flush, r.Context())
			})
			s := startServer(t, testserver.Config{TLS: true, Require: testserver.RequireHTTP2, Refuse: refuse})
			tr := newTransport(t, legacyBase(t, s.CertPool()))
			ctx, cancel := context.WithTimeout(t.Context(), patience)
			defer cancel()

			resp, err := tr.RoundTrip(newRequest(t, ctx, "GET", s.URL, nil))
			if err != nil {
				t.Fatalf("replay held up by the 426 body: %v", err)
			}
			readAll(t, resp)
			if resp.StatusCode != 200 || resp.Proto != "HTTP/2.0" {
				t.Errorf("got %d over %s", resp.StatusCode, resp.Proto)
			}
		})
	}
}

// Offers are tried in order; a failure before any connection moves on to
// the next, and the upgraded transports use Base's dialer.
func TestFallbackOnConnectionFailure(t *testing.T) {
	// The server does not speak HTTP/2, so ALPN fails and TLS/1.3 is next.
	s := startServer(t, testserver.Config{TLS: true, HTTP1Only: true, Require: testserver.RequireTLS13, Upgrade: []string{"HTTP/2, TLS/1.3"}})
	tr := newTransport(t, legacyBase(t, s.CertPool()))
	var rec recorder
	resp, err := tr.RoundTrip(newRequest(t, WithTrace(testContext(t), rec.trace()), "GET", s.URL, nil))
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	if resp.StatusCode != 200 || tlsVersion(resp) != 0x0304 {
		t.Errorf("got %d over TLS %x, want 200 over TLS 1.3", resp.StatusCode, tlsVersion(resp))
	}
	if len(rec.finished) != 2 || !rec.finished[0].Fallback || rec.finished[0].Err == nil || rec.finished[1].Err != nil {
		t.Errorf("attempts traced %+v, want HTTP/2 failing over to TLS/1.3", rec.finished)
	}
	if n := s.Count(); n != 2 {
		t.Errorf("server saw %d requests, want 2", n)
	}
}

func TestInheritsDialerAndProxy(t *testing.T) {
	t.Run("dialer", func(t *testing.T) {
		s := startServer(t, testserver.Config{Require: testserver.RequireHTTP2, Upgrade: []string{"h2c"}})
		base := legacyBase(t, nil)
		dials := make(chan string, 10)
		base.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials <- addr
			return new(net.Dialer).DialContext(ctx, network, addr)
		}
		tr := newTransport(t, base)
		resp, err := tr.RoundTrip(newRequest(t, testContext(t), "GET", s.URL, nil))
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
		if resp.Proto != "HTTP/2.0" || len(dials) != 2 {
			t.Errorf("replay over %s after %d dials through Base's dialer, want HTTP/2.0 after 2", resp.Proto, len(dials))
		}
	})
	t.Run("timeouts", func(t *testing.T) {
		slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-time.After(patience):
			}
		})
		s := startServer(t, testserver.Config{TLS: true, Require: testserver.RequireHTTP2, Upgrade: []string{"HTTP/2"}, Handler: slow})
		base := legacyBase(t, s.CertPool())
		// Long enough for the 426 on a slow machine; the replay gets no answer.
		base.ResponseHeaderTimeout = 500 * time.Millisecond
		tr := newTransport(t, base)
		_, err := tr.RoundTrip(newRequest(t, testContext(t), "GET", s.URL, nil))
		if !isTimeout(err) || s.Count() != 2 {
			t.Errorf("got %v after %d requests; want the replay stopped by Base's ResponseHeaderTimeout", err, s.Count())
		}
	})
	t.Run("proxy refuses h2c", func(t *testing.T) {
		s := startServer(t, testserver.Config{Require: testserver.RequireHTTP2, Upgrade: []string{"h2c"}})
		base := legacyBase(t, nil)
		// A "proxy" that is the origin itself: it serves absolute-form requests.
		proxyURL, _ := url.Parse(s.URL)
		base.Proxy = http.ProxyURL(proxyURL)
		tr := newTransport(t, base)
		var rec recorder
		resp, err := tr.RoundTrip(newRequest(t, WithTrace(testContext(t), rec.trace()), "GET", "http://origin.test/", nil))
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
		if resp.StatusCode != 426 || s.Count() != 1 {
			t.Errorf("got %d after %d requests, want the 426 after 1", resp.StatusCode, s.Count())
		}
		if skipped := rec.decided[0].Skipped; len(skipped) != 1 || !errors.Is(skipped[0].Reason, ErrProxied) {
			t.Errorf("skipped %v, want h2c refused for the proxy", skipped)
		}
	})
}

func TestTraceReportsTheUpgradePath(t *testing.T) {
	s := startServer(t, testserver.Config{TLS: true, Require: testserver.RequireHTTP2, Upgrade: []string{"h2c, HTTP/2"}})
	tr := newTransport(t, legacyBase(t, s.CertPool()))
	var rec recorder
	resp, err := tr.RoundTrip(newRequest(t, WithTrace(testContext(t), rec.trace()), "GET", s.URL, nil))
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	if len(rec.got426) != 1 || len(rec.got426[0].Offered) != 2 || rec.got426[0].Proto != "HTTP/1.1" {
		t.Errorf("Got426 %+v", rec.got426)
	}
	d := rec.decided[0]
	if len(d.Candidates) != 1 || d.Candidates[0].String() != "HTTP/2" || len(d.Skipped) != 1 || !errors.Is(d.Skipped[0].Reason, ErrDowngrade) {
		t.Errorf("Decided %+v", d)
	}
	if len(rec.started) != 1 || len(rec.finished) != 1 || rec.finished[0].Proto != "HTTP/2.0" || rec.finished[0].Err != nil {
		t.Errorf("replay traced as %v then %+v", rec.started, rec.finished)
	}
}

// The one-shot body guard on its own: whoever comes first, the writer's Read
// or the owner's take, wins, and the body is closed once whatever happens.
func TestOneShotBodyGuard(t *testing.T) {
	t.Run("taken before any read", func(t *testing.T) {
		under := &countingBody{r: strings.NewReader("x")}
		b := newOneShotBody(under)
		b.Close() // the first transport gave up without reading: held
		rc, ok := b.take()
		if !ok || rc != under || under.closes.Load() != 0 {
			t.Fatalf("take: %v, %v, closes %d", rc, ok, under.closes.Load())
		}
		if _, err := b.Read(make([]byte, 1)); !errors.Is(err, errBodyTaken) {
			t.Errorf("a late Read got %v, want errBodyTaken", err)
		}
		b.Close()
		if under.closes.Load() != 0 {
			t.Error("a Close after take reached the body the replay now owns")
		}
	})
	t.Run("read first", func(t *testing.T) {
		under := &countingBody{r: strings.NewReader("x")}
		b := newOneShotBody(under)
		b.Read(make([]byte, 1))
		if _, ok := b.take(); ok {
			t.Fatal("a body already read was taken back")
		}
		b.Close()
		b.release()
		if n := under.closes.Load(); n != 1 {
			t.Errorf("closed %d times, want 1", n)
		}
	})
	t.Run("released, then closed late by the writer", func(t *testing.T) {
		under := &countingBody{r: strings.NewReader("x")}
		b := newOneShotBody(under)
		b.release()
		b.Close()
		b.Close()
		if n := under.closes.Load(); n != 1 {
			t.Errorf("closed %d times, want 1", n)
		}
	})
	t.Run("concurrent read and take", func(t *testing.T) {
		for range 200 {
			under := &countingBody{r: strings.NewReader("x")}
			b := newOneShotBody(under)
			got := make(chan error, 1)
			go func() { _, err := b.Read(make([]byte, 1)); got <- err }()
			_, taken := b.take()
			readErr := <-got
			if taken == (readErr == nil) {
				t.Fatalf("take %v and Read %v both won or both lost", taken, readErr)
			}
		}
	})
}

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
	tr.Template = legacy
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
	tr.Template = legacy
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
	tr.Template = legacy
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

// "TE: trailers" survives the HTTP/2 and HTTP/3 replay when the request
// names TE in Connection, as RFC 9110 §10.1.4 asks a client to.
func TestTETrailersKeptWhenNamedInConnection(t *testing.T) {
	s := startServer(t, testserver.Config{TLS: true, Require: testserver.RequireHTTP2, Upgrade: []string{"HTTP/2"}})
	tr := newTransport(t, legacyBase(t, s.CertPool()))
	req := newRequest(t, testContext(t), "POST", s.URL, nil)
	req.Header.Set("TE", "trailers")
	req.Header.Set("Connection", "TE")
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	seen := s.Requests()
	if len(seen) != 2 || seen[1].Proto != "HTTP/2.0" {
		t.Fatalf("server saw %+v", seen)
	}
	if got := seen[1].Header.Get("Te"); got != "trailers" {
		t.Errorf("HTTP/2 replay arrived with TE %q, want \"trailers\" (first attempt had %q)", got, seen[0].Header.Get("Te"))
	}
}
