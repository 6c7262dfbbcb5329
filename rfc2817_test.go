package upgrade

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/h426/upgrade/internal/testserver"
)

// cups is what CUPS sends with its 426.
var cups = []string{"TLS/1.2,TLS/1.1,TLS/1.0"}

// inbandServer starts a cleartext server that demands TLS and switches to
// it in-band as mode says.
func inbandServer(t testing.TB, mode testserver.InbandMode, offer []string) *testserver.Server {
	return startServer(t, testserver.Config{InbandTLS: mode, Require: testserver.RequireTLS, Upgrade: offer})
}

// upgradeRequests returns the "OPTIONS *" requests the server saw.
func upgradeRequests(seen []testserver.Request) []testserver.Request {
	var options []testserver.Request
	for _, r := range seen {
		if r.Method == http.MethodOptions && r.Path == "*" {
			options = append(options, r)
		}
	}
	return options
}

// checkNothingServedInClear fails if a request other than the OPTIONS was
// served without TLS: desynchronisation would show as one.
func checkNothingServedInClear(t *testing.T, seen []testserver.Request) {
	t.Helper()
	for _, r := range seen {
		if r.Method != http.MethodOptions && !r.Refused && r.TLSVersion == 0 {
			t.Errorf("server served %s %s in clear", r.Method, r.Path)
		}
	}
}

// inbandSteps records the Inband hooks of a Trace.
type inbandSteps struct {
	mu    sync.Mutex // guards steps: hooks run on the dialing goroutine
	steps []string
}

func (s *inbandSteps) add(step string) {
	s.mu.Lock()
	s.steps = append(s.steps, step)
	s.mu.Unlock()
}

// attach adds the Inband hooks to trace.
func (s *inbandSteps) attach(trace *Trace) *Trace {
	trace.InbandWroteRequest = func(addr, host, upgrade string) { s.add("OPTIONS Upgrade: " + upgrade) }
	trace.InbandGotResponse = func(status int, _ http.Header) { s.add(http.StatusText(status)) }
	trace.InbandHandshakeDone = func(state tls.ConnectionState, err error) {
		if err == nil {
			s.add("handshake " + tls.VersionName(state.Version) + " " + state.NegotiatedProtocol)
		}
	}
	trace.InbandGotOptions = func(status int) { s.add("OPTIONS answered " + http.StatusText(status)) }
	return trace
}

func (s *inbandSteps) get() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.steps)
}

