package upgrade

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/h426/upgrade/internal/testserver"
	"github.com/quic-go/quic-go"
	"go.uber.org/goleak"
)

// h1h2Base speaks HTTP/1.1 and HTTP/2 over TCP, as most clients do.
func h1h2Base(t testing.TB, s *testserver.Server) *http.Transport {
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetHTTP2(true)
	base := &http.Transport{Protocols: protocols, TLSClientConfig: &tls.Config{RootCAs: s.CertPool()}}
	t.Cleanup(base.CloseIdleConnections)
	return base
}

func TestUpgradeToHTTP3(t *testing.T) {
	tests := []struct {
		name      string
		offer     string
		base      func(testing.TB, *testserver.Server) *http.Transport
		wantFirst string // the protocol the 426 came over
	}{
		{"h1 to h3 via HTTP/3", "HTTP/3", func(t testing.TB, s *testserver.Server) *http.Transport { return legacyBase(t, s.CertPool()) }, "HTTP/1.1"},
		{"h1 to h3 via HTTP/3.0", "HTTP/3.0", func(t testing.TB, s *testserver.Server) *http.Transport { return legacyBase(t, s.CertPool()) }, "HTTP/1.1"},
		{"h2 to h3 via h3", "h3", h1h2Base, "HTTP/2.0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startServer(t, testserver.Config{TLS: true, HTTP3: true, Require: testserver.RequireHTTP3, Upgrade: []string{tt.offer}})
			tr := newTransport(t, tt.base(t, s))
			payload := bytes.Repeat([]byte("h3"), 50_000)
			resp, err := tr.RoundTrip(newRequest(t, testContext(t), "PUT", s.URL+"/three", bytes.NewReader(payload)))
			if err != nil {
				t.Fatal(err)
			}
			if body := readAll(t, resp); resp.StatusCode != 200 || body != "ok\n" || resp.Proto != "HTTP/3.0" {
				t.Fatalf("got %d %q over %s, want 200 over HTTP/3.0", resp.StatusCode, body, resp.Proto)
			}
			if resp.TLS == nil || resp.TLS.Version != tls.VersionTLS13 {
				t.Errorf("HTTP/3 response without TLS 1.3 state: %+v", resp.TLS)
			}
			seen := s.Requests()
			if len(seen) != 2 || seen[0].Proto != tt.wantFirst || !seen[0].Refused || seen[1].Proto != "HTTP/3.0" {
				t.Fatalf("server saw %+v, want a refused %s then HTTP/3.0", seen, tt.wantFirst)
			}
			if seen[1].Method != "PUT" || seen[1].BodySHA256 != sha256.Sum256(payload) {
				t.Errorf("replay arrived as %s with %d bytes", seen[1].Method, seen[1].BodyLen)
			}
		})
	}
}

func TestHTTP3NotChosen(t *testing.T) {
	t.Run("http origin", func(t *testing.T) {
		s := startServer(t, testserver.Config{Require: testserver.RefuseAll, Upgrade: []string{"HTTP/3"}})
		tr := newTransport(t, legacyBase(t, nil))
		var rec recorder
		resp, err := tr.RoundTrip(newRequest(t, WithTrace(testContext(t), rec.trace()), "GET", s.URL, nil))
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
		if resp.StatusCode != 426 || s.Count() != 1 {
			t.Errorf("got %d after %d requests, want the 426 after 1", resp.StatusCode, s.Count())
		}
		if skipped := rec.decided[0].Skipped; len(skipped) != 1 || !errors.Is(skipped[0].Reason, ErrNeedsTLS) {
			t.Errorf("skipped %v, want HTTP/3 refused for needing TLS", skipped)
		}
	})
	t.Run("behind a proxy", func(t *testing.T) {
		s := startServer(t, testserver.Config{TLS: true, HTTP3: true, Require: testserver.RequireHTTP2, Upgrade: []string{"HTTP/3, HTTP/2"}})
		proxy := startConnectProxy(t, nil)
		base := legacyBase(t, s.CertPool())
		base.Proxy = http.ProxyURL(proxy.url)
		tr := newTransport(t, base)
		var rec recorder
		resp, err := tr.RoundTrip(newRequest(t, WithTrace(testContext(t), rec.trace()), "GET", s.URL, nil))
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
		if resp.StatusCode != 200 || resp.Proto != "HTTP/2.0" {
			t.Errorf("got %d over %s, want 200 over HTTP/2.0 through the proxy", resp.StatusCode, resp.Proto)
		}
		if skipped := rec.decided[0].Skipped; len(skipped) != 1 || !errors.Is(skipped[0].Reason, ErrProxied) {
			t.Errorf("skipped %v, want HTTP/3 refused for the proxy", skipped)
		}
		if n := proxy.tunnels.Load(); n != 2 {
			t.Errorf("%d tunnels through the proxy, want 2 (first request and replay)", n)
		}
	})
}

