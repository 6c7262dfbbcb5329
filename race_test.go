package upgrade

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/h426/upgrade/internal/testserver"
	"go.uber.org/goleak"
)

// raceDialer is Base's DialContext in race tests: it counts the TCP dials
// begun and, through conns, the connections made, and can make each dial
// slow (hold, or until its context ends) or fail.
type raceDialer struct {
	conns connCounter
	begun atomic.Int32
	hold  time.Duration
	fail  bool
}

func (d *raceDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	d.begun.Add(1)
	if d.hold > 0 {
		wait := time.NewTimer(d.hold)
		defer wait.Stop()
		select {
		case <-wait.C:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if d.fail {
		return nil, errors.New("test: TCP dial refused")
	}
	return d.conns.DialContext(ctx, network, addr)
}

// raceTransport wraps base, dialing TCP through d. DirectHTTP3 lets HTTP/3
// go around d, which only counts and delays.
func raceTransport(t *testing.T, base *http.Transport, d *raceDialer, delay time.Duration) *Transport {
	base.DialContext = d.DialContext
	tr := newTransport(t, base)
	tr.DirectHTTP3 = true
	tr.HTTP3FallbackDelay = delay
	return tr
}

// answered returns the requests s served, leaving out its refusals.
func answered(s *testserver.Server) []testserver.Request {
	var kept []testserver.Request
	for _, r := range s.Requests() {
		if !r.Refused {
			kept = append(kept, r)
		}
	}
	return kept
}

func h3Broken(tr *Transport, req *http.Request) bool {
	return tr.broken.isBroken(brokenKeyOf(originOf(req), target{kind: targetHTTP3}), tr.clock())
}

// A QUIC handshake done first carries the request, and no TCP connection
// is left open: none is dialed when it is done within the delay; one
// dialed beside a slower handshake is stopped or closed unused; one that
// fails leaves QUIC its whole bound. Each request is remembered over
// HTTP/3, so Base sends nothing first.
func TestRaceQUICFirst(t *testing.T) {
	ca, err := testserver.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		quicSlow  bool          // every TLS handshake takes 500 ms, QUIC's too
		delay     time.Duration // HTTP3FallbackDelay
		hold      time.Duration // each TCP dial's pause
		tcpFails  bool
		wantBegun int32 // TCP dials begun
	}{
		{name: "done within the delay", delay: 10 * time.Second, wantBegun: 0},
		{name: "slower than the delay, TCP slower still", quicSlow: true, delay: 50 * time.Millisecond, hold: patience, wantBegun: 1},
		{name: "slower than the delay, TCP fails", quicSlow: true, delay: 50 * time.Millisecond, tcpFails: true, wantBegun: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testserver.Config{TLS: true, HTTP3: true, CA: ca}
			base := legacyBase(t, ca.CertPool())
			if tt.quicSlow {
				cfg.ClientCAs = ca.CertPool()
				base = slowHandshakeBase(t, ca, 500*time.Millisecond)
			}
			s := startServer(t, cfg)
			d := &raceDialer{hold: tt.hold, fail: tt.tcpFails}
			tr := raceTransport(t, base, d, tt.delay)
			remember(t, tr, s.URL, "HTTP/3")
			payload := bytes.Repeat([]byte("race"), 10_000)
			var races []RaceInfo
			trace := &Trace{Raced: func(i RaceInfo) { races = append(races, i) }}
			req := newRequest(t, WithTrace(testContext(t), trace), "PUT", s.URL, bytes.NewReader(payload))
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			if readAll(t, resp); resp.StatusCode != 200 || resp.Proto != "HTTP/3.0" {
				t.Fatalf("got %d over %s, want 200 over HTTP/3.0", resp.StatusCode, resp.Proto)
			}
			if raced := tt.wantBegun > 0; raced != (len(races) == 1) || (raced && (races[0].Winner != "QUIC" || races[0].Took < tt.delay)) {
				t.Errorf("Raced told %+v; want a race won by QUIC: %v", races, raced)
			}
			if seen := answered(s); len(seen) != 1 || seen[0].Proto != "HTTP/3.0" || seen[0].BodySHA256 != sha256.Sum256(payload) {
				t.Errorf("server served %+v, want the request once, over HTTP/3, with its body", seen)
			}
			if n := d.begun.Load(); n != tt.wantBegun {
				t.Errorf("%d TCP dials begun, want %d", n, tt.wantBegun)
			}
			if n := d.conns.dialed(); n != 0 {
				t.Errorf("%d TCP connections made, want none up", n)
			}
			d.conns.waitAllClosed(t)
			if h3Broken(tr, req) {
				t.Error("HTTP/3 marked broken after it won")
			}
		})
	}
}

