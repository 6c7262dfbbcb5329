package upgrade

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/h426/upgrade/internal/testserver"
)

// untraced clears, for the test, the mark WithTrace leaves once any trace
// was set up in the process, so that remembered requests may take the
// express path. Tests run one at a time.
func untraced(t testing.TB) {
	was := traced.Load()
	traced.Store(false)
	t.Cleanup(func() { traced.Store(was) })
}

// Express takes a remembered route only when every question recall would
// ask has its common answer; each of the others goes to recall.
func TestExpressAsksNothingOnlyWhenNothingNeedsAsking(t *testing.T) {
	h2 := target{kind: targetHTTP2}
	tls13 := target{kind: targetTLS, minTLS: tls.VersionTLS13}
	tests := []struct {
		name    string
		target  target
		upgrade string                                // the route's in-band upgrade
		setup   func(tr *Transport)                   // before the route is first used
		request func(req *http.Request) *http.Request // the request asked about
		after   func(tr *Transport)                   // once the route is settled
		want    bool
		// environment: the row relies on the environment naming no HTTPS
		// proxy, which net/http reads once per process.
		environment bool
	}{
		{name: "plain", target: h2, want: true},
		{name: "HTTP/3", target: target{kind: targetHTTP3}, want: true},
		{name: "body made again by GetBody", target: h2, want: true, request: func(req *http.Request) *http.Request {
			return withBody(req, true)
		}},
		{name: "body without GetBody", target: h2, request: func(req *http.Request) *http.Request {
			return withBody(req, false)
		}},
		{name: "Host header as the URL's", target: h2, want: true, request: func(req *http.Request) *http.Request {
			req.Host = req.URL.Host
			return req
		}},
		{name: "another Host header", target: h2, request: func(req *http.Request) *http.Request {
			req.Host = "other.test"
			return req
		}},
		{name: "host not in canonical form", target: h2, request: func(req *http.Request) *http.Request {
			req.URL.Host = "Strict.test"
			return req
		}},
		{name: "another scheme", target: h2, request: func(req *http.Request) *http.Request {
			req.URL.Scheme = "http"
			return req
		}},
		{name: "CONNECT", target: h2, request: func(req *http.Request) *http.Request {
			req.Method = http.MethodConnect
			return req
		}},
		{name: "asks for its own upgrade", target: h2, request: func(req *http.Request) *http.Request {
			req.Header.Set("Connection", "Upgrade")
			req.Header.Set("Upgrade", "websocket")
			return req
		}},
		{name: "hop-by-hop header over HTTP/2", target: h2, request: func(req *http.Request) *http.Request {
			req.Header.Set("Keep-Alive", "timeout=5")
			return req
		}},
		{name: "hop-by-hop header over HTTP/1.1", target: tls13, want: true, request: func(req *http.Request) *http.Request {
			req.Header.Set("Keep-Alive", "timeout=5")
			return req
		}},
		{name: "in-band upgrade", target: target{kind: targetInbandTLS, minTLS: tls.VersionTLS12}, upgrade: "TLS/1.2"},
		{name: "CheckUpgrade", target: h2, setup: func(tr *Transport) { tr.CheckUpgrade = DefaultCheckUpgrade }},
		{name: "Proxy func", target: h2, setup: func(tr *Transport) {
			tr.Template.Proxy = func(*http.Request) (*url.URL, error) { return nil, nil }
		}},
		{name: "ProxyFromEnvironment naming no proxy", target: h2, want: true, environment: true, setup: func(tr *Transport) {
			tr.Template.Proxy = http.ProxyFromEnvironment
		}},
		{name: "something marked broken", target: h2, after: func(tr *Transport) {
			tr.broken.fail(brokenKey{host: "elsewhere.test:443"}, time.Now())
		}},
		{name: "a trace set up", target: h2, after: func(*Transport) { traced.Store(true) }},
		{name: "closed", target: h2, after: func(tr *Transport) { tr.Close() }},
		{name: "expired", target: h2, after: func(tr *Transport) {
			tr.now = func() time.Time { return time.Now().Add(2 * time.Hour) }
		}},
		{name: "not the origin learned last", target: h2, after: func(tr *Transport) {
			tr.memory().put(origin{secure: true, host: "later.test"}, memoryEntry{via: candidate{target: h2}, expires: time.Now().Add(time.Hour)})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.environment && (os.Getenv("HTTPS_PROXY") != "" || os.Getenv("https_proxy") != "") {
				t.Skip("the environment names an HTTPS proxy; CI sets none")
			}
			untraced(t)
			fake := fakeTransport{proto: "HTTP/1.1"}
			tr := &Transport{Base: fake, Template: &http.Transport{}}
			t.Cleanup(func() { tr.Close() })
			if tt.setup != nil {
				tt.setup(tr)
			}
			newReq := func() *http.Request {
				return &http.Request{Method: "GET", URL: &url.URL{Scheme: "https", Host: "strict.test"}, Header: http.Header{}}
			}
			o := originOf(newReq())
			tr.inner.get(tt.target, func() http.RoundTripper { return fake })
			tr.memory().put(o, memoryEntry{via: candidate{offer: Protocol{"X", "1"}, target: tt.target, upgrade: tt.upgrade}, expires: time.Now().Add(time.Hour)})
			if via, _ := tr.recall(&transportRequest{req: newReq()}, tr.mem.Load()); via == nil { // settles the route
				t.Fatal("recall refused the route")
			}
			if tt.after != nil {
				tt.after(tr)
			}
			req := newReq()
			if tt.request != nil {
				req = tt.request(req)
			}
			r := &transportRequest{req: req, bodies: replayBody{req: req}}
			via, inner := tr.express(r, tr.mem.Load())
			if got := via != nil; got != tt.want {
				t.Fatalf("express took the route: %v, want %v", got, tt.want)
			}
			if via != nil && (inner == nil || r.origin != o) {
				t.Errorf("express gave inner %v and origin %v, want the route's, for %v", inner, r.origin, o)
			}
		})
	}
}