// With UDP dropped, HTTP/3 fails within its setup bound and the next offer
// carries the request; the failure marks HTTP/3 broken for the origin.
func TestHTTP3FallbackAndBrokenMark(t *testing.T) {
	s := startServer(t, testserver.Config{TLS: true, DropUDP: true, Require: testserver.RequireHTTP2, Upgrade: []string{"HTTP/3, HTTP/2"}})
	tr := newTransport(t, legacyBase(t, s.CertPool()))
	tr.HTTP3HandshakeTimeout = 200 * time.Millisecond
	tr.MemorySize = -1 // every request meets the 426, so the marks decide
	clock := time.Now()
	tr.now = func() time.Time { return clock }

	host := ""
	get := func() *recorder {
		t.Helper()
		var rec recorder
		req := newRequest(t, WithTrace(testContext(t), rec.trace()), "GET", s.URL, nil)
		if host != "" {
			req.Host = host
		}
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
		if resp.StatusCode != 200 || resp.Proto != "HTTP/2.0" {
			t.Fatalf("got %d over %s, want 200 over HTTP/2.0", resp.StatusCode, resp.Proto)
		}
		return &rec
	}

	rec := get()
	if len(rec.finished) != 2 || !rec.finished[0].Fallback || rec.finished[0].Protocol.String() != "HTTP/3" {
		t.Fatalf("attempts %+v, want HTTP/3 failing over to HTTP/2", rec.finished)
	}
	rec = get()
	if len(rec.started) != 1 || rec.started[0].String() != "HTTP/2" {
		t.Errorf("while marked, tried %v; want HTTP/2 directly", rec.started)
	}
	if skipped := rec.decided[0].Skipped; len(skipped) != 1 || !errors.Is(skipped[0].Reason, ErrBroken) {
		t.Errorf("skipped %v, want HTTP/3 as broken", skipped)
	}
	// What broke is the path to the server over UDP: another virtual host
	// behind it pays nothing more.
	host = "other.test"
	if rec = get(); len(rec.started) != 1 || rec.started[0].String() != "HTTP/2" {
		t.Errorf("another Host on the same server tried %v; want HTTP/2 directly", rec.started)
	}
	host = ""
	clock = clock.Add(brokenPeriod + time.Second)
	if rec = get(); len(rec.started) != 2 {
		t.Errorf("after the mark expired, tried %v; want HTTP/3 again, then HTTP/2", rec.started)
	}
}

// A route remembered for one virtual host is not taken while its path is
// marked broken for another on the same address: the request goes through
// Base at once, dialing no QUIC.
func TestRememberedRouteSkipsBrokenPath(t *testing.T) {
	s := startServer(t, testserver.Config{TLS: true, DropUDP: true})
	tr := newTransport(t, legacyBase(t, s.CertPool()))
	tr.HTTP3FallbackDelay = 50 * time.Millisecond
	file := `{"version":1,"entries":[` +
		`{"origin":"` + s.URL + `","protocol":"HTTP/3","expires":"2999-01-01T00:00:00Z"},` +
		`{"origin":"` + s.URL + `","host":"other.test","protocol":"HTTP/3","expires":"2999-01-01T00:00:00Z"}]}`
	if n, _, err := tr.ImportMemory(strings.NewReader(file)); n != 2 || err != nil {
		t.Fatalf("imported %d: %v", n, err)
	}
	getAs(t, tr, s.URL, "") // QUIC gets no answer: TCP wins, HTTP/3 is marked broken
	tried := h3Of(t, tr).tried.Load()
	if resp := getAs(t, tr, s.URL, "other.test"); resp.Proto != "HTTP/1.1" {
		t.Errorf("got %s, want HTTP/1.1 through Base", resp.Proto)
	}
	if n := h3Of(t, tr).tried.Load() - tried; n != 0 {
		t.Errorf("another Host dialed QUIC %d times while the path was marked broken, want none", n)
	}
}