// Issue 4, behaviours 1, 2 and 5: the request is replayed on a connection
// switched to TLS in-band, whatever the 101's Connection header says.
func TestInbandTLS(t *testing.T) {
	tests := []struct {
		name        string
		mode        testserver.InbandMode
		offer       []string
		wantUpgrade string // the Upgrade value of the OPTIONS
	}{
		{"CUPS offer, RFC 2817 server", testserver.InbandRFC2817, cups, "TLS/1.2, TLS/1.1, TLS/1.0"},
		{"CUPS offer, 101 with Keep-Alive", testserver.InbandCUPS, cups, "TLS/1.2, TLS/1.1, TLS/1.0"},
		{"CUPS offer, ippeveprinter's 101 with Content-Length and chunked", testserver.InbandIPPEveprinter, cups, "TLS/1.2, TLS/1.1, TLS/1.0"},
		{"Apache's TLS/1.0", testserver.InbandRFC2817, []string{"TLS/1.0, HTTP/1.1"}, "TLS/1.0"},
		{"bare TLS, split lines, other offers", testserver.InbandRFC2817, []string{"websocket, tls", "TLS/1.2"}, "TLS, TLS/1.2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := inbandServer(t, tt.mode, tt.offer)
			tr := newTransport(t, legacyBase(t, s.CertPool()))
			var rec recorder
			var steps inbandSteps
			ctx := WithTrace(testContext(t), steps.attach(rec.trace()))
			req := newRequest(t, ctx, "GET", s.URL+"/printers?x=1", nil)

			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			if body := readAll(t, resp); resp.StatusCode != 200 || body != "ok\n" || resp.Proto != "HTTP/1.1" {
				t.Fatalf("got %d %q over %s, want 200 ok over HTTP/1.1", resp.StatusCode, body, resp.Proto)
			}
			if resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 || resp.TLS.NegotiatedProtocol != "http/1.1" {
				t.Errorf("resp.TLS = %+v, want TLS 1.2 or later with ALPN http/1.1", resp.TLS)
			}
			if got := resp.Request.URL.String(); got != req.URL.String() {
				t.Errorf("resp.Request.URL = %s, want the caller's %s", got, req.URL)
			}

			seen := s.Requests()
			if len(seen) != 3 {
				t.Fatalf("server saw %d requests, want the refused GET, the OPTIONS and the GET in TLS: %+v", len(seen), seen)
			}
			first, options, replay := seen[0], seen[1], seen[2]
			if !first.Refused || first.TLSVersion != 0 {
				t.Errorf("first request: refused %v, TLS %x; want refused in clear", first.Refused, first.TLSVersion)
			}
			if options.Method != "OPTIONS" || options.Path != "*" || options.TLSVersion != 0 || options.Host != s.Addr ||
				options.Header.Get("Connection") != "Upgrade" || options.Header.Get("Upgrade") != tt.wantUpgrade {
				t.Errorf("upgrade request: %s %s Host %s TLS %x Connection %q Upgrade %q; want OPTIONS * in clear, Host %s, Connection Upgrade, Upgrade %q",
					options.Method, options.Path, options.Host, options.TLSVersion, options.Header.Get("Connection"), options.Header.Get("Upgrade"), s.Addr, tt.wantUpgrade)
			}
			if replay.Refused || replay.Method != "GET" || replay.Path != "/printers" || replay.Proto != "HTTP/1.1" ||
				replay.TLSVersion < tls.VersionTLS12 || replay.ALPN != "http/1.1" || replay.Host != s.Addr {
				t.Errorf("replay arrived as %+v, want GET /printers over HTTP/1.1 in TLS", replay)
			}
			if replay.Header.Get("Upgrade") != "" || replay.Header.Get("Connection") != "" {
				t.Errorf("replay carried Upgrade %q, Connection %q", replay.Header.Get("Upgrade"), replay.Header.Get("Connection"))
			}

			wantSteps := []string{"OPTIONS Upgrade: " + tt.wantUpgrade, "Switching Protocols", "handshake TLS 1.2 http/1.1", "OPTIONS answered OK"}
			if got := steps.get(); !slices.Equal(got, wantSteps) {
				t.Errorf("in-band trace %q, want %q", got, wantSteps)
			}
			if len(rec.finished) != 1 || rec.finished[0].Err != nil || rec.finished[0].TLS < tls.VersionTLS12 {
				t.Errorf("replay traced as %+v, want one success over TLS", rec.finished)
			}
		})
	}
}

// Issue 4, behaviour 1: upgraded connections are pooled and reused, whether
// the next request meets the 426 again or goes there from memory.
func TestInbandConnectionReused(t *testing.T) {
	for _, memorySize := range []int{0, -1} {
		name := map[int]string{0: "memory on", -1: "memory off"}[memorySize]
		t.Run(name, func(t *testing.T) {
			s := inbandServer(t, testserver.InbandRFC2817, cups)
			var conns connCounter
			base := legacyBase(t, s.CertPool())
			base.DialContext = conns.DialContext
			tr := newTransport(t, base)
			tr.MemorySize = memorySize
			for i := range 3 {
				resp, err := tr.RoundTrip(newRequest(t, testContext(t), "GET", s.URL, nil))
				if err != nil {
					t.Fatal(err)
				}
				if readAll(t, resp); resp.StatusCode != 200 || resp.TLS == nil {
					t.Fatalf("request %d: %d, TLS %v", i, resp.StatusCode, resp.TLS != nil)
				}
			}
			seen := s.Requests()
			if n := len(upgradeRequests(seen)); n != 1 {
				t.Errorf("server saw %d OPTIONS for 3 requests, want 1", n)
			}
			checkNothingServedInClear(t, seen)
			// Close releases the upgraded connection as any other.
			tr.Close()
			conns.waitAllClosed(t)
		})
	}
}

// A body with GetBody is sent again intact over the upgraded connection.
func TestInbandReplaysBody(t *testing.T) {
	s := inbandServer(t, testserver.InbandCUPS, cups)
	tr := newTransport(t, legacyBase(t, s.CertPool()))
	payload := bytes.Repeat([]byte("ipp\x00"), 40_000)
	resp, err := tr.RoundTrip(newRequest(t, testContext(t), "POST", s.URL+"/ipp/print", bytes.NewReader(payload)))
	if err != nil {
		t.Fatal(err)
	}
	if readAll(t, resp); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	seen := s.Requests()
	last := seen[len(seen)-1]
	if last.Method != "POST" || last.TLSVersion == 0 || last.BodyLen != int64(len(payload)) || last.BodySHA256 != sha256.Sum256(payload) {
		t.Errorf("server got %s in TLS %x with %d bytes; want POST in TLS with the payload", last.Method, last.TLSVersion, last.BodyLen)
	}
}

