package upgrade

// Issue 7: hostile servers and bad input. Every row runs against a fresh
// server with a bounded context and asserts the outcome (the 426, a typed
// error, or the right response), that the call ended within its bound,
// that no goroutine outlived the row, that every request body the caller
// handed over (its own and each one GetBody made) was closed exactly once,
// and that every body the server read in full is the caller's, byte for
// byte, as many times as the row allows.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/h426/upgrade/internal/testserver"
	"go.uber.org/goleak"
)

// checkNoLeak fails the test if a goroutine started after this call is
// still running when the test ends. Call it first, so that its check runs
// after every other cleanup (servers, transports) has run.
func checkNoLeak(t *testing.T) {
	t.Helper()
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, before) })
}

// sentBody is a request body the test keeps track of: the caller's own and
// every one GetBody makes, each counting its Closes.
type sentBody struct {
	data []byte

	mu     sync.Mutex // guards bodies: GetBody may run on another goroutine
	bodies []*countingBody
}

func newSentBody(data []byte) *sentBody { return &sentBody{data: data} }

func (b *sentBody) open() *countingBody {
	body := &countingBody{r: bytes.NewReader(b.data)}
	b.mu.Lock()
	b.bodies = append(b.bodies, body)
	b.mu.Unlock()
	return body
}

// request returns a request carrying the body, with GetBody when
// replayable, with its length known.
func (b *sentBody) request(t testing.TB, ctx context.Context, method, url string, replayable bool) *http.Request {
	t.Helper()
	req := newRequest(t, ctx, method, url, b.open())
	req.ContentLength = int64(len(b.data))
	if replayable {
		req.GetBody = func() (io.ReadCloser, error) { return b.open(), nil }
	}
	return req
}

// checkClosed checks that every body handed out for each sent was closed
// exactly once. Transports close bodies on goroutines of their own, so it
// waits for the first Close of each, then a moment more for a late second.
func checkClosed(t testing.TB, sent ...*sentBody) {
	t.Helper()
	checkClosedSettle(t, 20*time.Millisecond, sent...)
}

// checkClosedSettle is checkClosed waiting settle for late Closes.
func checkClosedSettle(t testing.TB, settle time.Duration, sent ...*sentBody) {
	t.Helper()
	var bodies []*countingBody
	for _, b := range sent {
		b.mu.Lock()
		bodies = append(bodies, b.bodies...)
		b.mu.Unlock()
	}
	deadline := time.Now().Add(patience)
	for _, body := range bodies {
		for body.closes.Load() == 0 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	}
	time.Sleep(settle)
	errs := capErrors(t)
	for _, b := range sent {
		for i, body := range b.bodies {
			if n := body.closes.Load(); n != 1 {
				errs.Errorf("request body %d of %d (0 is the caller's) closed %d times, want 1", i, len(b.bodies), n)
			}
		}
	}
}

// wire sorts what a server saw: requests other than the in-band OPTIONS,
// and among them those it did not refuse.
func wire(s *testserver.Server) (requests, served []testserver.Request) {
	for _, r := range s.Requests() {
		if r.Method == http.MethodOptions && r.Path == "*" {
			continue
		}
		requests = append(requests, r)
		if !r.Refused {
			served = append(served, r)
		}
	}
	return requests, served
}

// checkServed checks that the server took the body in full exactly want
// times, each time the caller's bytes, and never in clear when it demands
// TLS in-band.
func checkServed(t testing.TB, s *testserver.Server, data []byte, want int, inband bool) {
	t.Helper()
	_, served := wire(s)
	if len(served) != want {
		t.Errorf("server served %d requests, want %d", len(served), want)
	}
	sum := sha256.Sum256(data)
	for _, r := range served {
		if r.BodyLen != int64(len(data)) || r.BodySHA256 != sum {
			t.Errorf("server read %d bytes (sha256 %x…), want the caller's %d (%x…)", r.BodyLen, r.BodySHA256[:4], len(data), sum[:4])
		}
		if inband && r.TLSVersion == 0 {
			t.Errorf("server served %s %s in clear", r.Method, r.Path)
		}
	}
}

