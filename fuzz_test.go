package upgrade

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/h426/upgrade/internal/testserver"
)

// rawServer answers every request it reads, on any connection, with the
// bytes of the current fuzz input, raw: the first request, the h2c
// preface, the in-band OPTIONS and a replay over a newer TLS all get them.
// It listens in clear and over TLS (ALPN h2 and http/1.1, TLS up to 1.3).
type rawServer struct {
	clear, secure net.Listener
	roots         *tls.Config // what a client trusts it with

	current atomic.Pointer[rawRound]

	mu     sync.Mutex // guards conns and closed
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup // the accept loops and every connection's goroutine
}

// rawRound is one fuzz input as the server plays it.
type rawRound struct {
	response []byte
	hold     time.Duration // how long to keep the connection open after the response
	requests atomic.Int32  // request headers read in this round
}

func startRawServer(f *testing.F) *rawServer {
	ca, err := testserver.NewCA()
	if err != nil {
		f.Fatal(err)
	}
	cert, err := ca.ServerCert()
	if err != nil {
		f.Fatal(err)
	}
	clear, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	secure, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		clear.Close()
		f.Fatal(err)
	}
	s := &rawServer{
		clear:  clear,
		secure: tls.NewListener(secure, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}}),
		roots:  &tls.Config{RootCAs: ca.CertPool()},
		conns:  make(map[net.Conn]struct{}),
	}
	s.current.Store(&rawRound{})
	for _, ln := range []net.Listener{s.clear, s.secure} {
		s.wg.Go(func() { s.accept(ln) })
	}
	f.Cleanup(s.close)
	return s
}

func (s *rawServer) accept(ln net.Listener) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			conn.Close()
			return
		}
		s.conns[conn] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.conns, conn)
				s.mu.Unlock()
				conn.Close()
			}()
			s.serve(conn)
		}()
	}
}

// serve reads request headers and answers each with the round's bytes,
// until the round says to close or the client goes.
func (s *rawServer) serve(conn net.Conn) {
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(io.LimitReader(conn, 1<<20))
	for {
		if !readHeaderBlock(br) {
			return
		}
		round := s.current.Load()
		round.requests.Add(1)
		if _, err := conn.Write(round.response); err != nil || round.hold == 0 {
			return
		}
		conn.SetDeadline(time.Now().Add(round.hold))
	}
}

// readHeaderBlock reads up to and including an empty line.
func readHeaderBlock(br *bufio.Reader) bool {
	for {
		line, err := br.ReadSlice('\n')
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return false
		}
		if len(bytes.TrimRight(line, "\r\n")) == 0 && err == nil {
			return true
		}
	}
}

func (s *rawServer) close() {
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.clear.Close()
	s.secure.Close()
	s.wg.Wait()
}

// Fuzz input flags.
const (
	fuzzTLS       = 1 << iota // the origin is https://
	fuzzHold                  // the server keeps the connection open a moment after its bytes
	fuzzBody                  // a POST with GetBody
	fuzzOneShot               // a POST with a one-shot body and Expect: 100-continue
	fuzzUseMemory             // the same transport sends a second request afterwards
)

// fuzzBound is each request's context.
const fuzzBound = time.Second

// holdFor is how long the server keeps a connection open after its bytes.
// Never long: the fuzzing engine mutates one input many times in a row, so
// an input that waits stalls it. Servers that hold connections past the
// drain bound or until the deadline are rows 3, 4, 5 and 8 of the hostile
// matrix.
func holdFor(flags uint8) time.Duration {
	if flags&fuzzHold != 0 {
		return 20 * time.Millisecond
	}
	return 0
}