func TestHTTP3Failures(t *testing.T) {
	otherCA, err := testserver.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		server   testserver.Config
		upgrade  string
		wantErr  func(error) bool
		wantNext string // "" when the request must end in *UpgradeError
	}{
		{"UDP dropped, nothing else offered", testserver.Config{DropUDP: true}, "HTTP/3", isTimeout, ""},
		{"certificate fails over QUIC, HTTP/2 next", testserver.Config{HTTP3: true, HTTP3CA: otherCA}, "HTTP/3, HTTP/2", isCertError, "HTTP/2.0"},
		{"certificate fails over QUIC, nothing else", testserver.Config{HTTP3: true, HTTP3CA: otherCA}, "HTTP/3", isCertError, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.server
			cfg.TLS, cfg.Require, cfg.Upgrade = true, testserver.RequireHTTP2, []string{tt.upgrade}
			s := startServer(t, cfg)
			tr := newTransport(t, legacyBase(t, s.CertPool()))
			if cfg.DropUDP { // costs the setup bound; a certificate fails whenever the handshake gets that far
				tr.HTTP3HandshakeTimeout = 200 * time.Millisecond
			}
			var rec recorder
			resp, err := tr.RoundTrip(newRequest(t, WithTrace(testContext(t), rec.trace()), "GET", s.URL, nil))
			if tt.wantNext != "" {
				if err != nil {
					t.Fatal(err)
				}
				readAll(t, resp)
				if resp.Proto != tt.wantNext || resp.StatusCode != 200 {
					t.Errorf("got %d over %s, want 200 over %s", resp.StatusCode, resp.Proto, tt.wantNext)
				}
				if first := rec.finished[0]; !tt.wantErr(first.Err) {
					t.Errorf("HTTP/3 failed with %v", first.Err)
				}
				return
			}
			var ue *UpgradeError
			if !errors.As(err, &ue) || len(ue.Attempts) != 1 || !tt.wantErr(ue.Attempts[0].Err) {
				t.Fatalf("got %v; want an *UpgradeError with the HTTP/3 failure", err)
			}
			if readAll(t, ue.Response) != "426 upgrade required\n" || s.Count() != 1 {
				t.Errorf("426 not carried, or server saw %d requests", s.Count())
			}
		})
	}
}

func isTimeout(err error) bool {
	var timeout interface{ Timeout() bool }
	return errors.As(err, &timeout) && timeout.Timeout()
}

func isCertError(err error) bool {
	var certErr *tls.CertificateVerificationError
	return errors.As(err, &certErr)
}

// The request's own deadline stops an HTTP/3 setup that would take longer.
// The deadline leaves a slow machine time for the 426 first.
func TestHTTP3SetupStopsWithTheRequest(t *testing.T) {
	s := startServer(t, testserver.Config{TLS: true, DropUDP: true, Require: testserver.RequireHTTP2, Upgrade: []string{"HTTP/3, HTTP/2"}})
	tr := newTransport(t, legacyBase(t, s.CertPool()))
	tr.HTTP3HandshakeTimeout = time.Minute
	tr.HTTP3FallbackDelay = -1 // the request's own deadline is what is tested
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	var rec recorder
	_, err := tr.RoundTrip(newRequest(t, WithTrace(ctx, rec.trace()), "GET", s.URL, nil))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want the request's deadline", err)
	}
	if len(rec.finished) != 1 || rec.finished[0].Fallback {
		t.Errorf("attempts %+v: a request that ran out of time must not fall back", rec.finished)
	}
}

func TestHTTP3SetupBoundDefault(t *testing.T) {
	if got := (&Transport{}).http3HandshakeTimeout(); got != 2*time.Second {
		t.Errorf("default HTTP/3 setup bound %v, want 2s", got)
	}
}

func TestHTTP3DropsHopByHopHeaders(t *testing.T) {
	s := startServer(t, testserver.Config{TLS: true, HTTP3: true, Require: testserver.RequireHTTP3, Upgrade: []string{"HTTP/3"}})
	tr := newTransport(t, legacyBase(t, s.CertPool()))
	req := newRequest(t, testContext(t), "GET", s.URL, nil)
	req.Header.Set("Connection", "X-Hop")
	req.Header.Set("X-Hop", "1")
	req.Header.Set("TE", "gzip")
	req.Header.Set("Keep-Alive", "timeout=5")
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	replayed := s.Requests()[1]
	if replayed.Proto != "HTTP/3.0" {
		t.Fatalf("replay over %s", replayed.Proto)
	}
	for _, name := range []string{"Connection", "X-Hop", "Te", "Keep-Alive"} {
		if v, ok := replayed.Header[name]; ok {
			t.Errorf("HTTP/3 replay carried %s: %q", name, v)
		}
	}
}