// countHandler counts the requests whose body the server read to the end
// without error and then handed to next (nil: 200 "ok").
func countHandler(n *atomic.Int32, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		if next == nil {
			io.WriteString(w, "ok\n")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Predicates on RoundTrip's error.

func anyUpgradeError(err error) bool {
	var ue *UpgradeError
	return errors.As(err, &ue) && ue.Response != nil && ue.Response.StatusCode == 426 && len(ue.Attempts) > 0
}

// upgradeErrorWith wants an *UpgradeError whose attempts include one
// matching is.
func upgradeErrorWith(is func(error) bool) func(error) bool {
	return func(err error) bool { return anyUpgradeError(err) && is(err) }
}

// baseError wants an error as Base returned it: neither an *UpgradeError
// nor a *ParseError.
func baseError(err error) bool {
	var ue *UpgradeError
	var pe *ParseError
	return err != nil && !errors.As(err, &ue) && !errors.As(err, &pe)
}

func errorIs(target error) func(error) bool {
	return func(err error) bool { return errors.Is(err, target) }
}

func isParseError(err error) bool {
	var pe *ParseError
	return errors.As(err, &pe)
}

// hostileCase is one row of the matrix.
type hostileCase struct {
	name   string
	server testserver.Config // Handler, when set, is wrapped to count bodies read in full
	// base is the first transport; nil means legacyBase (HTTP/1.1, TLS ≤ 1.2).
	base  func(testing.TB, *testserver.Server) *http.Transport
	setup func(*Transport) // adjusts the transport; nil for none

	// The request: a POST of 64 KiB of random bytes, with GetBody unless
	// oneShot, sent with "Expect: 100-continue" when expect100.
	oneShot, expect100 bool

	// bound is the request's context; patience when zero.
	bound time.Duration
	// cancelAfter, when set, cancels the request that long after the
	// event cancelOn names ("426", "replay", or "served": the server's
	// handler has the request, its body read) happens.
	cancelOn    string
	cancelAfter time.Duration
	// beside says the row runs beside others: its caller checks for
	// leaked goroutines once all of them have ended.
	beside bool

	// The outcome: a response with wantStatus, over wantProto when set, or
	// an error that wantErr accepts. When the row is about the deadline,
	// wantDeadline lets the context expire (wantErr should accept that).
	wantStatus   int
	wantProto    string
	wantErr      func(error) bool
	wantDeadline bool
	// wantReason, when set, is what the trace must give as the reason the
	// 426 came back untouched; wantSkipped the reasons of the first offers
	// left out.
	wantReason  func(error) bool
	wantSkipped []error
	// maxElapsed, when set, is a tighter bound than the context's:
	// promptly, for a call that must end at once.
	maxElapsed time.Duration

	// What the server sees: requests on the wire other than the in-band
	// OPTIONS, and how many of them it served, each with the whole body.
	wantRequests, wantServed int

	check func(t *testing.T, tr *Transport, resp *http.Response, err error) // more checks; nil for none
}

// hostileResult is what runHostile saw.
type hostileResult struct {
	resp    *http.Response
	err     error
	elapsed time.Duration
}

// runHostile runs one row: fresh server and transport, bounded request,
// and every check the matrix makes.
func runHostile(t *testing.T, tc hostileCase) hostileResult {
	if !tc.beside {
		checkNoLeak(t)
	}
	var handled atomic.Int32
	served := make(chan struct{}, 1)
	cfg := tc.server
	counted := countHandler(&handled, cfg.Handler)
	cfg.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case served <- struct{}{}:
		default:
		}
		counted.ServeHTTP(w, r)
	})
	s := startServer(t, cfg)
	baseFor := tc.base
	if baseFor == nil {
		baseFor = func(t testing.TB, s *testserver.Server) *http.Transport { return legacyBase(t, s.CertPool()) }
	}
	base := baseFor(t, s)
	if tc.expect100 {
		base.ExpectContinueTimeout = 5 * time.Second
	}
	tr := newTransport(t, base)
	if tc.setup != nil {
		tc.setup(tr)
	}

	data := randomBytes(64 << 10)
	bound := tc.bound
	if bound == 0 {
		bound = patience
	}
	ctx, cancelBound := context.WithTimeout(t.Context(), bound)
	defer cancelBound()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var rec recorder
	trace := rec.trace()
	if tc.cancelOn != "" {
		later := func() { time.AfterFunc(tc.cancelAfter, cancel) }
		switch tc.cancelOn {
		case "426":
			got426 := trace.Got426
			trace.Got426 = func(i Got426Info) { got426(i); later() }
		case "replay":
			started := trace.ReplayStart
			trace.ReplayStart = func(p Protocol) { started(p); later() }
		case "served":
			done := ctx.Done()
			go func() {
				select {
				case <-served:
					later()
				case <-done:
				}
			}()
		default:
			t.Fatalf("cancelOn %q", tc.cancelOn)
		}
	}
	ctx = WithTrace(ctx, trace)

	sent := newSentBody(data)
	req := sent.request(t, ctx, "POST", s.URL+"/hostile", !tc.oneShot)
	if tc.expect100 {
		req.Header.Set("Expect", "100-continue")
	}

	start := time.Now()
	resp, err := tr.RoundTrip(req)
	res := hostileResult{resp: resp, err: err, elapsed: time.Since(start)}
	expired := ctx.Err() != nil && errors.Is(context.Cause(ctx), context.DeadlineExceeded)

	// Within bounds.
	if res.elapsed > bound+promptly {
		t.Errorf("RoundTrip took %v, bound %v", res.elapsed, bound)
	}
	if expired && !tc.wantDeadline {
		t.Errorf("the request's %v deadline ran out (after %v): the row must end sooner", bound, res.elapsed)
	}
	if tc.maxElapsed > 0 && res.elapsed > tc.maxElapsed {
		t.Errorf("RoundTrip took %v, want at most %v", res.elapsed, tc.maxElapsed)
	}

	// The outcome.
	switch {
	case resp != nil && err != nil:
		t.Errorf("both a response (%d) and an error (%v)", resp.StatusCode, err)
	case tc.wantErr != nil:
		if err == nil {
			t.Errorf("got %d over %s, want an error", resp.StatusCode, resp.Proto)
		} else if !tc.wantErr(err) {
			t.Errorf("error %v (%T) is not the one wanted", err, err)
		}
	case err != nil:
		t.Errorf("error %v, want %d", err, tc.wantStatus)
	default:
		if resp.StatusCode != tc.wantStatus || (tc.wantProto != "" && resp.Proto != tc.wantProto) {
			t.Errorf("got %d over %s, want %d over %s", resp.StatusCode, resp.Proto, tc.wantStatus, tc.wantProto)
		}
	}
	if tc.wantReason != nil {
		if reason := rec.reason(t); !tc.wantReason(reason) {
			t.Errorf("trace reason %v (%T), not the one wanted", reason, reason)
		}
	}
	if tc.wantSkipped != nil {
		rec.mu.Lock()
		var skipped []Skipped
		if len(rec.decided) > 0 {
			skipped = rec.decided[0].Skipped
		}
		rec.mu.Unlock()
		if len(skipped) < len(tc.wantSkipped) {
			t.Errorf("skipped %v, want %v", skipped, tc.wantSkipped)
		}
		for i, want := range tc.wantSkipped {
			if i < len(skipped) && !errors.Is(skipped[i].Reason, want) {
				t.Errorf("offer %s skipped for %v, want %v", skipped[i].Protocol, skipped[i].Reason, want)
			}
		}
	}
	if tc.check != nil {
		tc.check(t, tr, resp, err)
	}
	if resp != nil {
		// A hostile body may never end: read what comes within a moment.
		stop := time.AfterFunc(300*time.Millisecond, func() { resp.Body.Close() })
		io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		stop.Stop()
		resp.Body.Close()
	}
	var ue *UpgradeError
	if errors.As(err, &ue) {
		ue.Response.Body.Close()
	}

	// Nothing lost, nothing duplicated. Close waits for the server's
	// handlers, so what it recorded is final.
	s.Close()
	checkClosed(t, sent)
	requests, _ := wire(s)
	if len(requests) != tc.wantRequests {
		t.Errorf("%d requests on the wire, want %d", len(requests), tc.wantRequests)
	}
	checkServed(t, s, data, tc.wantServed, cfg.InbandTLS != 0)
	if n := int(handled.Load()); n != tc.wantServed {
		t.Errorf("server handled %d requests with their whole body, want %d", n, tc.wantServed)
	}
	return res
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rand.Uint32())
	}
	return b
}

// Row 1: a server that answers 426 to everything, over every protocol,
// sees the request exactly twice: once as sent, once replayed.
func TestHostileLoop(t *testing.T) {
	tests := []hostileCase{
		{name: "h1 to h2", server: testserver.Config{TLS: true, Require: testserver.RefuseAll, Upgrade: []string{"HTTP/2"}}, wantProto: "HTTP/2.0"},
		{name: "h1 to h2c", server: testserver.Config{Require: testserver.RefuseAll, Upgrade: []string{"h2c"}}, wantProto: "HTTP/2.0"},
		{name: "TLS 1.2 to 1.3", server: testserver.Config{TLS: true, Require: testserver.RefuseAll, Upgrade: []string{"TLS/1.3"}}, wantProto: "HTTP/1.1"},
		{name: "h1 to h3", server: testserver.Config{TLS: true, HTTP3: true, Require: testserver.RefuseAll, Upgrade: []string{"HTTP/3"}}, wantProto: "HTTP/3.0"},
		{name: "h2 to h3", server: testserver.Config{TLS: true, HTTP3: true, Require: testserver.RefuseAll, Upgrade: []string{"h3"}}, base: h1h2Base, wantProto: "HTTP/3.0"},
		{name: "in-band TLS", server: testserver.Config{InbandTLS: testserver.InbandRFC2817, Require: testserver.RefuseAll, Upgrade: cups}, wantProto: "HTTP/1.1"},
		{name: "every offer at once", server: testserver.Config{TLS: true, HTTP3: true, Require: testserver.RefuseAll, Upgrade: []string{"HTTP/3, HTTP/2, TLS/1.3"}}, wantProto: "HTTP/3.0"},
	}
	for _, tc := range tests {
		tc.wantStatus, tc.wantRequests = 426, 2
		t.Run(tc.name, func(t *testing.T) { runHostile(t, tc) })
	}
}