// FuzzTransport feeds arbitrary responses, 426s and others, through
// RoundTrip from a loopback server that answers every request, the
// replay's included, with them. Whatever they are: no panic, no hang, one
// of the allowed outcomes, every request body closed exactly once, and no
// replay unless a 426 asked for one.
func FuzzTransport(f *testing.F) {
	const h = "HTTP/1.1 426 Upgrade Required\r\n"
	for _, seed := range []struct {
		flags    uint8
		response string
	}{
		{0, h + "Upgrade: TLS/1.2,TLS/1.1,TLS/1.0\r\nConnection: Upgrade\r\nContent-Length: 0\r\n\r\n"},                      // CUPS
		{fuzzTLS, h + "Upgrade: TLS/1.0, HTTP/1.1\r\nConnection: Upgrade\r\nContent-Length: 20\r\n\r\n<html>upgrade</html>"}, // Apache
		{fuzzBody, h + "Upgrade: h2c\r\nConnection: Upgrade\r\nContent-Length: 0\r\n\r\n"},
		{fuzzTLS | fuzzBody, h + "Upgrade: HTTP/2.0\r\nConnection: Upgrade\r\nContent-Length: 0\r\n\r\n"},
		{fuzzTLS, h + "Upgrade: HTTP/3\r\nContent-Length: 0\r\n\r\n"},
		{fuzzTLS | fuzzHold, h + "Upgrade: TLS/1.3\r\nContent-Length: 2\r\n\r\nno"},
		{fuzzHold, h + "Upgrade: h2c\r\n\r\nbody until the connection closes"},
		{0, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: TLS/1.2\r\nConnection: Upgrade\r\n\r\n"},
		{fuzzHold, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: TLS/1.2\r\nConnection: Upgrade\r\n\r\n"},
		{0, "HTTP/1.1 200 OK\r\nUpgrade: h2c\r\nConnection: Upgrade\r\nContent-Length: 2\r\n\r\nok"},
		{fuzzOneShot, "HTTP/1.1 100 Continue\r\n\r\n" + h + "Upgrade: h2c\r\nContent-Length: 0\r\n\r\n"},
		{0, h + "Upgrade: web socket, /1.1, TLS/\r\n\r\n"},
		{0, h + "Upgrade: \x00\r\nContent-Length: 0\r\n\r\n"},
		{0, "HTTP/1.1 4266 Upgrade Required\r\nUpgrade: h2c\r\n\r\n"},
		{0, "HTTP/1.0 426 Upgrade Required\r\nUpgrade: h2c\r\n\r\n"},
		{fuzzHold, h + "Upgrade: h2c\r\nContent-Length: 100\r\n\r\nshort"},
		{fuzzBody, h + "Upgrade: h2c\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"},
		{fuzzBody, h + "Upgrade: h2c\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\ninjected"},
		{fuzzUseMemory, h + "Upgrade: h2c\r\nContent-Length: 0\r\n\r\n"},
		{fuzzTLS | fuzzUseMemory, h + "Upgrade: TLS/1.3, h2\r\nContent-Length: 0\r\n\r\n"},
		{0, h + "Upgrade: " + strings.Repeat("h2c, ", 20_000) + "\r\n\r\n"}, // a huge header
		{0, h + strings.Repeat("X-Pad: "+strings.Repeat("p", 1000)+"\r\n", 200) + "Upgrade: h2c\r\n\r\n"},
	} {
		f.Add(seed.flags, []byte(seed.response))
	}
	s := startRawServer(f)
	f.Fuzz(func(t *testing.T, flags uint8, response []byte) {
		// Each input starts from quiet: goroutines an earlier one left
		// finishing would make coverage, and so what counts as new, noisy.
		defer settle(runtime.NumGoroutine())
		round := &rawRound{response: response, hold: holdFor(flags)}
		s.current.Store(round)
		url := "http://" + s.clear.Addr().String()
		if flags&fuzzTLS != 0 {
			url = "https://" + s.secure.Addr().String()
		}
		http1 := new(http.Protocols)
		http1.SetHTTP1(true)
		base := &http.Transport{Protocols: http1, ExpectContinueTimeout: 200 * time.Millisecond}
		base.TLSClientConfig = s.roots.Clone()
		base.TLSClientConfig.MaxVersion = tls.VersionTLS12
		tr := &Transport{Base: base, HTTP3HandshakeTimeout: 30 * time.Millisecond}
		defer base.CloseIdleConnections()
		defer tr.Close()

		sends := 1
		if flags&fuzzUseMemory != 0 {
			sends = 2
		}
		for range sends {
			fuzzOnce(t, tr, url, flags, round)
		}
	})
}

// settle waits, briefly, for the goroutines of one input to finish.
func settle(goroutines int) {
	deadline := time.Now().Add(300 * time.Millisecond)
	for runtime.NumGoroutine() > goroutines && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
}

// fuzzOnce sends one request as flags say and checks how it ended.
func fuzzOnce(t *testing.T, tr *Transport, url string, flags uint8, round *rawRound) {
	ctx, cancel := context.WithTimeout(context.Background(), fuzzBound)
	defer cancel()
	var got426, remembered atomic.Bool
	ctx = WithTrace(ctx, &Trace{
		Got426:     func(Got426Info) { got426.Store(true) },
		Remembered: func(MemoryInfo) { remembered.Store(true) },
	})
	var sent *sentBody
	var req *http.Request
	switch {
	case flags&fuzzOneShot != 0:
		sent = newSentBody([]byte("a body without GetBody"))
		req = sent.request(t, ctx, "POST", url, false)
		req.Header.Set("Expect", "100-continue")
	case flags&fuzzBody != 0:
		sent = newSentBody([]byte("a body with GetBody"))
		req = sent.request(t, ctx, "POST", url, true)
	default:
		req = newRequest(t, ctx, "GET", url, nil)
	}
	before := round.requests.Load()

	start := time.Now()
	resp, err := tr.RoundTrip(req)
	if elapsed := time.Since(start); elapsed > fuzzBound+promptly {
		t.Errorf("RoundTrip took %v with a %v context", elapsed, fuzzBound)
	}

	var pe *ParseError
	var ue *UpgradeError
	switch {
	case (resp == nil) == (err == nil):
		t.Fatalf("response %v and error %v", resp, err)
	case errors.As(err, &pe):
		t.Errorf("a *ParseError came out as an error: %v", err)
	case errors.As(err, &ue):
		if ue.Response == nil || ue.Response.StatusCode != http.StatusUpgradeRequired || len(ue.Attempts) == 0 {
			t.Errorf("*UpgradeError without its 426 or attempts: %+v", ue)
		}
		for _, a := range ue.Attempts {
			if a.Err == nil {
				t.Errorf("attempt %s failed with no error", a.Protocol)
			}
		}
		if ue.Response != nil {
			if kept, _ := io.ReadAll(ue.Response.Body); len(kept) > drainLimit {
				t.Errorf("*UpgradeError keeps %d bytes of the 426 body", len(kept))
			}
		}
	case resp != nil:
		// A hostile body may trickle or never end: read what comes soon.
		stop := time.AfterFunc(100*time.Millisecond, func() { resp.Body.Close() })
		io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		stop.Stop()
		resp.Body.Close()
	}
	if !got426.Load() && !remembered.Load() {
		// An Upgrade header on any status but 426 is ignored: one request.
		if n := round.requests.Load() - before; n > 1 {
			t.Errorf("no 426, yet the server read %d requests", n)
		}
	}
	if sent != nil {
		checkClosedSettle(t, 2*time.Millisecond, sent)
	}
}