// Many HTTP/3 replays, then Close: the QUIC socket and its goroutines go
// (goleak in TestMain), and the transport refuses further work.
func TestHTTP3CloseReleasesQUIC(t *testing.T) {
	s := startServer(t, testserver.Config{TLS: true, HTTP3: true, Require: testserver.RequireHTTP3, Upgrade: []string{"HTTP/3"}})
	tr := &Transport{Base: legacyBase(t, s.CertPool()), HTTP3HandshakeTimeout: quicSetup}
	for range 30 {
		resp, err := tr.RoundTrip(newRequest(t, testContext(t), "GET", s.URL, nil))
		if err != nil {
			t.Fatal(err)
		}
		if readAll(t, resp); resp.Proto != "HTTP/3.0" {
			t.Fatalf("replay over %s", resp.Proto)
		}
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.RoundTrip(newRequest(t, testContext(t), "GET", s.URL, nil)); !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: %v", err)
	}
}

// The HTTP/3 transport really carries the setup bound to quic-go.
func TestHTTP3SetupBoundReachesQUIC(t *testing.T) {
	for _, tt := range []struct {
		field, want time.Duration
	}{{0, 2 * time.Second}, {700 * time.Millisecond, 700 * time.Millisecond}} {
		tr := &Transport{HTTP3HandshakeTimeout: tt.field}
		h := tr.newHTTP3()
		if got := h.QUICConfig.HandshakeIdleTimeout; got != tt.want {
			t.Errorf("HTTP3HandshakeTimeout %v gave quic-go %v, want %v", tt.field, got, tt.want)
		}
		h.Close()
	}
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

// h3Server is a server that demands HTTP/3 of every request. It returns
// once its QUIC listener runs, so that a goroutine baseline taken after it
// holds the server's own.
func h3Server(t testing.TB, handler http.Handler) *testserver.Server {
	t.Helper()
	const last = "quic-go.(*baseServer).runSendQueue(" // the listener's last goroutine to start
	before := goroutinesIn(last)
	s := startServer(t, testserver.Config{TLS: true, HTTP3: true, Require: testserver.RequireHTTP3, Upgrade: []string{"HTTP/3"}, Handler: handler})
	deadline := time.Now().Add(10 * time.Second)
	for !slices.ContainsFunc(goroutinesIn(last), func(id string) bool { return !slices.Contains(before, id) }) {
		if time.Now().After(deadline) {
			t.Fatal("the server's QUIC listener did not start")
		}
		time.Sleep(time.Millisecond)
	}
	return s
}

// goroutinesIn returns the IDs of the goroutines whose stack holds frame.
func goroutinesIn(frame string) []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var ids []string
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, frame) {
			id, _, _ := strings.Cut(strings.TrimPrefix(g, "goroutine "), " ")
			ids = append(ids, id)
		}
	}
	return ids
}

// h3Transport wraps base with a QUIC setup bound that a loaded machine
// meets; it is closed when the test ends.
func h3Transport(t testing.TB, base http.RoundTripper) *Transport {
	tr := newTransport(t, base)
	tr.HTTP3HandshakeTimeout = 10 * time.Second
	return tr
}

// getOverH3 sends a GET through rt, reads its body and closes it, and
// checks it was served over HTTP/3.
func getOverH3(t testing.TB, rt http.RoundTripper, url string) string {
	t.Helper()
	resp, err := rt.RoundTrip(newRequest(t, testContext(t), "GET", url, nil))
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, resp)
	if resp.Proto != "HTTP/3.0" {
		t.Fatalf("got %d over %s, want HTTP/3.0", resp.StatusCode, resp.Proto)
	}
	return body
}

// h3Of returns the HTTP/3 transport tr has built.
func h3Of(t testing.TB, tr *Transport) *http3Transport {
	t.Helper()
	for _, rt := range tr.inner.all() {
		if h, ok := rt.(*http3Transport); ok {
			return h
		}
	}
	t.Fatal("no HTTP/3 transport was built")
	return nil
}

// counts returns the requests not done, the connections alive, and
// whether the UDP socket is open.
func (h *http3Transport) counts() (active, conns int, socket bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.active, h.conns, h.sock != nil
}

// waitGoroutinesGone waits, generously, for every goroutine started since
// baseline (goleak.IgnoreCurrent) to end: client and server, QUIC and TCP.
// It fails listing those still running.
func waitGoroutinesGone(t testing.TB, baseline goleak.Option) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := goleak.Find(baseline)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("goroutines left behind: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// http.Client users never call Close. Twenty short-lived clients, each
// with one HTTP/3 replay and then CloseIdleConnections, leave no goroutine
// behind: the QUIC connections, the UDP socket and its reader all go.
func TestHTTP3CloseIdleConnectionsReleasesSocket(t *testing.T) {
	s := h3Server(t, nil)
	baseline := goleak.IgnoreCurrent()
	for range 20 {
		tr := &Transport{Base: legacyBase(t, s.CertPool()), HTTP3HandshakeTimeout: 10 * time.Second}
		client := &http.Client{Transport: tr}
		getOverH3(t, client.Transport, s.URL)
		client.CloseIdleConnections()
		if _, conns, socket := h3Of(t, tr).counts(); conns != 0 || socket {
			t.Errorf("after CloseIdleConnections: %d QUIC connections, socket open %v", conns, socket)
		}
	}
	waitGoroutinesGone(t, baseline)
}

// CloseIdleConnections closes the connections of hosts with nothing in
// flight, and leaves one whose response is being read.
func TestHTTP3CloseIdleConnectionsSparesResponseBeingRead(t *testing.T) {
	release := make(chan struct{})
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/slow" {
			io.WriteString(w, "ok\n")
			return
		}
		io.WriteString(w, "part1\n")
		w.(http.Flusher).Flush()
		<-release
		io.WriteString(w, "part2\n")
	})
	busy, idle := h3Server(t, slow), h3Server(t, nil)
	base := legacyBase(t, busy.CertPool())
	base.TLSClientConfig.RootCAs.AppendCertsFromPEM(idle.CA().PEM())
	tr := h3Transport(t, base)
	getOverH3(t, tr, idle.URL)
	resp, err := tr.RoundTrip(newRequest(t, testContext(t), "GET", busy.URL+"/slow", nil))
	if err != nil {
		t.Fatal(err)
	}
	h := h3Of(t, tr)
	tr.CloseIdleConnections()
	if _, conns, _ := h.counts(); conns != 1 {
		t.Errorf("%d QUIC connections after CloseIdleConnections, want the busy one only", conns)
	}
	close(release)
	if body := readAll(t, resp); body != "part1\npart2\n" {
		t.Errorf("response being read during CloseIdleConnections: %q", body)
	}
	tr.CloseIdleConnections()
	if _, conns, socket := h.counts(); conns != 0 || socket {
		t.Errorf("after the response: %d QUIC connections, socket open %v", conns, socket)
	}
}

// A connection unused for Base's IdleConnTimeout is closed, and with the
// last one the socket goes; the next request dials again.
func TestHTTP3IdleConnTimeout(t *testing.T) {
	s := h3Server(t, nil)
	baseline := goleak.IgnoreCurrent()
	base := legacyBase(t, s.CertPool())
	base.IdleConnTimeout = 200 * time.Millisecond
	tr := h3Transport(t, base)
	getOverH3(t, tr, s.URL)
	waitGoroutinesGone(t, baseline) // Base's TCP connection times out too
	h := h3Of(t, tr)
	if _, conns, socket := h.counts(); conns != 0 || socket {
		t.Errorf("after IdleConnTimeout: %d QUIC connections, socket open %v", conns, socket)
	}
	getOverH3(t, tr, s.URL) // remembered: straight to HTTP/3
	if n := h.dialed.Load(); n != 2 {
		t.Errorf("%d QUIC connections dialed, want 2", n)
	}
}

// The idle timeout counts from the last use: a connection used more often
// than that is kept, however long it lives, though its timer is armed once.
func TestHTTP3IdleConnTimeoutCountsFromLastUse(t *testing.T) {
	s := h3Server(t, nil)
	base := legacyBase(t, s.CertPool())
	base.IdleConnTimeout = 500 * time.Millisecond
	tr := h3Transport(t, base)
	for start := time.Now(); time.Since(start) < 3*base.IdleConnTimeout; time.Sleep(base.IdleConnTimeout / 5) {
		getOverH3(t, tr, s.URL)
	}
	if n := h3Of(t, tr).dialed.Load(); n != 1 {
		t.Errorf("%d QUIC connections dialed for requests never %v apart, want 1", n, base.IdleConnTimeout)
	}
}

// The idle timeout counts from the end of a response, never cutting one:
// not while the server thinks, nor while the body comes slowly.
func TestHTTP3IdleConnTimeoutSparesRequests(t *testing.T) {
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(600 * time.Millisecond)
		io.WriteString(w, "part1\n")
		w.(http.Flusher).Flush()
		time.Sleep(600 * time.Millisecond)
		io.WriteString(w, "part2\n")
	})
	s := h3Server(t, slow)
	base := legacyBase(t, s.CertPool())
	base.IdleConnTimeout = 200 * time.Millisecond
	tr := h3Transport(t, base)
	if body := getOverH3(t, tr, s.URL); body != "part1\npart2\n" {
		t.Errorf("slow response: %q", body)
	}
	if n := h3Of(t, tr).dialed.Load(); n != 1 {
		t.Errorf("%d QUIC connections dialed for one request, want 1", n)
	}
}