// Row 2: 426 headers that offer nothing, or far too much.
func TestHostile426Header(t *testing.T) {
	refuseAll := func(upgrade ...string) testserver.Config {
		return testserver.Config{TLS: true, Require: testserver.RefuseAll, Upgrade: upgrade}
	}
	manyLines := make([]string, 10_000)
	for i := range manyLines {
		manyLines[i] = "HTTP/2"
	}
	tests := []hostileCase{
		{name: "no Upgrade", server: refuseAll(), wantStatus: 426, wantRequests: 1, wantReason: errorIs(ErrNoUsableOffer)},
		{name: "empty Upgrade", server: refuseAll(""), wantStatus: 426, wantRequests: 1, wantReason: errorIs(ErrNoUsableOffer)},
		{name: "only commas", server: refuseAll(" , ,,"), wantStatus: 426, wantRequests: 1, wantReason: errorIs(ErrNoUsableOffer)},
		{name: "10 000 protocols on one line", server: refuseAll(strings.Repeat("HTTP/2, ", 10_000)), wantStatus: 426, wantRequests: 1, wantReason: isParseError},
		{name: "10 000 Upgrade lines", server: refuseAll(manyLines...), wantStatus: 426, wantRequests: 1, wantReason: isParseError},
		{name: "33 short protocols", server: refuseAll(strings.Repeat("x, ", 32) + "HTTP/2"), wantStatus: 426, wantRequests: 1, wantReason: isParseError},
		{name: "1 MiB Upgrade value", server: testserver.Config{TLS: true, Require: testserver.RefuseAll,
			Refuse: testserver.HugeHeader("HTTP/2, "+strings.Repeat("x", 1<<20), 0)}, wantStatus: 426, wantRequests: 1, wantReason: isParseError},
		{name: "1 MiB of other header, then a usable offer", server: testserver.Config{TLS: true, Require: testserver.RequireHTTP2,
			Refuse: testserver.HugeHeader("HTTP/2", 1<<20)}, wantStatus: 200, wantProto: "HTTP/2.0", wantRequests: 2, wantServed: 1},
		{name: "1 MiB of header past Base's limit", server: testserver.Config{TLS: true, Require: testserver.RequireHTTP2,
			Refuse: testserver.HugeHeader("HTTP/2", 1<<20)}, base: func(t testing.TB, s *testserver.Server) *http.Transport {
			base := legacyBase(t, s.CertPool())
			base.MaxResponseHeaderBytes = 256 << 10
			return base
		}, wantErr: baseError, wantRequests: 1},
		{name: "11 MiB of header past net/http's default limit", server: testserver.Config{TLS: true, Require: testserver.RequireHTTP2,
			Refuse: testserver.HugeHeader("HTTP/2", 11<<20)}, wantErr: baseError, wantRequests: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { runHostile(t, tc) })
	}
}

// drawCounter wraps a transport and counts the bytes drawn from the
// bodies of its responses.
func drawCounter(base http.RoundTripper, drawn *atomic.Int64) http.RoundTripper {
	return rtFunc(func(r *http.Request) (*http.Response, error) {
		resp, err := base.RoundTrip(r)
		if err == nil {
			resp.Body = countingRespBody{resp.Body, drawn}
		}
		return resp, err
	})
}

// heapGrowth runs f and returns how far HeapInuse rose above where it
// started while f ran, sampled every few milliseconds.
func heapGrowth(f func()) uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	start, peak := m.HeapInuse, m.HeapInuse
	done := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		var m runtime.MemStats
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				runtime.ReadMemStats(&m)
				peak = max(peak, m.HeapInuse)
			}
		}
	}()
	f()
	close(done)
	<-sampled
	runtime.ReadMemStats(&m)
	peak = max(peak, m.HeapInuse)
	return peak - start
}

// Row 3: a 426 body that never ends or trickles holds the replay up no
// longer than the drain bound, and only its first 64 KiB are ever read.
func TestHostile426Body(t *testing.T) {
	// Drawn bytes are counted in a wrapper; upgraded transports are
	// cloned from the legacy transport under it.
	counted := func(drawn *atomic.Int64) func(*Transport) {
		return func(tr *Transport) {
			tr.Template = tr.Base.(*http.Transport)
			tr.Base = drawCounter(tr.Template, drawn)
		}
	}
	tests := []struct {
		hostileCase
		maxDrawn int64
	}{
		{hostileCase{name: "endless body, HTTP/2 offered", server: testserver.Config{TLS: true, Require: testserver.RequireHTTP2, Refuse: testserver.EndlessBody("HTTP/2")},
			wantStatus: 200, wantProto: "HTTP/2.0", wantRequests: 2, wantServed: 1, maxElapsed: promptly}, drainLimit + 16<<10},
		{hostileCase{name: "one byte a second, HTTP/2 offered", server: testserver.Config{TLS: true, Require: testserver.RequireHTTP2, Refuse: testserver.TrickleBody("HTTP/2", time.Second)},
			wantStatus: 200, wantProto: "HTTP/2.0", wantRequests: 2, wantServed: 1, maxElapsed: promptly}, 1},
		{hostileCase{name: "endless body, every offer fails", server: testserver.Config{TLS: true, HTTP1Only: true, Require: testserver.RequireHTTP2, Refuse: testserver.EndlessBody("HTTP/2")},
			wantErr: anyUpgradeError, wantRequests: 1, maxElapsed: promptly,
			check: func(t *testing.T, _ *Transport, _ *http.Response, err error) {
				var ue *UpgradeError
				if errors.As(err, &ue) {
					if kept, _ := io.ReadAll(ue.Response.Body); len(kept) != drainLimit {
						t.Errorf("*UpgradeError keeps %d bytes of the 426 body, want the %d drained", len(kept), drainLimit)
					}
				}
			}}, drainLimit + 16<<10},
		{hostileCase{name: "endless body, nothing usable", server: testserver.Config{TLS: true, Require: testserver.RefuseAll, Refuse: testserver.EndlessBody("websocket")},
			wantStatus: 426, wantRequests: 1, maxElapsed: promptly}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var drawn atomic.Int64
			tc.setup = counted(&drawn)
			growth := heapGrowth(func() { runHostile(t, tc.hostileCase) })
			if tc.wantStatus != 426 {
				if n := drawn.Load(); n > tc.maxDrawn {
					t.Errorf("drew %d bytes of the 426 body, want at most %d", n, tc.maxDrawn)
				}
			}
			if growth > 16<<20 {
				t.Errorf("heap grew by %d MiB", growth>>20)
			}
		})
	}
}