// Issue 4, behaviours 3 and 4: every server that does not switch as RFC
// 2817 says, or that sends bytes where none may be, makes the attempt fail
// before the request leaves; the request is never sent in clear.
func TestInbandFailsClosed(t *testing.T) {
	tests := []struct {
		name    string
		mode    testserver.InbandMode
		wantErr error // nil: any error (the failure shape depends on timing)
	}{
		{"OPTIONS answered 200 (Apache 2.4.64)", testserver.InbandAnswer200, errInbandRefused},
		{"closed instead of answering", testserver.InbandClose, errInbandRefused},
		{"bytes in clear after the 101", testserver.InbandBytesAfter101, nil},
		{"101 with a body", testserver.Inband101WithBody, ErrInbandDesync},
		{"not TLS after the 101", testserver.InbandNotTLS, nil},
		{"closed after the 101", testserver.InbandCloseAfter101, nil},
		{"second response after the OPTIONS answer", testserver.InbandExtraResponse, ErrInbandDesync},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := inbandServer(t, tt.mode, cups)
			tr := newTransport(t, legacyBase(t, s.CertPool()))
			start := time.Now()
			resp, err := tr.RoundTrip(newRequest(t, testContext(t), "GET", s.URL, nil))
			if err == nil {
				readAll(t, resp)
				t.Fatalf("got %d, want an error", resp.StatusCode)
			}
			if elapsed := time.Since(start); elapsed > promptly {
				t.Errorf("took %v to fail", elapsed)
			}
			var failed *UpgradeError
			if !errors.As(err, &failed) || failed.Response.StatusCode != 426 {
				t.Fatalf("error %v, want an *UpgradeError with the 426", err)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("error %v, want %v", err, tt.wantErr)
			}
			seen := s.Requests()
			checkNothingServedInClear(t, seen)
			if len(seen) != 2 || len(upgradeRequests(seen)) != 1 {
				t.Errorf("server saw %+v, want the refused GET and one OPTIONS", seen)
			}
		})
	}
}

// Other ways an in-band attempt fails: a TLS version the server lacks, a
// certificate the caller does not trust. The next offer is tried.
func TestInbandHandshakeFailures(t *testing.T) {
	otherCA, err := testserver.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		offer     []string
		serverMax uint16
		trustedBy func(*testserver.Server) *testserver.CA
		wantTLS   uint16 // 0: every offer fails
	}{
		{"TLS/1.3 from a TLS 1.2 server", []string{"TLS/1.3"}, tls.VersionTLS12, (*testserver.Server).CA, 0},
		{"TLS/1.3 falls back to TLS/1.2", []string{"TLS/1.3, TLS/1.2"}, tls.VersionTLS12, (*testserver.Server).CA, tls.VersionTLS12},
		{"TLS/1.0 never below the floor", []string{"TLS/1.0"}, tls.VersionTLS11, (*testserver.Server).CA, 0},
		{"untrusted certificate", cups, tls.VersionTLS12, func(*testserver.Server) *testserver.CA { return otherCA }, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startServer(t, testserver.Config{InbandTLS: testserver.InbandRFC2817, MinTLSVersion: tls.VersionTLS10, MaxTLSVersion: tt.serverMax,
				Require: testserver.RequireTLS, Upgrade: tt.offer})
			tr := newTransport(t, legacyBase(t, tt.trustedBy(s).CertPool()))
			resp, err := tr.RoundTrip(newRequest(t, testContext(t), "GET", s.URL, nil))
			if tt.wantTLS == 0 {
				var failed *UpgradeError
				if !errors.As(err, &failed) {
					t.Fatalf("error %v, want an *UpgradeError", err)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				if readAll(t, resp); resp.StatusCode != 200 || tlsVersion(resp) != tt.wantTLS {
					t.Errorf("got %d over %s, want 200 over %s", resp.StatusCode, tls.VersionName(tlsVersion(resp)), tls.VersionName(tt.wantTLS))
				}
			}
			checkNothingServedInClear(t, s.Requests())
		})
	}
}