// A response read to its end counts as done though it is never closed
// (HEAD, typically), so Close still releases everything; a later Close of
// the body does not count it twice.
func TestHTTP3ResponseDoneAtEOF(t *testing.T) {
	s := h3Server(t, nil)
	baseline := goleak.IgnoreCurrent()
	tr := &Transport{Base: legacyBase(t, s.CertPool()), HTTP3HandshakeTimeout: 10 * time.Second}
	for _, method := range []string{"HEAD", "GET"} {
		resp, err := tr.RoundTrip(newRequest(t, testContext(t), method, s.URL, nil))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadAll(resp.Body); err != nil || resp.Proto != "HTTP/3.0" {
			t.Fatalf("%s over %s: %v", method, resp.Proto, err)
		}
		if active, _, _ := h3Of(t, tr).counts(); active != 0 {
			t.Errorf("%s read to EOF: %d requests still active", method, active)
		}
	}
	resp, err := tr.RoundTrip(newRequest(t, testContext(t), "GET", s.URL, nil))
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp) // to EOF, then closed
	resp.Body.Close()
	h := h3Of(t, tr)
	if active, _, _ := h.counts(); active != 0 {
		t.Errorf("read to EOF and closed twice: %d requests active, want 0", active)
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if _, conns, socket := h.counts(); conns != 0 || socket {
		t.Errorf("after Close: %d QUIC connections, socket open %v", conns, socket)
	}
	waitGoroutinesGone(t, baseline)
}

// Base's ResponseHeaderTimeout bounds the HTTP/3 replay as net/http bounds
// its own requests: from the request written to the response header, not
// the body after it.
func TestHTTP3ResponseHeaderTimeout(t *testing.T) {
	t.Run("server never answers", func(t *testing.T) {
		for _, body := range []io.Reader{nil, bytes.NewReader(bytes.Repeat([]byte("x"), 64<<10))} {
			s := h3Server(t, testserver.Hang)
			base := legacyBase(t, s.CertPool())
			base.ResponseHeaderTimeout = 300 * time.Millisecond
			tr := h3Transport(t, base)
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			began := time.Now()
			_, err := tr.RoundTrip(newRequest(t, ctx, "PUT", s.URL, body))
			took := time.Since(began)
			if !isTimeout(err) || !strings.Contains(err.Error(), "net/http: timeout awaiting response headers") {
				t.Errorf("got %v, want net/http's timeout awaiting response headers", err)
			}
			if ctx.Err() != nil || took > 15*time.Second {
				t.Errorf("ended after %v, by the request's own deadline", took)
			}
			if seen := s.Requests(); len(seen) != 2 || seen[1].Proto != "HTTP/3.0" {
				t.Errorf("server saw %+v, want the replay over HTTP/3", seen)
			}
		}
	})
	t.Run("slow body after the header", func(t *testing.T) {
		slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "part1\n")
			w.(http.Flusher).Flush()
			time.Sleep(900 * time.Millisecond)
			io.WriteString(w, "part2\n")
		})
		s := h3Server(t, slow)
		base := legacyBase(t, s.CertPool())
		base.ResponseHeaderTimeout = 300 * time.Millisecond
		tr := h3Transport(t, base)
		if body := getOverH3(t, tr, s.URL); body != "part1\npart2\n" {
			t.Errorf("got %q", body)
		}
	})
}

// With Base's DisableKeepAlives, each HTTP/3 request has a connection of
// its own, closed when its response is done. The server tells connections
// apart by stream ID: a new connection's first request is stream 0.
func TestHTTP3DisableKeepAlives(t *testing.T) {
	for _, disable := range []bool{false, true} {
		t.Run(fmt.Sprintf("DisableKeepAlives=%v", disable), func(t *testing.T) {
			var mu sync.Mutex
			var streams []quic.StreamID
			record := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if b, ok := r.Body.(interface{ StreamID() quic.StreamID }); ok {
					mu.Lock()
					streams = append(streams, b.StreamID())
					mu.Unlock()
				}
				io.WriteString(w, "ok\n")
			})
			s := h3Server(t, record)
			base := legacyBase(t, s.CertPool())
			base.DisableKeepAlives = disable
			tr := h3Transport(t, base)
			var h *http3Transport
			for range 2 {
				getOverH3(t, tr, s.URL)
				if h = h3Of(t, tr); disable {
					if _, conns, _ := h.counts(); conns != 0 {
						t.Errorf("%d QUIC connections left after the response", conns)
					}
				}
			}
			mu.Lock()
			defer mu.Unlock()
			want := []quic.StreamID{0, 4}
			if disable {
				want = []quic.StreamID{0, 0}
			}
			if !slices.Equal(streams, want) {
				t.Errorf("HTTP/3 requests came on streams %v, want %v", streams, want)
			}
			wantDials := int32(1)
			if disable {
				wantDials = 2
			}
			if n := h.dialed.Load(); n != wantDials {
				t.Errorf("%d QUIC connections dialed, want %d", n, wantDials)
			}
		})
	}
}