// Row 4: connections that break in the middle of the 426. Before its
// header is whole, that is Base's error; after, the replay goes on.
func TestHostileBrokenConnection(t *testing.T) {
	const status = "HTTP/1.1 426 Upgrade Required\r\n"
	// Connection: close, or net/http would send the body after the 426
	// (it keeps a connection that stays open by sending what it held back
	// for 100-continue), racing the broken connection.
	const header = status + "Upgrade: HTTP/2, h2c\r\nConnection: Upgrade, close\r\n"
	shapes := []struct {
		name     string
		raw      string
		end      testserver.Ending
		replayed bool
	}{
		{"closed after the status line", status, testserver.CloseConn, false},
		{"reset after the status line", status, testserver.ResetConn, false},
		{"closed in the middle of the header", header + "Content-Le", testserver.CloseConn, false},
		{"reset in the middle of the header", header + "Content-Le", testserver.ResetConn, false},
		{"closed in the middle of the body", header + "Content-Length: 100\r\n\r\nshort", testserver.CloseConn, true},
		{"reset in the middle of the body", header + "Content-Length: 100\r\n\r\nshort", testserver.ResetConn, true},
		{"body held open", header + "Content-Length: 100\r\n\r\nshort", testserver.HoldConn, true},
		{"chunked body cut short", header + "Transfer-Encoding: chunked\r\n\r\n5\r\nsho", testserver.CloseConn, true},
		{"malformed chunk", header + "Transfer-Encoding: chunked\r\n\r\nzz\r\n", testserver.HoldConn, true},
	}
	for _, secure := range []bool{true, false} {
		for _, shape := range shapes {
			name := shape.name + " (http)"
			if secure {
				name = shape.name + " (https)"
			}
			tc := hostileCase{
				name:   name,
				server: testserver.Config{TLS: secure, Require: testserver.RequireHTTP2, Refuse: testserver.RawResponse(shape.raw, shape.end)},
				// The body waits for a 100 Continue that never comes, so
				// whether it raced the broken 426 out is not left to chance.
				expect100: true,
				// The replay waits at most the drain bound for a body held open.
				maxElapsed: promptly,
			}
			if shape.replayed {
				tc.wantStatus, tc.wantProto, tc.wantRequests, tc.wantServed = 200, "HTTP/2.0", 2, 1
			} else {
				tc.wantErr, tc.wantRequests = baseError, 1
			}
			t.Run(tc.name, func(t *testing.T) { runHostile(t, tc) })
		}
	}
}

// Row 5: the upgraded protocol takes the request and never answers: the
// request's own deadline ends it, over every target. The deadline leaves a
// slow machine ample time to get the request to the server first, so the
// rows wait it out side by side, and goroutines are checked once all end.
func TestHostileSilentUpgrade(t *testing.T) {
	checkNoLeak(t)
	hang := testserver.Hang
	tests := []hostileCase{
		{name: "HTTP/2", server: testserver.Config{TLS: true, Require: testserver.RequireHTTP2, Upgrade: []string{"HTTP/2"}, Handler: hang}, wantServed: 1},
		{name: "h2c", server: testserver.Config{Require: testserver.RequireHTTP2, Upgrade: []string{"h2c"}, Handler: hang}, wantServed: 1},
		{name: "TLS/1.3", server: testserver.Config{TLS: true, Require: testserver.RequireTLS13, Upgrade: []string{"TLS/1.3"}, Handler: hang}, wantServed: 1},
		{name: "HTTP/3", server: testserver.Config{TLS: true, HTTP3: true, Require: testserver.RequireHTTP3, Upgrade: []string{"HTTP/3"}, Handler: hang}, wantServed: 1},
		{name: "in-band TLS, request never answered", server: testserver.Config{InbandTLS: testserver.InbandRFC2817, Require: testserver.RequireTLS, Upgrade: cups, Handler: hang}, wantServed: 1},
		{name: "in-band TLS, OPTIONS never answered", server: testserver.Config{InbandTLS: testserver.InbandSilent, Require: testserver.RequireTLS, Upgrade: cups}, wantRequests: 1},
		{name: "one-shot body with 100-continue, HTTP/2", server: testserver.Config{TLS: true, Require: testserver.RequireHTTP2, Upgrade: []string{"HTTP/2"}, Handler: hang},
			oneShot: true, expect100: true, wantServed: 1},
	}
	var rows sync.WaitGroup
	for _, tc := range tests {
		tc.bound, tc.wantDeadline, tc.wantErr = 3*time.Second, true, errorIs(context.DeadlineExceeded)
		tc.wantRequests = max(tc.wantRequests, 2*tc.wantServed)
		tc.beside = true
		rows.Go(func() { t.Run(tc.name, func(t *testing.T) { runHostile(t, tc) }) })
	}
	rows.Wait()
}

// verified checks that a response came over a certificate chain that was
// verified: no fallback ever goes unverified.
func verified(t *testing.T, _ *Transport, resp *http.Response, _ error) {
	if resp != nil && (resp.TLS == nil || len(resp.TLS.VerifiedChains) == 0) {
		t.Errorf("response over %s without a verified chain", resp.Proto)
	}
}

// Row 6: HTTP/3 that cannot be had: UDP dropped, or a certificate that
// fails over QUIC. The next offer, or *UpgradeError; never unverified.
// Dropped UDP costs the setup bound, kept short; a certificate fails as
// soon as the handshake gets that far, however slowly.
func TestHostileHTTP3(t *testing.T) {
	otherCA, err := testserver.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	short := func(tr *Transport) { tr.HTTP3HandshakeTimeout = 300 * time.Millisecond }
	tests := []hostileCase{
		{name: "UDP dropped, HTTP/2 next", server: testserver.Config{TLS: true, DropUDP: true, Require: testserver.RequireHTTP2, Upgrade: []string{"HTTP/3, HTTP/2"}},
			setup: short, wantStatus: 200, wantProto: "HTTP/2.0", wantRequests: 2, wantServed: 1, check: verified},
		{name: "UDP dropped, nothing else", server: testserver.Config{TLS: true, DropUDP: true, Require: testserver.RequireHTTP2, Upgrade: []string{"HTTP/3"}},
			setup: short, wantErr: upgradeErrorWith(isTimeout), wantRequests: 1},
		{name: "certificate fails over QUIC, HTTP/2 next", server: testserver.Config{TLS: true, HTTP3: true, HTTP3CA: otherCA, Require: testserver.RequireHTTP2, Upgrade: []string{"HTTP/3, HTTP/2"}},
			wantStatus: 200, wantProto: "HTTP/2.0", wantRequests: 2, wantServed: 1, check: verified},
		{name: "certificate fails over QUIC, TLS/1.3 next", server: testserver.Config{TLS: true, HTTP3: true, HTTP3CA: otherCA, Require: testserver.RequireTLS13, Upgrade: []string{"HTTP/3, TLS/1.3"}},
			wantStatus: 200, wantProto: "HTTP/1.1", wantRequests: 2, wantServed: 1, check: verified},
		{name: "certificate fails over QUIC, nothing else", server: testserver.Config{TLS: true, HTTP3: true, HTTP3CA: otherCA, Require: testserver.RequireHTTP3, Upgrade: []string{"HTTP/3"}},
			wantErr: upgradeErrorWith(isCertError), wantRequests: 1},
		{name: "certificate fails everywhere", server: testserver.Config{TLS: true, HTTP3: true, Require: testserver.RequireHTTP3, Upgrade: []string{"HTTP/3, HTTP/2"}},
			base: func(t testing.TB, s *testserver.Server) *http.Transport { return legacyBase(t, s.CertPool()) },
			setup: func(tr *Transport) {
				tr.TLSClientConfig = &tls.Config{RootCAs: otherCA.CertPool()} // the upgraded ones trust another CA
			},
			wantErr: upgradeErrorWith(isCertError), wantRequests: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := runHostile(t, tc)
			var ue *UpgradeError
			if errors.As(res.err, &ue) {
				for _, a := range ue.Attempts {
					if !beforeConnection(a.Err) {
						t.Errorf("attempt %s failed after a connection: %v", a.Protocol, a.Err)
					}
				}
			}
		})
	}
}