// A server that switches and then never answers the OPTIONS holds the
// attempt only as long as the handshake timeout or the request's context.
func TestInbandSilentServer(t *testing.T) {
	t.Run("handshake timeout", func(t *testing.T) {
		s := inbandServer(t, testserver.InbandSilent, cups)
		base := legacyBase(t, s.CertPool())
		base.TLSHandshakeTimeout = 200 * time.Millisecond
		tr := newTransport(t, base)
		start := time.Now()
		_, err := tr.RoundTrip(newRequest(t, testContext(t), "GET", s.URL, nil))
		var failed *UpgradeError
		if !errors.As(err, &failed) || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("error %v, want an *UpgradeError for a timeout", err)
		}
		if elapsed := time.Since(start); elapsed > promptly {
			t.Errorf("took %v, want about the 200ms handshake timeout", elapsed)
		}
		checkNothingServedInClear(t, s.Requests())
	})
	t.Run("request context", func(t *testing.T) {
		s := inbandServer(t, testserver.InbandSilent, cups)
		tr := newTransport(t, legacyBase(t, s.CertPool()))
		ctx, cancel := context.WithTimeout(testContext(t), 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := tr.RoundTrip(newRequest(t, ctx, "GET", s.URL, nil))
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("error %v, want the context's deadline", err)
		}
		if elapsed := time.Since(start); elapsed > promptly {
			t.Errorf("took %v, want about the 300ms context", elapsed)
		}
		checkNothingServedInClear(t, s.Requests())
	})
}

// A 101 is never data: inside TLS it fails the request; in clear, to the
// first request, it goes back to the caller as Base returned it, never
// taken as the start of TLS.
func TestInbandUnasked101(t *testing.T) {
	t.Run("inside TLS", func(t *testing.T) {
		s := inbandServer(t, testserver.InbandUnasked101, cups)
		tr := newTransport(t, legacyBase(t, s.CertPool()))
		resp, err := tr.RoundTrip(newRequest(t, testContext(t), "GET", s.URL, nil))
		if err == nil {
			resp.Body.Close()
			t.Fatalf("got %d, want an error", resp.StatusCode)
		}
		if !errors.Is(err, ErrInbandDesync) {
			t.Errorf("error %v, want %v", err, ErrInbandDesync)
		}
		checkNothingServedInClear(t, s.Requests())
	})
	t.Run("in clear", func(t *testing.T) {
		s := inbandServer(t, testserver.InbandUnasked101Clear, cups)
		tr := newTransport(t, legacyBase(t, s.CertPool()))
		var rec recorder
		resp, err := tr.RoundTrip(newRequest(t, WithTrace(testContext(t), rec.trace()), "GET", s.URL, nil))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 101 || resp.TLS != nil || len(rec.got426) != 0 {
			t.Errorf("got %d, TLS %v, %d 426s; want Base's 101 untouched", resp.StatusCode, resp.TLS != nil, len(rec.got426))
		}
		if seen := s.Requests(); len(seen) != 1 || len(upgradeRequests(seen)) != 0 {
			t.Errorf("server saw %+v, want the one GET", seen)
		}
	})
}