// poolKey is quic-go's own pool key, so the transport knows which
// connection a request uses.
func TestHTTP3PoolKey(t *testing.T) {
	for host, want := range map[string]string{
		"example.com":      "example.com:443",
		"example.com:8443": "example.com:8443",
		"127.0.0.1":        "127.0.0.1:443",
		"[::1]":            "[::1]:443",
		"[::1]:8443":       "[::1]:8443",
		"bücher.example":   "xn--bcher-kva.example:443",
	} {
		if got := poolKey(&url.URL{Host: host}); got != want {
			t.Errorf("poolKey(%q) = %q, want %q", host, got, want)
		}
	}
	s := h3Server(t, nil)
	tr := h3Transport(t, legacyBase(t, s.CertPool()))
	getOverH3(t, tr, s.URL)
	h := h3Of(t, tr)
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.hosts[s.Addr]; !ok || h.keyless {
		t.Errorf("hosts %v, keyless %v: quic-go dialed under another key than %s", h.hosts, h.keyless, s.Addr)
	}
}

// When a TCP protocol stands behind HTTP/3, a QUIC handshake not done
// within HTTP3FallbackDelay races it, and with UDP dropped TCP wins: a
// network that drops UDP costs the delay, not the setup bound
// (race_test.go has the race itself). HTTP/3 offered alone keeps the bound.
func TestHTTP3FallbackDelay(t *testing.T) {
	t.Run("another offer behind", func(t *testing.T) {
		s := startServer(t, testserver.Config{TLS: true, DropUDP: true, Require: testserver.RequireHTTP2, Upgrade: []string{"HTTP/3, HTTP/2"}})
		tr := newTransport(t, legacyBase(t, s.CertPool()))
		tr.HTTP3HandshakeTimeout = time.Hour
		var rec recorder
		resp, err := tr.RoundTrip(newRequest(t, WithTrace(testContext(t), rec.trace()), "GET", s.URL, nil))
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
		if resp.Proto != "HTTP/2.0" || len(rec.finished) != 2 || !errors.Is(rec.finished[0].Err, errQUICSlow) || !rec.finished[0].Fallback {
			t.Errorf("%s after %+v; want HTTP/3 given up after the delay, then HTTP/2", resp.Proto, rec.finished)
		}
		if !tr.broken.any() {
			t.Error("HTTP/3 not marked broken")
		}
	})
	t.Run("Base behind a remembered route", func(t *testing.T) {
		s := startServer(t, testserver.Config{TLS: true, DropUDP: true, Require: testserver.RequireHTTP2, Upgrade: []string{"HTTP/3, HTTP/2"}})
		tr := newTransport(t, legacyBase(t, s.CertPool()))
		tr.HTTP3HandshakeTimeout = time.Hour
		remember(t, tr, s.URL, "HTTP/3")
		var forgot []error
		trace := &Trace{Forgot: func(info MemoryInfo) { forgot = append(forgot, info.Err) }}
		resp, err := tr.RoundTrip(newRequest(t, WithTrace(testContext(t), trace), "GET", s.URL, nil))
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
		if resp.Proto != "HTTP/2.0" || len(forgot) != 1 || !errors.Is(forgot[0], errQUICSlow) {
			t.Errorf("%s after forgetting %v; want HTTP/3 given up after the delay, then HTTP/2", resp.Proto, forgot)
		}
	})
	t.Run("HTTP/3 alone", func(t *testing.T) {
		s := startServer(t, testserver.Config{TLS: true, DropUDP: true, Require: testserver.RequireHTTP3, Upgrade: []string{"HTTP/3"}})
		tr := newTransport(t, legacyBase(t, s.CertPool()))
		tr.HTTP3HandshakeTimeout = 500 * time.Millisecond
		tr.HTTP3FallbackDelay = 10 * time.Millisecond
		_, err := tr.RoundTrip(newRequest(t, testContext(t), "GET", s.URL, nil))
		var ue *UpgradeError
		if !errors.As(err, &ue) || errors.Is(err, errQUICSlow) {
			t.Errorf("got %v, want *UpgradeError after the whole setup bound", err)
		}
	})
}