// Row 7: TLS/1.3 demanded by a server that speaks TLS 1.2 at most: the
// handshake fails and the request ends, once.
func TestHostileTLSVersion(t *testing.T) {
	tls12 := func(upgrade string) testserver.Config {
		return testserver.Config{TLS: true, MaxTLSVersion: tls.VersionTLS12, Require: testserver.RequireTLS13, Upgrade: []string{upgrade}}
	}
	tests := []hostileCase{
		{name: "HTTP/1.1 client", server: tls12("TLS/1.3"), wantErr: anyUpgradeError, wantRequests: 1},
		{name: "HTTP/2 client", server: tls12("TLS/1.3"), base: h1h2Base, wantErr: anyUpgradeError, wantRequests: 1},
		{name: "then HTTP/2, refused again", server: tls12("TLS/1.3, HTTP/2"), wantStatus: 426, wantProto: "HTTP/2.0", wantRequests: 2},
		{name: "in-band", server: testserver.Config{InbandTLS: testserver.InbandRFC2817, MaxTLSVersion: tls.VersionTLS12, Require: testserver.RequireTLS, Upgrade: []string{"TLS/1.3"}},
			wantErr: anyUpgradeError, wantRequests: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { runHostile(t, tc) })
	}
}

// Row 8: RFC 2817 servers that do not switch as they should. The attempt
// fails within bounds and nothing is ever sent in clear.
func TestHostileInband(t *testing.T) {
	inband := func(mode testserver.InbandMode) testserver.Config {
		return testserver.Config{InbandTLS: mode, Require: testserver.RequireTLS, Upgrade: cups}
	}
	tests := []hostileCase{
		{name: "200 instead of 101", server: inband(testserver.InbandAnswer200), wantErr: upgradeErrorWith(errorIs(errInbandRefused))},
		{name: "closed instead of 101", server: inband(testserver.InbandClose), wantErr: upgradeErrorWith(errorIs(errInbandRefused))},
		{name: "101 then cleartext bytes", server: inband(testserver.InbandBytesAfter101), wantErr: anyUpgradeError},
		{name: "101 with a body", server: inband(testserver.Inband101WithBody), wantErr: upgradeErrorWith(errorIs(ErrInbandDesync))},
		{name: "101 then not TLS", server: inband(testserver.InbandNotTLS), wantErr: anyUpgradeError},
		{name: "101 then closed", server: inband(testserver.InbandCloseAfter101), wantErr: anyUpgradeError},
		{name: "101, TLS, then a second response", server: inband(testserver.InbandExtraResponse), wantErr: upgradeErrorWith(errorIs(ErrInbandDesync))},
		// The 101 is refused as data; the server's close may also reach the
		// request's writer first. Either way an error, never the 101's body.
		{name: "101, TLS, then 101 to the request", server: inband(testserver.InbandUnasked101), wantErr: func(err error) bool {
			var opErr *net.OpError
			return errors.Is(err, ErrInbandDesync) || errors.As(err, &opErr)
		}, wantRequests: 2, expect100: true},
		{name: "101, TLS, OPTIONS never answered: handshake bound", server: inband(testserver.InbandSilent),
			base: func(t testing.TB, s *testserver.Server) *http.Transport {
				base := legacyBase(t, s.CertPool())
				base.TLSHandshakeTimeout = 300 * time.Millisecond
				return base
			}, wantErr: upgradeErrorWith(errorIs(context.DeadlineExceeded))},
		{name: "101, TLS, OPTIONS never answered: request deadline", server: inband(testserver.InbandSilent),
			bound: 500 * time.Millisecond, wantDeadline: true, wantErr: errorIs(context.DeadlineExceeded)},
		{name: "certificate from another CA", server: testserver.Config{InbandTLS: testserver.InbandRFC2817, Require: testserver.RequireTLS, Upgrade: cups},
			base: func(t testing.TB, _ *testserver.Server) *http.Transport { return legacyBase(t, nil) }, wantErr: upgradeErrorWith(isCertError)},
	}
	for _, tc := range tests {
		if tc.wantRequests == 0 {
			tc.wantRequests = 1
		}
		t.Run(tc.name, func(t *testing.T) {
			runHostile(t, tc)
		})
	}
}

// Row 9: offers that would drop TLS, or change nothing, on an https origin.
func TestHostileDowngrade(t *testing.T) {
	refuse := func(upgrade string) testserver.Config {
		return testserver.Config{TLS: true, Require: testserver.RefuseAll, Upgrade: []string{upgrade}}
	}
	tests := []hostileCase{
		{name: "h2c", server: refuse("h2c"), wantSkipped: []error{ErrDowngrade}},
		{name: "HTTP/1.1", server: refuse("HTTP/1.1"), wantSkipped: []error{ErrUnsupportedOffer}},
		{name: "h2c and HTTP/1.1", server: refuse("h2c, HTTP/1.1"), wantSkipped: []error{ErrDowngrade, ErrUnsupportedOffer}},
		{name: "TLS/1.2 over TLS 1.2", server: refuse("TLS/1.2"), wantSkipped: []error{ErrNoChange}},
		{name: "HTTP/2 over HTTP/2", server: refuse("HTTP/2"), base: h1h2Base, wantSkipped: []error{ErrNoChange}},
	}
	for _, tc := range tests {
		tc.wantStatus, tc.wantRequests, tc.wantReason = 426, 1, errorIs(ErrNoUsableOffer)
		t.Run(tc.name, func(t *testing.T) { runHostile(t, tc) })
	}
}

// streamBody generates n bytes of a repeating pattern as it is read, never
// holding more than one read's worth, and hashes what it hands out.
type streamBody struct {
	left   int64
	sent   int64
	hash   hashWriter
	closes atomic.Int32
}

type hashWriter interface {
	io.Writer
	Sum([]byte) []byte
}

func newStreamBody(n int64) *streamBody { return &streamBody{left: n, hash: sha256.New()} }

func (b *streamBody) Read(p []byte) (int, error) {
	if b.left == 0 {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), b.left)]
	for i := range p {
		at := b.sent + int64(i)
		p[i] = byte(at) ^ byte(at>>8) ^ byte(at>>16)
	}
	b.hash.Write(p)
	b.sent += int64(len(p))
	b.left -= int64(len(p))
	return len(p), nil
}

func (b *streamBody) Close() error { b.closes.Add(1); return nil }

func (b *streamBody) waitClosed(t testing.TB) {
	t.Helper()
	waitClosedOnce(t, &b.closes, "streamed body")
}

// Row 10: a 100 MiB body streamed without GetBody meets a 426. Once bytes
// of it left, the 426 comes back; if none had (the 426 came first), or
// 100-continue held it back, it is replayed in full. Memory stays far
// below the body's size either way.
func TestHostileStreamingBody(t *testing.T) {
	const size = 100 << 20
	tests := []struct {
		name      string
		expect100 bool
	}{
		{"sent at once", false},
		{"held back by 100-continue", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkNoLeak(t)
			s := startServer(t, testserver.Config{TLS: true, Require: testserver.RequireHTTP2, Upgrade: []string{"HTTP/2"}})
			base := legacyBase(t, s.CertPool())
			base.ExpectContinueTimeout = 5 * time.Second
			tr := newTransport(t, base)
			ctx, cancel := context.WithTimeout(t.Context(), patience)
			defer cancel()
			body := newStreamBody(size)
			req := newRequest(t, ctx, "PUT", s.URL, body)
			req.ContentLength = size
			if tt.expect100 {
				req.Header.Set("Expect", "100-continue")
			}
			var resp *http.Response
			var err error
			start := time.Now()
			growth := heapGrowth(func() {
				resp, err = tr.RoundTrip(req)
				if err == nil {
					readAll(t, resp)
				}
			})
			elapsed := time.Since(start)
			if err != nil {
				t.Fatalf("after %v: %v", elapsed, err)
			}
			body.waitClosed(t)
			t.Logf("%d after %v; %d MiB generated; heap grew by %d KiB", resp.StatusCode, elapsed, body.sent>>20, growth>>10)
			if growth > 32<<20 {
				t.Errorf("heap grew by %d MiB for a %d MiB body", growth>>20, size>>20)
			}
			requests, served := wire(s)
			switch {
			case resp.StatusCode == 426 && !tt.expect100:
				if len(requests) != 1 || len(served) != 0 {
					t.Errorf("server saw %d requests and served %d, want 1 and 0", len(requests), len(served))
				}
			case resp.StatusCode == 200:
				var sum [32]byte
				body.hash.Sum(sum[:0])
				if len(requests) != 2 || len(served) != 1 || served[0].BodyLen != size || served[0].BodySHA256 != sum {
					t.Errorf("server saw %d requests and served %+v, want the %d bytes once", len(requests), served, size)
				}
			default:
				t.Errorf("status %d", resp.StatusCode)
			}
		})
	}
}

// getBodyOutcome is what a row of TestHostileGetBody allows.
type getBodyOutcome uint8

const (
	// the426: the 426 comes back untouched, nothing replayed.
	the426 getBodyOutcome = iota
	// refused: the replay fails (net/http's error, or the server's 4xx):
	// the server never takes the body as whole.
	refused
	// declared: the client sends the declared length and then fails; the
	// server may take those bytes, which must be the caller's.
	declared
)

// Row 11: GetBody fails, or makes a body whose length is not the declared
// one: the 426 comes back, or the replay fails; the server never takes a
// body that is not the caller's as whole.
func TestHostileGetBody(t *testing.T) {
	h2 := testserver.Config{TLS: true, Require: testserver.RequireHTTP2, Upgrade: []string{"HTTP/2"}}
	h3 := testserver.Config{TLS: true, HTTP3: true, Require: testserver.RequireHTTP3, Upgrade: []string{"HTTP/3"}}
	tls13 := testserver.Config{TLS: true, Require: testserver.RequireTLS13, Upgrade: []string{"TLS/1.3"}}
	inband := testserver.Config{InbandTLS: testserver.InbandRFC2817, Require: testserver.RequireTLS, Upgrade: cups}
	data := []byte("twenty bytes of body")
	fails := func() (io.ReadCloser, error) { return nil, errors.New("source gone") }
	none := func() (io.ReadCloser, error) { return nil, nil }
	noBody := func() (io.ReadCloser, error) { return http.NoBody, nil }
	shorter, longer := []byte("twenty"), append([]byte(nil), append(data, " and then some more"...)...)
	tests := []struct {
		name    string
		server  testserver.Config
		getBody func() (io.ReadCloser, error) // nil: a body of made
		made    []byte
		want    getBodyOutcome
	}{
		{"GetBody fails", h2, fails, nil, the426},
		{"GetBody returns no body, HTTP/2", h2, none, nil, the426},
		{"GetBody returns no body, HTTP/3", h3, none, nil, the426},
		{"GetBody returns no body, TLS/1.3", tls13, none, nil, the426},
		{"GetBody returns http.NoBody, HTTP/2", h2, noBody, nil, the426},
		{"GetBody returns http.NoBody, TLS/1.3", tls13, noBody, nil, the426},
		{"shorter, HTTP/2", h2, nil, shorter, refused},
		{"shorter, HTTP/3", h3, nil, shorter, refused},
		{"shorter, TLS/1.3", tls13, nil, shorter, refused},
		{"shorter, in-band", inband, nil, shorter, refused},
		{"longer, HTTP/2", h2, nil, longer, refused},
		{"longer, HTTP/3", h3, nil, longer, declared},
		{"longer, TLS/1.3", tls13, nil, longer, declared},
		{"longer, in-band", inband, nil, longer, declared},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkNoLeak(t)
			var handled atomic.Int32
			cfg := tt.server
			cfg.Handler = countHandler(&handled, nil)
			s := startServer(t, cfg)
			tr := newTransport(t, legacyBase(t, s.CertPool()))
			ctx, cancel := context.WithTimeout(t.Context(), patience)
			defer cancel()
			var rec recorder
			sent := newSentBody(data)
			req := sent.request(t, WithTrace(ctx, rec.trace()), "POST", s.URL, false)
			var mu sync.Mutex
			var made []*countingBody
			req.GetBody = func() (io.ReadCloser, error) {
				if tt.getBody != nil {
					return tt.getBody()
				}
				b := &countingBody{r: bytes.NewReader(tt.made)}
				mu.Lock()
				made = append(made, b)
				mu.Unlock()
				return b, nil
			}

			start := time.Now()
			resp, err := tr.RoundTrip(req)
			if elapsed := time.Since(start); elapsed > promptly || ctx.Err() != nil {
				t.Errorf("took %v", elapsed)
			}
			status := 0
			if resp != nil {
				status = resp.StatusCode
				readAll(t, resp)
			}
			t.Logf("outcome: %d, %v", status, err)
			s.Close() // waits for the handlers: what the server recorded is final
			requests, served := wire(s)
			switch tt.want {
			case the426:
				if err != nil || status != 426 || len(requests) != 1 {
					t.Errorf("got %d, %v after %d requests; want the 426 untouched after 1", status, err, len(requests))
				}
				if reason := rec.reason(t); reason == nil {
					t.Errorf("no reason traced for handing back the 426")
				}
			case refused:
				if err == nil && status < 400 {
					t.Errorf("got %d, want an error", status)
				}
			case declared:
				// An error, the server's answer to the declared bytes, or its
				// 4xx if it saw the stream cut short: all fine, if quick.
			}
			if tt.want != declared && handled.Load() != 0 {
				t.Errorf("server took %d bodies of the wrong length as whole", handled.Load())
			}
			sum := sha256.Sum256(data)
			for _, r := range served {
				if handled.Load() > 0 && (r.BodyLen != int64(len(data)) || r.BodySHA256 != sum) {
					t.Errorf("server took %d bytes that are not the caller's %d", r.BodyLen, len(data))
				}
			}
			if len(requests) > 2 {
				t.Errorf("%d requests on the wire", len(requests))
			}
			checkClosed(t, sent)
			mu.Lock()
			for _, b := range made {
				b.waitCloses(t)
			}
			mu.Unlock()
		})
	}
}