// With UDP dropped, QUIC has the delay alone, then a TCP connection is up
// first and carries the request, once, body and all; HTTP/3 is marked
// broken, and the next request goes straight to TCP, dialing no QUIC. The
// connection that won is the one the request goes over: no other is
// dialed for it.
func TestRaceTCPFirst(t *testing.T) {
	otherCA, err := testserver.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		server   testserver.Config
		base     func(testing.TB, *testserver.Server) *http.Transport
		remember bool          // HTTP/3 remembered (Base behind it), else a 426 offers it
		delay    time.Duration // HTTP3FallbackDelay; 0: the default
		hold     time.Duration // each TCP dial's pause
		wantErr  func(error) bool
		// TCP connections made by the first request, and after the second.
		wantDialed, wantDialedAfter int32
	}{{
		name:       "426 offering HTTP/3 then HTTP/2",
		server:     testserver.Config{DropUDP: true, Require: testserver.RequireHTTP2, Upgrade: []string{"HTTP/3, HTTP/2"}},
		base:       func(t testing.TB, s *testserver.Server) *http.Transport { return legacyBase(t, s.CertPool()) },
		wantErr:    func(err error) bool { return errors.Is(err, errQUICSlow) },
		wantDialed: 2, wantDialedAfter: 2, // Base's, then the race's, kept for HTTP/2
	}, {
		name:       "remembered HTTP/3",
		server:     testserver.Config{DropUDP: true},
		base:       h1h2Base,
		remember:   true,
		wantErr:    func(err error) bool { return errors.Is(err, errQUICSlow) },
		wantDialed: 1, wantDialedAfter: 2, // the race's, then Base's own
	}, {
		// The certificate fails the QUIC handshake after the race began
		// and before TCP is up: TCP proceeds. (Should the certificate come
		// later yet, on a busy machine, TCP is up first: the same outcome.)
		name:       "QUIC fails while TCP dials",
		server:     testserver.Config{HTTP3: true, HTTP3CA: otherCA},
		base:       h1h2Base,
		remember:   true,
		delay:      time.Nanosecond,
		hold:       2 * time.Second,
		wantErr:    func(err error) bool { return isCertError(err) || errors.Is(err, errQUICSlow) },
		wantDialed: 1, wantDialedAfter: 2,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.server.TLS = true
			s := startServer(t, tt.server)
			d := &raceDialer{hold: tt.hold}
			tr := raceTransport(t, tt.base(t, s), d, tt.delay)
			tr.HTTP3HandshakeTimeout = time.Hour // only the race ends a dropped handshake
			var attempt error
			var races []RaceInfo
			trace := &Trace{
				Raced: func(i RaceInfo) { races = append(races, i) },
				ReplayDone: func(i ReplayDoneInfo) {
					if attempt == nil {
						attempt = i.Err
					}
				},
				Forgot: func(i MemoryInfo) { attempt = i.Err },
			}
			if tt.remember {
				remember(t, tr, s.URL, "HTTP/3")
			}
			// A body that cannot be made again: only one that was never
			// read can go over TCP after QUIC lost.
			payload := bytes.Repeat([]byte("race"), 10_000)
			body := &countingBody{r: bytes.NewReader(payload)}
			req := newRequest(t, WithTrace(testContext(t), trace), "PUT", s.URL, body)
			if !tt.remember {
				req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(payload)), nil }
			}
			began := time.Now()
			resp, err := tr.RoundTrip(req)
			took := time.Since(began)
			if err != nil {
				t.Fatal(err)
			}
			if readAll(t, resp); resp.StatusCode != 200 || resp.Proto != "HTTP/2.0" {
				t.Fatalf("got %d over %s, want 200 over HTTP/2.0", resp.StatusCode, resp.Proto)
			}
			if tt.remember {
				body.waitCloses(t)
			}
			if seen := answered(s); len(seen) != 1 || seen[0].Proto != "HTTP/2.0" || seen[0].BodySHA256 != sha256.Sum256(payload) {
				t.Errorf("server served %+v, want the request once, over HTTP/2, with its body", seen)
			}
			if !tt.wantErr(attempt) {
				t.Errorf("HTTP/3 failed with %v", attempt)
			}
			if len(races) != 1 || races[0].Winner != "TCP" || !tt.wantErr(races[0].Err) || races[0].Addr != mustParse(s.URL).Host {
				t.Errorf("Raced told %+v, want one race to %s won by TCP", races, mustParse(s.URL).Host)
			}
			if tt.delay == 0 && (took < tr.http3FallbackDelay() || took > promptly) {
				t.Errorf("took %v, want the delay (%v) and little more", took, tr.http3FallbackDelay())
			}
			if n := d.conns.dialed(); n != tt.wantDialed {
				t.Errorf("%d TCP connections made, want %d", n, tt.wantDialed)
			}
			if !h3Broken(tr, req) {
				t.Error("HTTP/3 not marked broken")
			}

			h := h3Of(t, tr)
			tried := h.tried.Load()
			resp, err = tr.RoundTrip(newRequest(t, testContext(t), "GET", s.URL, nil))
			if err != nil {
				t.Fatal(err)
			}
			if readAll(t, resp); resp.StatusCode != 200 || resp.Proto != "HTTP/2.0" {
				t.Errorf("next request: %d over %s, want 200 over HTTP/2.0", resp.StatusCode, resp.Proto)
			}
			if n := h.tried.Load(); n != tried {
				t.Errorf("next request dialed QUIC %d times, want none", n-tried)
			}
			if n := d.conns.dialed(); n != tt.wantDialedAfter {
				t.Errorf("after the next request, %d TCP connections made, want %d", n, tt.wantDialedAfter)
			}
		})
	}
}