// slowHandshakeBase is legacyBase with a client certificate whose callback
// takes delay: every TLS handshake, over TCP and QUIC alike, takes at
// least delay, as on a path with a round trip of that length.
func slowHandshakeBase(t *testing.T, ca *testserver.CA, delay time.Duration) *http.Transport {
	t.Helper()
	cert, err := ca.ClientCert("slow")
	if err != nil {
		t.Fatal(err)
	}
	base := legacyBase(t, ca.CertPool())
	base.TLSClientConfig.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		time.Sleep(delay)
		return &cert, nil
	}
	return base
}

// http3AloneServer demands HTTP/3 and offers it alone, and asks for a
// client certificate from the CA it returns, so that a client can make its
// handshakes slow.
func http3AloneServer(t *testing.T) (*testserver.Server, *testserver.CA) {
	ca, err := testserver.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	return startServer(t, testserver.Config{
		TLS: true, HTTP3: true, CA: ca, ClientCAs: ca.CertPool(),
		Require: testserver.RequireHTTP3, Upgrade: []string{"HTTP/3"},
	}), ca
}

// HTTP/3 learned from a 426 that offered it alone keeps the whole setup
// bound when remembered: Base behind it would only meet that 426 again.
func TestHTTP3AloneKeepsTheWholeBoundWhenRemembered(t *testing.T) {
	s, ca := http3AloneServer(t)
	tr := newTransport(t, slowHandshakeBase(t, ca, 500*time.Millisecond))

	resp, err := tr.RoundTrip(newRequest(t, testContext(t), "GET", s.URL, nil))
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	if resp.StatusCode != 200 || resp.ProtoMajor != 3 {
		t.Fatalf("first request: %d over %s, want 200 over HTTP/3", resp.StatusCode, resp.Proto)
	}

	tr.CloseIdleConnections() // as IdleConnTimeout would, between two requests
	rec := &recorder{}
	resp, err = tr.RoundTrip(newRequest(t, WithTrace(testContext(t), rec.trace()), "GET", s.URL, nil))
	if err != nil {
		t.Fatalf("second request: %v", err)
	}
	readAll(t, resp)
	if resp.StatusCode != 200 || resp.ProtoMajor != 3 {
		var reason error
		if len(rec.decided) > 0 {
			reason = rec.decided[0].Reason
			for _, sk := range rec.decided[0].Skipped {
				t.Logf("skipped %v: %v", sk.Protocol, sk.Reason)
			}
		}
		t.Errorf("second request: %d over %s (decision: %v), want 200 over HTTP/3 as the first",
			resp.StatusCode, resp.Proto, reason)
	}
}

// HTTP/3 learned from a 426 that offered it alone keeps the whole setup
// bound in a process that starts warm from the exported memory: with a
// QUIC handshake slower than the fallback delay and TCP fast, a race would
// let TCP win and meet that 426 again, with HTTP/3 then marked broken.
func TestHTTP3AloneKeepsTheWholeBoundAcrossExport(t *testing.T) {
	s, ca := http3AloneServer(t)
	cert, err := ca.ClientCert("slow over QUIC")
	if err != nil {
		t.Fatal(err)
	}
	base := legacyBase(t, ca.CertPool()) // TLS 1.2 at most over TCP: QUIC alone runs 1.3
	base.TLSClientConfig.GetClientCertificate = func(info *tls.CertificateRequestInfo) (*tls.Certificate, error) {
		if info.Version == tls.VersionTLS13 {
			time.Sleep(time.Second)
		}
		return &cert, nil
	}
	first := newTransport(t, base)
	first.HTTP3FallbackDelay = 50 * time.Millisecond
	get := func(tr *Transport) *http.Response {
		t.Helper()
		resp, err := tr.RoundTrip(newRequest(t, testContext(t), "GET", s.URL, nil))
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
		return resp
	}
	if resp := get(first); resp.StatusCode != 200 || resp.ProtoMajor != 3 {
		t.Fatalf("first request: %d over %s, want 200 over HTTP/3", resp.StatusCode, resp.Proto)
	}
	var file bytes.Buffer
	if err := first.ExportMemory(&file); err != nil {
		t.Fatal(err)
	}
	warm := newTransport(t, base)
	warm.HTTP3FallbackDelay = first.HTTP3FallbackDelay
	if n, _, err := warm.ImportMemory(&file); n != 1 || err != nil {
		t.Fatalf("imported %d entries: %v", n, err)
	}
	if resp := get(warm); resp.StatusCode != 200 || resp.ProtoMajor != 3 {
		t.Errorf("warm start: %d over %s, want 200 over HTTP/3 as the first", resp.StatusCode, resp.Proto)
	}
}