func withBody(req *http.Request, again bool) *http.Request {
	req.Method = "POST"
	req.Body = io.NopCloser(strings.NewReader("body"))
	req.ContentLength = 4
	if again {
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("body")), nil }
	}
	return req
}

// A remembered request gets the same answer over the express path as over
// recall's, whatever happens to it: served, met with a new demand, or
// failing before a connection.
func TestExpressChangesNoOutcome(t *testing.T) {
	scenarios := []struct {
		name string
		run  func(t *testing.T, express bool) string
		want string
	}{
		{"served", expressServed, "10× 200 HTTP/2.0; server: 1 refused of 11, 10 bodies whole"},
		{"new demand", expressNewDemand, "HTTP/2.0 HTTP/2.0 HTTP/2.0 HTTP/3.0 HTTP/3.0; server: 2 refused"},
		{"failing before a connection", expressDialFails, "200 HTTP/2.0, then 426 HTTP/1.1; server: 426 200 200 200 426"},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			for _, path := range []string{"recall", "express"} {
				t.Run(path, func(t *testing.T) {
					untraced(t)
					if path == "recall" {
						traced.Store(true) // as after any WithTrace: express steps aside
					}
					if got := sc.run(t, path == "express"); got != sc.want {
						t.Errorf("got %q\nwant %q", got, sc.want)
					}
				})
			}
		})
	}
}

// wantExpress checks that a GET to url takes the express path exactly when
// the test asks for it.
func wantExpress(t *testing.T, tr *Transport, url string, want bool) {
	t.Helper()
	req := newRequest(t, testContext(t), "GET", url, nil)
	if via, _ := tr.express(&transportRequest{req: req}, tr.mem.Load()); (via != nil) != want {
		t.Fatalf("express takes the route: %v, want %v", via != nil, want)
	}
}

func expressServed(t *testing.T, express bool) string {
	s := startServer(t, testserver.Config{TLS: true, Require: testserver.RequireHTTP2, Upgrade: []string{"HTTP/2"}})
	tr := newTransport(t, legacyBase(t, s.CertPool()))
	var answers []string
	for i := range 10 {
		if i == 2 {
			wantExpress(t, tr, s.URL, express)
		}
		resp, err := tr.RoundTrip(newRequest(t, testContext(t), "POST", s.URL, strings.NewReader(fmt.Sprint("request ", i))))
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
		answers = append(answers, fmt.Sprint(resp.StatusCode, " ", resp.Proto))
	}
	whole := 0
	for i, seen := range s.Requests()[1:] {
		if seen.BodyLen == int64(len(fmt.Sprint("request ", i))) {
			whole++
		}
	}
	if strings.Count(strings.Join(answers, ","), "200 HTTP/2.0") != 10 {
		return strings.Join(answers, ", ")
	}
	return fmt.Sprintf("10× 200 HTTP/2.0; server: %d refused of %d, %d bodies whole", s.Refused(), s.Count(), whole)
}

// expressNewDemand: a 426 over the remembered protocol is handled like any
// other, and what worked next is remembered instead.
func expressNewDemand(t *testing.T, express bool) string {
	s, wantHTTP3 := raisingServer(t)
	tr := newTransport(t, legacyBase(t, s.CertPool()))
	var protos []string
	for i := range 5 {
		switch i {
		case 2:
			wantExpress(t, tr, s.URL, express)
		case 3:
			wantHTTP3.Store(true)
		}
		resp, err := tr.RoundTrip(newRequest(t, testContext(t), "GET", s.URL, nil))
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
		protos = append(protos, resp.Proto)
	}
	return fmt.Sprintf("%s; server: %d refused", strings.Join(protos, " "), s.Refused())
}

// expressDialFails: the remembered HTTP/2 route's next dial fails, so the
// route is forgotten and the request goes through Base; HTTP/2 is marked
// broken, so Base's 426 comes back untouched.
func expressDialFails(t *testing.T, express bool) string {
	s := startServer(t, testserver.Config{TLS: true, Require: testserver.RequireHTTP2, Upgrade: []string{"HTTP/2"}})
	base := legacyBase(t, s.CertPool())
	var failNext atomic.Bool
	base.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if failNext.Swap(false) {
			return nil, errors.New("dial refused by the test")
		}
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	tr := newTransport(t, base)
	var answers []string
	for i := range 4 {
		if i == 2 {
			wantExpress(t, tr, s.URL, express)
		}
		if i == 3 {
			tr.CloseIdleConnections()
			failNext.Store(true)
		}
		resp, err := tr.RoundTrip(newRequest(t, testContext(t), "POST", s.URL, strings.NewReader("payload")))
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
		answers = append(answers, fmt.Sprint(resp.StatusCode, " ", resp.Proto))
	}
	var seen []string
	for _, r := range s.Requests() {
		status := "200"
		if r.Refused {
			status = "426"
		} else if r.BodyLen != int64(len("payload")) {
			status = "200 with a cut body"
		}
		seen = append(seen, status)
	}
	return fmt.Sprintf("%s, then %s; server: %s", answers[2], answers[3], strings.Join(seen, " "))
}

// raisingServer demands HTTP/2 until wantHTTP3 is set, then HTTP/3.
func raisingServer(t *testing.T) (s *testserver.Server, wantHTTP3 *atomic.Bool) {
	wantHTTP3 = new(atomic.Bool)
	demand := func(r *http.Request) bool {
		if wantHTTP3.Load() {
			return r.ProtoMajor >= 3
		}
		return r.ProtoMajor >= 2
	}
	s = startServer(t, testserver.Config{TLS: true, HTTP3: true, Require: demand, Upgrade: []string{"HTTP/2"},
		Refuse: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.ProtoMajor < 2 {
				w.Header().Set("Upgrade", "HTTP/2")
			} else {
				w.Header().Set("Upgrade", "HTTP/3")
			}
			w.WriteHeader(http.StatusUpgradeRequired)
		})})
	return s, wantHTTP3
}