// Issue 4, behaviour 6: the same loop guard, proxy rule and memory as the
// other targets.
func TestInbandSameRules(t *testing.T) {
	t.Run("a 426 inside TLS is the answer", func(t *testing.T) {
		s := startServer(t, testserver.Config{InbandTLS: testserver.InbandRFC2817, Require: testserver.RefuseAll, Upgrade: cups})
		tr := newTransport(t, legacyBase(t, s.CertPool()))
		resp, err := tr.RoundTrip(newRequest(t, testContext(t), "GET", s.URL, nil))
		if err != nil {
			t.Fatal(err)
		}
		if readAll(t, resp); resp.StatusCode != 426 || resp.TLS == nil {
			t.Errorf("got %d, TLS %v; want the second 426, from inside TLS", resp.StatusCode, resp.TLS != nil)
		}
		if n := s.Count(); n != 3 {
			t.Errorf("server saw %d requests, want 3 (GET, OPTIONS, GET)", n)
		}
	})
	t.Run("not through a proxy", func(t *testing.T) {
		s := inbandServer(t, testserver.InbandRFC2817, cups)
		base := legacyBase(t, s.CertPool())
		// The server is its own forward proxy: net/http serves absolute-form requests.
		proxyURL, _ := url.Parse(s.URL)
		base.Proxy = http.ProxyURL(proxyURL)
		tr := newTransport(t, base)
		var rec recorder
		resp, err := tr.RoundTrip(newRequest(t, WithTrace(testContext(t), rec.trace()), "GET", s.URL, nil))
		if err != nil {
			t.Fatal(err)
		}
		if readAll(t, resp); resp.StatusCode != 426 {
			t.Errorf("status %d, want the 426", resp.StatusCode)
		}
		if skipped := rec.decided[0].Skipped; len(skipped) == 0 || !errors.Is(skipped[0].Reason, ErrProxied) {
			t.Errorf("skipped %v, want TLS refused for the proxy", skipped)
		}
		if n := s.Count(); n != 1 {
			t.Errorf("server saw %d requests, want 1", n)
		}
	})
	t.Run("imported memory", func(t *testing.T) {
		s := inbandServer(t, testserver.InbandRFC2817, cups)
		tr := newTransport(t, legacyBase(t, s.CertPool()))
		file := `{"version":1,"entries":[{"origin":"` + s.URL + `","protocol":"TLS/1.2","expires":"` +
			time.Now().Add(time.Hour).UTC().Format(time.RFC3339) + `"}]}`
		if n, _, err := tr.ImportMemory(strings.NewReader(file)); n != 1 || err != nil {
			t.Fatalf("imported %d: %v", n, err)
		}
		resp, err := tr.RoundTrip(newRequest(t, testContext(t), "GET", s.URL, nil))
		if err != nil {
			t.Fatal(err)
		}
		if readAll(t, resp); resp.StatusCode != 200 || resp.TLS == nil {
			t.Errorf("got %d, TLS %v; want 200 over in-band TLS at once", resp.StatusCode, resp.TLS != nil)
		}
		seen := s.Requests()
		if len(seen) != 2 || seen[0].Header.Get("Upgrade") != "TLS/1.2" || s.Refused() != 0 {
			t.Errorf("server saw %+v, want OPTIONS with Upgrade TLS/1.2, then the GET", seen)
		}
	})
}

func TestInbandTokens(t *testing.T) {
	tests := []struct {
		lines []string
		offer Protocol
		want  string
	}{
		{cups, Protocol{"TLS", "1.2"}, "TLS/1.2, TLS/1.1, TLS/1.0"},
		{[]string{"h2c, tls/1.0", "TLS/1.0, TLS/9.9, TLS"}, Protocol{"tls", "1.0"}, "TLS/1.0, TLS"},
		{nil, Protocol{"TLS", "1.3"}, "TLS/1.3"},
	}
	for _, tt := range tests {
		offered, err := ParseUpgrade(http.Header{"Upgrade": tt.lines})
		if err != nil {
			t.Fatal(err)
		}
		if got := inbandTokens(offered, tt.offer); got != tt.want {
			t.Errorf("inbandTokens(%q) = %q, want %q", tt.lines, got, tt.want)
		}
	}
}

// In-band connections are pooled by what they are, not by how the server
// spelled its offer: requests that meet the same demand in other words
// share one switched connection.
func TestInbandPoolIgnoresOfferSpelling(t *testing.T) {
	spellings := []string{"TLS/1.2,TLS/1.1,TLS/1.0", "TLS/1.0, TLS/1.1, TLS/1.2", "TLS/1.1,TLS/1.2,TLS/1.0", "tls/1.2, TLS/1.0"}
	var n atomic.Int32
	refuse := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Upgrade", spellings[int(n.Add(1)-1)%len(spellings)])
		w.Header().Set("Connection", "Upgrade")
		w.WriteHeader(http.StatusUpgradeRequired)
	})
	s := startServer(t, testserver.Config{InbandTLS: testserver.InbandCUPS, Require: testserver.RequireTLS, Refuse: refuse})
	var conns connCounter
	base := legacyBase(t, s.CertPool())
	base.DialContext = conns.DialContext
	tr := newTransport(t, base)
	tr.MemorySize = -1 // every request meets its 426
	for i := range 12 {
		resp, err := tr.RoundTrip(newRequest(t, testContext(t), "GET", s.URL, nil))
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if readAll(t, resp); resp.StatusCode != 200 || resp.TLS == nil {
			t.Fatalf("request %d: %d, TLS %v", i, resp.StatusCode, resp.TLS != nil)
		}
	}
	if options := len(upgradeRequests(s.Requests())); options != 1 {
		t.Errorf("%d in-band switches for 12 requests, want 1", options)
	}
	if dialed := conns.dialed(); dialed != 2 {
		t.Errorf("%d connections dialed, want 2: one in clear for the 426s, one switched", dialed)
	}
}