// The caller giving up mid-race stops both contenders: the request ends
// at once with its context's error, nothing is marked broken, and no
// connection, socket or goroutine is left.
func TestRaceCancelled(t *testing.T) {
	s := startServer(t, testserver.Config{TLS: true, DropUDP: true})
	baseline := goleak.IgnoreCurrent()
	d := &raceDialer{hold: patience}
	tr := raceTransport(t, legacyBase(t, s.CertPool()), d, 50*time.Millisecond)
	tr.HTTP3HandshakeTimeout = time.Hour
	remember(t, tr, s.URL, "HTTP/3")
	ctx, cancel := context.WithCancel(testContext(t))
	req := newRequest(t, ctx, "GET", s.URL, nil)
	done := make(chan error, 1)
	go func() {
		resp, err := tr.RoundTrip(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	deadline := time.Now().Add(patience)
	for d.begun.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("got %v, want the request's context.Canceled", err)
		}
	case <-time.After(promptly):
		t.Fatal("the request went on after its context was cancelled")
	}
	if h3Broken(tr, req) {
		t.Error("HTTP/3 marked broken for the caller's cancel")
	}
	if s.Count() != 0 {
		t.Errorf("server saw %d requests, want none", s.Count())
	}
	d.conns.waitAllClosed(t)
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	waitGoroutinesGone(t, baseline)
}