// Row 12: the caller cancels while the 426 drains, while a failing offer
// holds up the fallback, and while the replay waits for its answer. The
// call ends at once with the caller's error, and nothing is marked broken.
func TestHostileCancel(t *testing.T) {
	hang := testserver.Hang
	canceled := errorIs(context.Canceled)
	tests := []hostileCase{
		{name: "during the drain", server: testserver.Config{TLS: true, Require: testserver.RequireHTTP2, Refuse: testserver.TrickleBody("HTTP/2", 10*time.Millisecond)},
			cancelOn: "426", cancelAfter: 50 * time.Millisecond, wantErr: canceled, wantRequests: 1},
		{name: "during the HTTP/3 fallback", server: testserver.Config{TLS: true, DropUDP: true, Require: testserver.RequireHTTP2, Upgrade: []string{"HTTP/3, HTTP/2"}},
			cancelOn: "replay", cancelAfter: 200 * time.Millisecond, wantErr: canceled, wantRequests: 1,
			check: func(t *testing.T, tr *Transport, _ *http.Response, _ error) {
				if tr.broken.any() {
					t.Error("offers marked broken by the caller's own cancel")
				}
			}},
		{name: "during the HTTP/2 replay", server: testserver.Config{TLS: true, Require: testserver.RequireHTTP2, Upgrade: []string{"HTTP/2"}, Handler: hang},
			cancelOn: "served", wantErr: canceled, wantRequests: 2, wantServed: 1},
		{name: "during the HTTP/3 replay", server: testserver.Config{TLS: true, HTTP3: true, Require: testserver.RequireHTTP3, Upgrade: []string{"HTTP/3"}, Handler: hang},
			cancelOn: "served", wantErr: canceled, wantRequests: 2, wantServed: 1},
		{name: "during the in-band switch", server: testserver.Config{InbandTLS: testserver.InbandSilent, Require: testserver.RequireTLS, Upgrade: cups},
			cancelOn: "replay", cancelAfter: 200 * time.Millisecond, wantErr: canceled, wantRequests: 1},
		{name: "during the in-band replay", server: testserver.Config{InbandTLS: testserver.InbandRFC2817, Require: testserver.RequireTLS, Upgrade: cups, Handler: hang},
			cancelOn: "served", wantErr: canceled, wantRequests: 2, wantServed: 1},
	}
	for _, tc := range tests {
		tc.maxElapsed = promptly
		t.Run(tc.name, func(t *testing.T) { runHostile(t, tc) })
	}
}

// herdKind is one kind of origin in the herd: how it is set up and what
// every request to it must end with.
type herdKind struct {
	name   string
	server testserver.Config
	// check says whether one request's outcome is right.
	check func(resp *http.Response, err error) error
}

func wantResponse(status int, proto string) func(*http.Response, error) error {
	return func(resp *http.Response, err error) error {
		if err != nil {
			return err
		}
		if resp.StatusCode != status || resp.Proto != proto {
			return fmt.Errorf("got %d over %s, want %d over %s", resp.StatusCode, resp.Proto, status, proto)
		}
		return nil
	}
}

