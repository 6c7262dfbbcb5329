package testserver

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The hostile refusals send what they say, and Close ends each of them
// promptly, whatever the client does.
func TestHostileRefusals(t *testing.T) {
	var asked time.Time // when the request went out
	tests := []struct {
		name   string
		refuse http.Handler
		check  func(t *testing.T, resp *http.Response, err error)
	}{
		{"endless body", EndlessBody("HTTP/2"), func(t *testing.T, resp *http.Response, err error) {
			if err != nil {
				t.Fatal(err)
			}
			n, _ := io.CopyN(io.Discard, resp.Body, 1<<20)
			if resp.StatusCode != 426 || resp.Header.Get("Upgrade") != "HTTP/2" || n != 1<<20 {
				t.Errorf("got %d, Upgrade %q, %d bytes of body", resp.StatusCode, resp.Header.Get("Upgrade"), n)
			}
		}},
		{"trickle", TrickleBody("h2c", 50*time.Millisecond), func(t *testing.T, resp *http.Response, err error) {
			if err != nil {
				t.Fatal(err)
			}
			// From the request: a reader that comes late finds the
			// bytes sent meanwhile, but never sooner than their ticks.
			b := make([]byte, 3)
			n, _ := io.ReadFull(resp.Body, b)
			if elapsed := time.Since(asked); n != 3 || elapsed < 80*time.Millisecond {
				t.Errorf("read %d bytes in %v, want 3 bytes a tick apart", n, elapsed)
			}
		}},
		{"huge header", HugeHeader("HTTP/2", 64<<10), func(t *testing.T, resp *http.Response, err error) {
			if err != nil {
				t.Fatal(err)
			}
			size := 0
			for _, v := range resp.Header["X-Pad"] {
				size += len(v)
			}
			if resp.StatusCode != 426 || size < 60<<10 || resp.Header.Get("Upgrade") != "HTTP/2" {
				t.Errorf("got %d with %d bytes of padding", resp.StatusCode, size)
			}
		}},
		{"cut after the status line", RawResponse("HTTP/1.1 426 Upgrade Required\r\n", CloseConn), func(t *testing.T, resp *http.Response, err error) {
			if !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
				t.Errorf("got %v, %v; want an unexpected end", resp, err)
			}
		}},
		{"reset in the header", RawResponse("HTTP/1.1 426 Upgrade Required\r\nUpg", ResetConn), func(t *testing.T, resp *http.Response, err error) {
			if err == nil {
				t.Errorf("got %d, want an error", resp.StatusCode)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := start(t, Config{HTTP1Only: true, Require: RefuseAll, Refuse: tt.refuse})
			client := newClient(t, s, h1Client)
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "GET", s.URL, nil)
			asked = time.Now()
			resp, err := client.Do(req)
			tt.check(t, resp, err)
			// Close with the response still open: it must not wait on the
			// client.
			closed := make(chan struct{})
			go func() { s.Close(); close(closed) }()
			select {
			case <-closed:
			case <-time.After(10 * time.Second):
				t.Fatal("Close waits on a hostile refusal")
			}
			if resp != nil {
				resp.Body.Close()
			}
		})
	}
}

// RawResponse writes its bytes, then closes, resets or holds the connection.
func TestRawResponseEndings(t *testing.T) {
	const raw = "HTTP/1.1 426 Upgrade Required\r\nContent-Length: 10\r\n\r\nshort"
	for _, tt := range []struct {
		name string
		end  Ending
		want func(error) bool // the error after the bytes
	}{
		{"close", CloseConn, func(err error) bool { return errors.Is(err, io.EOF) }},
		{"reset", ResetConn, func(err error) bool { return errors.Is(err, syscall.ECONNRESET) }},
		{"hold", HoldConn, func(err error) bool {
			var ne net.Error
			return errors.As(err, &ne) && ne.Timeout()
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := start(t, Config{Require: RefuseAll, Refuse: RawResponse(raw, tt.end)})
			conn, err := net.Dial("tcp", s.Addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			var got []byte
			buf := make([]byte, 512)
			for {
				n, err := conn.Read(buf)
				got = append(got, buf[:n]...)
				if tt.end == HoldConn && len(got) == len(raw) {
					// All there: a held connection says nothing more.
					conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
				}
				if err != nil {
					if string(got) != raw || !tt.want(err) {
						t.Errorf("read %q, then %v", got, err)
					}
					break
				}
			}
			s.Close() // ends a held connection too
		})
	}
}

// Hang holds the request until the client gives up, and never answers.
// The client gives up once the handler has the request.
func TestHang(t *testing.T) {
	for _, c := range []client{h1Client, h2Client} {
		ctx, cancel := context.WithCancel(t.Context())
		s := start(t, Config{TLS: true, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			cancel()
			Hang.ServeHTTP(w, r)
		})})
		req, _ := http.NewRequestWithContext(ctx, "POST", s.URL, strings.NewReader("body"))
		_, err := newClient(t, s, c).Do(req)
		cancel()
		if !errors.Is(err, context.Canceled) {
			t.Errorf("got %v, want the client's cancel", err)
		}
		s.Close()
		if seen := s.Requests(); len(seen) != 1 || seen[0].BodyLen != 4 {
			t.Errorf("server saw %+v, want the request and its body", seen)
		}
	}
}

// Close waits for net/http's own connection goroutines, including one that
// lingers 500 ms before closing a connection whose large body it did not
// read.
func TestCloseWaitsForLingeringConnections(t *testing.T) {
	s, err := Start(Config{Require: RefuseAll, HTTP1Only: true})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n")
	written := make(chan struct{})
	go func() {
		defer close(written)
		io.Copy(conn, io.LimitReader(zeros{}, 1<<20)) // more than net/http discards
	}()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if resp, err := http.ReadResponse(bufio.NewReader(conn), nil); err != nil || resp.StatusCode != 426 {
		t.Fatalf("got %v, %v", resp, err)
	}
	s.Close()
	// Close waited out the linger: no goroutine is still in it.
	buf := make([]byte, 1<<20)
	if stacks := buf[:runtime.Stack(buf, true)]; bytes.Contains(stacks, []byte("net/http.(*conn).closeWriteAndWait")) {
		t.Fatalf("Close returned while a server connection lingered:\n%s", stacks)
	}
	// One that reported the connection closed may still be returning,
	// and on a busy machine may wait a while to be scheduled.
	deadline := time.Now().Add(10 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		stacks := buf[:runtime.Stack(buf, true)]
		if !bytes.Contains(stacks, []byte("net/http.(*conn).serve")) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a server connection goroutine outlived Close:\n%s", stacks)
		}
		time.Sleep(5 * time.Millisecond)
	}
	conn.Close()
	<-written
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }
