package upgrade

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/h426/upgrade/internal/testserver"
)

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
		{name: "a trace", target: h2, want: true, request: func(req *http.Request) *http.Request {
			return req.WithContext(WithTrace(context.Background(), &Trace{Remembered: func(MemoryInfo) {}}))
		}},
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
			bothWays(t, func(t *testing.T, express bool) string {
				got := sc.run(t, express)
				if got != sc.want {
					t.Errorf("got %q\nwant %q", got, sc.want)
				}
				return got
			})
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

// bothWays runs f once with the express path off (recall alone) and once
// with it on, and fails unless both tell the same. Off, every Transport
// newTransport makes has CheckUpgrade set to DefaultCheckUpgrade, which
// allows what nil does but keeps a route from the express path.
func bothWays(t *testing.T, f func(t *testing.T, express bool) string) {
	t.Helper()
	var got [2]string
	for i, path := range []string{"recall", "express"} {
		t.Run(path, func(t *testing.T) {
			recallOnly = path == "recall"
			t.Cleanup(func() { recallOnly = false })
			got[i] = f(t, path == "express")
		})
	}
	if got[0] != got[1] {
		t.Errorf("the express path changes the outcome:\nrecall:  %s\nexpress: %s", got[0], got[1])
	}
}

// A host that keeps the scheme's default port once after canonicalHost
// dropped it ("h.test:443:443" is remembered as "h.test:443") names a slot
// whose host is not in canonical form: a request to "h.test:443", whose
// origin is "h.test", must not go over that slot's route.
func TestExpressHostKeepingADefaultPort(t *testing.T) {
	bothWays(t, func(t *testing.T, _ bool) string {
		learn := func(r *http.Request) bool { return r.URL.Path != "/learn" || testserver.RequireTLS13(r) }
		s := startServer(t, testserver.Config{TLS: true, Require: learn, Upgrade: []string{"TLS/1.3"}})
		base := legacyBase(t, s.CertPool())
		base.TLSClientConfig.ServerName = "localhost"
		base.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, s.Addr) // every host is the test server
		}
		tr := newTransport(t, base)
		get := func(host, path string) string {
			req := newRequest(t, testContext(t), "GET", "https://placeholder.test"+path, nil)
			req.URL.Host, req.Host = host, host
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			readAll(t, resp)
			return fmt.Sprintf("%d %s TLS %x", resp.StatusCode, resp.Proto, tlsVersion(resp))
		}
		get("h.test:443:443", "/learn") // 426, then TLS 1.3: remembered as https://h.test:443
		get("h.test:443:443", "/")      // over the remembered route, which settles it
		answer := get("h.test:443", "/")
		var mem bytes.Buffer
		tr.ExportMemory(&mem)
		var seen []string
		for _, r := range s.Requests() {
			seen = append(seen, fmt.Sprintf("%s TLS %x", r.Proto, r.TLSVersion))
		}
		return fmt.Sprintf("%s; server saw %s; memory has %d entries", answer, strings.Join(seen, ", "), strings.Count(mem.String(), `"origin"`))
	})
}

// Host forms that name the remembered origin other than canonically, or
// name another origin, get the same answer and leave the same memory both
// ways.
func TestExpressHostForms(t *testing.T) {
	bothWays(t, func(t *testing.T, _ bool) string {
		s := startServer(t, testserver.Config{TLS: true, Require: testserver.RequireHTTP2, Upgrade: []string{"HTTP/2"}})
		tr := newTransport(t, legacyBase(t, s.CertPool()))
		port := s.Addr[strings.LastIndexByte(s.Addr, ':')+1:]
		base := "https://localhost:" + port
		var out []string
		get := func(url, host string) {
			req := newRequest(t, testContext(t), "GET", url, nil)
			if host != "" {
				req.Host = host
			}
			resp, err := tr.RoundTrip(req)
			if err != nil {
				out = append(out, "error "+err.Error())
				return
			}
			readAll(t, resp)
			out = append(out, fmt.Sprint(resp.StatusCode, " ", resp.Proto))
		}
		get(base, "")                      // learn
		get(base, "")                      // settle
		get("https://LOCALHOST:"+port, "") // upper case
		get(base, "LOCALHOST:"+port)       // Host in upper case
		get(base, "localhost:"+port+"")    // Host as the URL's
		get(base, "other.test")            // another virtual host
		get("HTTPS://localhost:"+port, "") // scheme in upper case (url.Parse lowers it)
		get("https://127.0.0.1:"+port, "") // another origin, learned last
		get(base, "")                      // the first, no longer last
		var mem strings.Builder
		tr.ExportMemory(&mem)
		refused := s.Refused()
		return fmt.Sprintf("%s; refused %d; memory %d", strings.Join(out, ", "), refused,
			strings.Count(mem.String(), `"origin"`))
	})
}

// Requests of unusual shapes to a remembered HTTP/2 origin get the same
// answer, and the server sees the same, whether they take the express path
// or recall's.
func TestExpressOddRequests(t *testing.T) {
	bothWays(t, func(t *testing.T, _ bool) string {
		s := startServer(t, testserver.Config{TLS: true, Require: testserver.RequireHTTP2, Upgrade: []string{"HTTP/2"}})
		tr := newTransport(t, legacyBase(t, s.CertPool()))
		learnAndSettle(t, tr, s.URL)
		body := func(req *http.Request, b string) {
			req.Body = io.NopCloser(strings.NewReader(b))
			req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(b)), nil }
			req.ContentLength = int64(len(b))
		}
		shapes := []struct {
			name string
			make func(req *http.Request) *http.Request
		}{
			{"trailers", func(req *http.Request) *http.Request {
				req.Method = "POST"
				body(req, "with trailers")
				req.ContentLength = -1
				req.Trailer = http.Header{"X-Sum": {"42"}}
				req.Header.Set("Te", "trailers")
				return req
			}},
			{"expect", func(req *http.Request) *http.Request {
				req.Method = "PUT"
				body(req, "expecting")
				req.Header.Set("Expect", "100-continue")
				return req
			}},
			{"nobody", func(req *http.Request) *http.Request {
				req.Method = "POST"
				req.Body = http.NoBody
				return req
			}},
			{"short body", func(req *http.Request) *http.Request {
				req.Method = "POST"
				body(req, "four")
				req.ContentLength = 10
				return req
			}},
			{"long body", func(req *http.Request) *http.Request {
				req.Method = "POST"
				body(req, "longer than declared")
				req.ContentLength = 3
				return req
			}},
			{"canceled", func(req *http.Request) *http.Request {
				ctx, cancel := context.WithCancel(req.Context())
				cancel()
				return req.WithContext(ctx)
			}},
			{"Host as URL", func(req *http.Request) *http.Request {
				req.Host = req.URL.Host
				return req
			}},
			{"empty Host", func(req *http.Request) *http.Request {
				req.Host = ""
				return req
			}},
			{"header case", func(req *http.Request) *http.Request {
				req.Header["x-lower"] = []string{"v"}
				return req
			}},
		}
		var out []string
		for _, sh := range shapes {
			req := sh.make(newRequest(t, testContext(t), "GET", s.URL+"/"+strings.ReplaceAll(sh.name, " ", "-"), nil))
			resp, err := tr.RoundTrip(req)
			if err != nil {
				out = append(out, sh.name+": error "+err.Error())
				continue
			}
			b := readAll(t, resp)
			out = append(out, fmt.Sprintf("%s: %d %s %q", sh.name, resp.StatusCode, resp.Proto, b))
		}
		// A request cut short by an error may reach the server's log late.
		for n := -1; n != s.Count(); time.Sleep(50 * time.Millisecond) {
			n = s.Count()
		}
		var srv []string
		for _, r := range s.Requests()[3:] {
			var names []string
			for k, v := range r.Header {
				names = append(names, k+"="+strings.Join(v, ","))
			}
			sort.Strings(names)
			host := strings.ReplaceAll(r.Host, s.Addr, "ADDR")
			srv = append(srv, fmt.Sprintf("%s %s %s host=%s body=%d refused=%v %v", r.Proto, r.Method, r.Path, host, r.BodyLen, r.Refused, names))
		}
		sort.Strings(srv)
		out = append(out, srv...)
		var mem strings.Builder
		tr.ExportMemory(&mem)
		out = append(out, fmt.Sprintf("broken: %v; memory entries: %d", tr.broken.any(), strings.Count(mem.String(), `"origin"`)))
		return strings.Join(out, "\n")
	})
}

// Requests over the express path while the memory changes beside them
// (another origin put and forgotten, the origin itself put again) and while Close runs: no race, and every answer is a
// response over HTTP/2 or ErrClosed.
func TestExpressUnderChurnAndClose(t *testing.T) {
	bothWays(t, func(t *testing.T, express bool) string {
		s := startServer(t, testserver.Config{TLS: true, Require: testserver.RequireHTTP2, Upgrade: []string{"HTTP/2"}})
		tr := newTransport(t, legacyBase(t, s.CertPool()))
		learnAndSettle(t, tr, s.URL)
		wantExpress(t, tr, s.URL, express)
		errs := capErrors(t)
		stop := make(chan struct{})
		var churn sync.WaitGroup
		churn.Add(1)
		go func() {
			defer churn.Done()
			m := tr.memory()
			other := origin{secure: true, host: "other.test"}
			mine := originOf(newRequest(t, testContext(t), "GET", s.URL, nil))
			entry := m.slotOf(mine).memoryEntry
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				m.put(other, memoryEntry{via: candidate{target: target{kind: targetHTTP2}}, expires: time.Now().Add(time.Hour)})
				if i%2 == 0 {
					m.forget(other)
				}
				m.put(mine, entry) // learned again: a new slot, settled anew
				time.Sleep(time.Millisecond)
			}
		}()
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 40 {
					if g == 0 && i == 30 {
						tr.Close()
					}
					resp, err := tr.RoundTrip(newRequest(t, testContext(t), "GET", s.URL, nil))
					switch {
					case errors.Is(err, ErrClosed):
					case err != nil:
						errs.Error(err)
					case resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2:
						drain(resp)
						errs.Errorf("%d %s", resp.StatusCode, resp.Proto)
					default:
						if err := drain(resp); err != nil {
							errs.Error(err)
						}
					}
				}
			}()
		}
		wg.Wait()
		close(stop)
		churn.Wait()
		return "no race, every answer HTTP/2 or ErrClosed"
	})
}

// learnAndSettle sends two GETs to url: the first learns its origin's
// route, the second, through recall, settles it for the express path.
func learnAndSettle(t *testing.T, tr *Transport, url string) {
	t.Helper()
	for range 2 {
		resp, err := tr.RoundTrip(newRequest(t, testContext(t), "GET", url, nil))
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
	}
}