// Row 13: 1000 concurrent requests over 50 origins with mixed demands and
// mixed failures, through one transport: every request ends as its origin
// dictates, and every body the servers took in full is the caller's. The
// herd starves its own handshakes of CPU for seconds, so no failure here
// hangs on a setup bound: those are rows 6 and 8.
func TestHostileHerd(t *testing.T) {
	checkNoLeak(t)
	ca, err := testserver.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	otherCA, err := testserver.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	kinds := []herdKind{
		{"pass-through", testserver.Config{TLS: true}, wantResponse(200, "HTTP/1.1")},
		{"HTTP/2", testserver.Config{TLS: true, Require: testserver.RequireHTTP2, Upgrade: []string{"HTTP/2"}}, wantResponse(200, "HTTP/2.0")},
		{"h2c", testserver.Config{Require: testserver.RequireHTTP2, Upgrade: []string{"h2c"}}, wantResponse(200, "HTTP/2.0")},
		{"TLS/1.3", testserver.Config{TLS: true, Require: testserver.RequireTLS13, Upgrade: []string{"TLS/1.3"}}, wantResponse(200, "HTTP/1.1")},
		{"HTTP/3", testserver.Config{TLS: true, HTTP3: true, Require: testserver.RequireHTTP3, Upgrade: []string{"HTTP/3"}}, wantResponse(200, "HTTP/3.0")},
		{"in-band", testserver.Config{InbandTLS: testserver.InbandCUPS, Require: testserver.RequireTLS, Upgrade: cups}, wantResponse(200, "HTTP/1.1")},
		{"loop", testserver.Config{TLS: true, Require: testserver.RefuseAll, Upgrade: []string{"HTTP/2"}}, wantResponse(426, "HTTP/2.0")},
		{"nothing usable", testserver.Config{TLS: true, Require: testserver.RefuseAll, Upgrade: []string{"h2c, websocket"}}, wantResponse(426, "HTTP/1.1")},
		{"HTTP/3 certificate fails, HTTP/2 next", testserver.Config{TLS: true, HTTP3: true, HTTP3CA: otherCA, Require: testserver.RequireHTTP2, Upgrade: []string{"HTTP/3, HTTP/2"}}, wantResponse(200, "HTTP/2.0")},
		{"HTTP/2 offered, not spoken", testserver.Config{TLS: true, HTTP1Only: true, Require: testserver.RequireHTTP2, Upgrade: []string{"HTTP/2"}},
			// Until the offer is marked broken, *UpgradeError; then the 426.
			func(resp *http.Response, err error) error {
				if anyUpgradeError(err) {
					return nil
				}
				return wantResponse(426, "HTTP/1.1")(resp, err)
			}},
		{"in-band refused", testserver.Config{InbandTLS: testserver.InbandAnswer200, Require: testserver.RequireTLS, Upgrade: cups},
			func(resp *http.Response, err error) error {
				if anyUpgradeError(err) {
					return nil
				}
				return wantResponse(426, "HTTP/1.1")(resp, err)
			}},
		{"connection cut in the 426", testserver.Config{Require: testserver.RequireHTTP2,
			Refuse: testserver.RawResponse("HTTP/1.1 426 Upgrade Required\r\nUpgrade: h2", testserver.ResetConn)},
			func(resp *http.Response, err error) error {
				if baseError(err) {
					return nil
				}
				return fmt.Errorf("got %v, %v; want Base's error", resp, err)
			}},
		{"endless 426 body", testserver.Config{TLS: true, Require: testserver.RequireHTTP2, Refuse: testserver.EndlessBody("HTTP/2")}, wantResponse(200, "HTTP/2.0")},
	}
	type origin struct {
		kind herdKind
		s    *testserver.Server
	}
	origins := make([]origin, 50)
	for i := range origins {
		kind := kinds[i%len(kinds)]
		cfg := kind.server
		cfg.CA = ca
		origins[i] = origin{kind, startServer(t, cfg)}
	}
	base := legacyBase(t, ca.CertPool())
	base.MaxConnsPerHost = 8 // 1000 requests queue on 50 origins instead of opening 1000 sockets
	// Bounds the in-band upgrade too, whose own default is 10 s.
	base.TLSHandshakeTimeout = patience
	tr := newTransport(t, base)

	const requests = 1000
	var wg sync.WaitGroup
	errs := capErrors(t)
	var bodies []*sentBody
	start := make(chan struct{})
	began := time.Now()
	for i := range requests {
		o := origins[i%len(origins)]
		var sent *sentBody
		if i%2 == 1 {
			sent = newSentBody(randomBytes(rand.IntN(8 << 10)))
			bodies = append(bodies, sent)
		}
		wg.Go(func() {
			<-start
			// Each request's bound runs from the start of the herd: the
			// 1000 share two cores under -race, so the last ones wait.
			ctx, cancel := context.WithTimeout(t.Context(), patience)
			defer cancel()
			var req *http.Request
			if sent == nil {
				req = newRequest(t, ctx, "GET", o.s.URL, nil)
			} else {
				req = sent.request(t, ctx, "POST", o.s.URL, true)
				req.Header.Set("X-Body-Sha256", fmt.Sprintf("%x", sha256.Sum256(sent.data)))
			}
			resp, err := tr.RoundTrip(req)
			if ctx.Err() != nil {
				err = fmt.Errorf("ran out of time (%w)", err)
			} else if bad := o.kind.check(resp, err); bad != nil {
				err = bad
			} else {
				err = nil
			}
			if resp != nil {
				resp.Body.Close()
			}
			var ue *UpgradeError
			if errors.As(err, &ue) {
				ue.Response.Body.Close()
			}
			if err != nil {
				errs.Errorf("%s (%s): %v", o.s.URL, o.kind.name, err)
			}
		})
	}
	close(start)
	wg.Wait()
	t.Logf("%d requests over %d origins in %v", requests, len(origins), time.Since(began))
	checkClosed(t, bodies...)
	for _, o := range origins {
		for _, r := range o.s.Requests() {
			if r.Refused || r.Method == http.MethodOptions {
				continue
			}
			if r.Method == "POST" && fmt.Sprintf("%x", r.BodySHA256) != r.Header.Get("X-Body-Sha256") {
				errs.Errorf("%s (%s): served a body of %d bytes that is not the caller's", o.s.URL, o.kind.name, r.BodyLen)
			}
			if o.kind.server.InbandTLS != 0 && r.TLSVersion == 0 {
				errs.Errorf("%s (%s): served %s in clear", o.s.URL, o.kind.name, r.Method)
			}
		}
	}
}

// Row 14: 200 random bodies of 0 to 4 MiB, some with GetBody and some
// one-shot held back by 100-continue, each through a 426 and a replay:
// the server reads exactly the caller's bytes, once, for every one.
func TestHostileIntegrity(t *testing.T) {
	checkNoLeak(t)
	s := startServer(t, testserver.Config{TLS: true, Require: testserver.RequireHTTP2, Upgrade: []string{"HTTP/2"}})
	base := legacyBase(t, s.CertPool())
	base.ExpectContinueTimeout = 5 * time.Second
	tr := newTransport(t, base)
	tr.MemorySize = -1 // every request meets the 426, so every body is replayed

	// Sizes spread over every scale from bytes to 4 MiB, with the edges
	// always in: the sum stays near 40 MiB, so the row takes seconds under
	// -race.
	const n = 200
	rng := rand.New(rand.NewPCG(7, 426))
	sizes := []int{0, 1, 16<<10 - 1, 16 << 10, 16<<10 + 1, 64 << 10, 1 << 20, 4 << 20}
	for len(sizes) < n {
		sizes = append(sizes, int(float64(4<<20)/float64(uint64(1)<<rng.IntN(23))*rng.Float64()))
	}
	pattern := randomBytes(4<<20 + 1024)

	type job struct {
		id      int
		data    []byte
		oneShot bool
	}
	jobs := make(chan job)
	var wg sync.WaitGroup
	var total atomic.Int64
	var mu sync.Mutex
	var sent []*sentBody
	errs := capErrors(t)
	began := time.Now()
	for range 4 {
		wg.Go(func() {
			for j := range jobs {
				ctx, cancel := context.WithTimeout(t.Context(), patience)
				body := newSentBody(j.data)
				mu.Lock()
				sent = append(sent, body)
				mu.Unlock()
				req := body.request(t, ctx, "PUT", fmt.Sprintf("%s/%d", s.URL, j.id), !j.oneShot)
				if j.oneShot {
					req.Header.Set("Expect", "100-continue")
				}
				resp, err := tr.RoundTrip(req)
				switch {
				case err != nil:
					errs.Errorf("body %d (%d bytes): %v", j.id, len(j.data), err)
				case resp.StatusCode != 200 || resp.Proto != "HTTP/2.0":
					resp.Body.Close()
					errs.Errorf("body %d (%d bytes): %d over %s", j.id, len(j.data), resp.StatusCode, resp.Proto)
				default:
					resp.Body.Close()
					total.Add(int64(len(j.data)))
				}
				cancel()
			}
		})
	}
	want := make(map[string][32]byte, n)
	for i, size := range sizes {
		offset := rng.IntN(1024)
		data := pattern[offset : offset+size]
		path := fmt.Sprintf("/%d", i)
		want[path] = sha256.Sum256(data)
		// A quarter one-shot: no GetBody, held back by 100-continue.
		jobs <- job{id: i, data: data, oneShot: i%4 == 3 && size > 0}
	}
	close(jobs)
	wg.Wait()
	t.Logf("%d bodies, %d MiB, replayed in %v", n, total.Load()>>20, time.Since(began))
	checkClosed(t, sent...)
	got := make(map[string]int)
	for _, r := range s.Requests() {
		if r.Refused {
			continue
		}
		got[r.Path]++
		if r.BodySHA256 != want[r.Path] {
			errs.Errorf("%s: server read %d bytes that are not the caller's", r.Path, r.BodyLen)
		}
	}
	for path := range want {
		if got[path] != 1 {
			errs.Errorf("%s: served %d times, want once", path, got[path])
		}
	}
}