// A connection that won a race goes to the first dial to its address,
// once; those no dial takes are closed with their transport, and so is
// one that comes after.
func TestHandOff(t *testing.T) {
	var open connCounter
	pipe := open.conns.counting(func(context.Context, string, string) (net.Conn, error) {
		c, other := net.Pipe()
		other.Close()
		return c, nil
	})
	var h handOff
	won, _ := pipe(t.Context(), "tcp", "example.com:443")
	h.put("example.com:443", won)
	if h.take("other.example:443") != nil {
		t.Error("took a connection left for another address")
	}
	if got := h.take("example.com:443"); got != won {
		t.Errorf("took %v, want the connection left", got)
	}
	if h.take("example.com:443") != nil {
		t.Error("took one connection twice")
	}
	won.Close()
	for range 2 {
		conn, _ := pipe(t.Context(), "tcp", "example.com:443")
		h.put("example.com:443", conn)
	}
	h.close()
	if n := open.open(); n != 0 {
		t.Errorf("%d connections open after close, want 0", n)
	}
	late, _ := pipe(t.Context(), "tcp", "example.com:443")
	h.put("example.com:443", late)
	if n := open.open(); n != 0 {
		t.Errorf("a connection put after close stays open")
	}
}

// A caller that gives up leaves no TCP contender behind, whether it gives
// up before the delay or while TCP dials: quic-go's dial outlives the
// request's context (it is shared by every request to the host), but the
// contender is the request's, and nobody is left to take what it would
// win. No Close here: http.Client users never call it.
func TestRaceCancelledLeavesNoContender(t *testing.T) {
	tests := []struct {
		name string
		hold time.Duration // each TCP dial's pause
		// cancelWhen returns once the request is to be cancelled.
		cancelWhen func(d *raceDialer)
	}{
		{name: "before the delay", cancelWhen: func(*raceDialer) { time.Sleep(20 * time.Millisecond) }},
		{name: "while TCP dials", hold: 500 * time.Millisecond, cancelWhen: func(d *raceDialer) {
			for deadline := time.Now().Add(patience); d.begun.Load() == 0 && time.Now().Before(deadline); {
				time.Sleep(time.Millisecond)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startServer(t, testserver.Config{TLS: true, DropUDP: true})
			d := &raceDialer{hold: tt.hold}
			tr := raceTransport(t, legacyBase(t, s.CertPool()), d, 200*time.Millisecond)
			tr.HTTP3HandshakeTimeout = time.Hour
			remember(t, tr, s.URL, "HTTP/3")
			ctx, cancel := context.WithCancel(testContext(t))
			go func() { tt.cancelWhen(d); cancel() }()
			req := newRequest(t, ctx, "GET", s.URL, nil)
			if _, err := tr.RoundTrip(req); !errors.Is(err, context.Canceled) {
				t.Fatalf("got %v, want context.Canceled", err)
			}
			time.Sleep(time.Second) // past the delay and the hold
			if n := d.conns.dialed(); n != 0 {
				t.Errorf("%d TCP connections made after the caller gave up, want none", n)
			}
			if h3Broken(tr, req) {
				t.Error("HTTP/3 marked broken for the caller's cancel")
			}
		})
	}
}

// A TCP contender dials, and parks its connection under, the very address
// net/http asks its dialer for, which quic-go's pool key is not always.
func TestTCPAddrIsNetHTTPs(t *testing.T) {
	for _, raw := range []string{
		"https://127.0.0.1:8443/",
		"https://Example.COM/",
		"https://B\u00fccher.example/",
		"https://host:/",
		"https://[::1]:8443/",
	} {
		var dialed string
		tr := &http.Transport{DialContext: func(_ context.Context, _, addr string) (net.Conn, error) {
			dialed = addr
			return nil, errors.New("no dial in this test")
		}}
		req, err := http.NewRequest("GET", raw, nil)
		if err != nil {
			t.Fatal(err)
		}
		tr.RoundTrip(req)
		if got := tcpAddrOf(req.URL); got != dialed {
			t.Errorf("%s: tcpAddrOf %q, net/http dials %q", raw, got, dialed)
		}
	}
}
