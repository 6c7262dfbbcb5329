package testserver

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

const upgradeRequest = "OPTIONS * HTTP/1.1\r\nHost: printer\r\nConnection: Upgrade\r\nUpgrade: TLS/1.2, TLS/1.0\r\n\r\n"

// dialRaw opens a TCP connection to s, closed when the test ends.
func dialRaw(t *testing.T, s *Server) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { conn.Close() })
	return conn
}

// readHead reads a response head byte by byte, so nothing after it is taken.
func readHead(t *testing.T, r io.Reader) string {
	t.Helper()
	var head []byte
	b := make([]byte, 1)
	for !strings.HasSuffix(string(head), "\r\n\r\n") {
		if _, err := r.Read(b); err != nil {
			t.Fatalf("reading a response head after %q: %v", head, err)
		}
		head = append(head, b[0])
	}
	return string(head)
}

// The modes that switch follow RFC 2817 byte for byte: 101, handshake, the
// OPTIONS answered inside TLS, then HTTP/1.1 inside TLS, recorded with its
// TLS state.
func TestInbandSwitch(t *testing.T) {
	tests := []struct {
		mode       InbandMode
		wantSwitch string
	}{
		{InbandRFC2817, switchRFC2817},
		{InbandCUPS, switchCUPS},
	}
	for _, tt := range tests {
		t.Run(strings.Fields(tt.wantSwitch)[3], func(t *testing.T) {
			s := start(t, Config{InbandTLS: tt.mode, Require: RequireTLS, Upgrade: []string{"TLS/1.2,TLS/1.1,TLS/1.0"}})
			conn := dialRaw(t, s)
			io.WriteString(conn, upgradeRequest)
			if head := readHead(t, conn); head != tt.wantSwitch {
				t.Fatalf("answer in clear %q, want %q", head, tt.wantSwitch)
			}
			tc := tls.Client(conn, &tls.Config{RootCAs: s.CertPool(), ServerName: "localhost", NextProtos: []string{"http/1.1"}})
			if err := tc.Handshake(); err != nil {
				t.Fatal(err)
			}
			if head := readHead(t, tc); head != optionsAnswer {
				t.Fatalf("answer inside TLS %q, want %q", head, optionsAnswer)
			}
			io.WriteString(tc, "GET /inside HTTP/1.1\r\nHost: printer\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 || string(body) != "ok\n" {
				t.Errorf("inside TLS: %d %q, want 200 ok", resp.StatusCode, body)
			}
			seen := s.Requests()
			if len(seen) != 2 {
				t.Fatalf("saw %+v, want the OPTIONS and the GET", seen)
			}
			if o := seen[0]; o.Method != "OPTIONS" || o.Path != "*" || o.TLSVersion != 0 || o.Header.Get("Upgrade") != "TLS/1.2, TLS/1.0" {
				t.Errorf("OPTIONS recorded as %+v", o)
			}
			if g := seen[1]; g.Method != "GET" || g.Refused || g.TLSVersion == 0 || g.ALPN != "http/1.1" || g.Proto != "HTTP/1.1" {
				t.Errorf("GET recorded as %+v, want served over HTTP/1.1 in TLS", g)
			}
		})
	}
}

// Requests that do not ask for TLS as RFC 2817 says are ordinary requests.
func TestInbandOnlyOnAsking(t *testing.T) {
	tests := []struct {
		name, request string
	}{
		{"OPTIONS without Connection: Upgrade", "OPTIONS * HTTP/1.1\r\nHost: p\r\nUpgrade: TLS/1.0\r\n\r\n"},
		{"OPTIONS asking for websocket", "OPTIONS * HTTP/1.1\r\nHost: p\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"},
		{"GET", "GET / HTTP/1.1\r\nHost: p\r\n\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := start(t, Config{InbandTLS: InbandRFC2817, Require: RequireTLS, Upgrade: []string{"TLS/1.0"}})
			conn := dialRaw(t, s)
			io.WriteString(conn, tt.request)
			if head := readHead(t, conn); !strings.HasPrefix(head, "HTTP/1.1 426 ") {
				t.Errorf("answer %q, want the 426", head)
			}
			if s.Refused() != 1 {
				t.Errorf("refused %d, want 1", s.Refused())
			}
		})
	}
}

// A client that sends more before the 101 gets no switch: the server will
// not guess where TLS begins.
func TestInbandPipelinedUpgradeRefused(t *testing.T) {
	s := start(t, Config{InbandTLS: InbandRFC2817, Require: RequireTLS})
	conn := dialRaw(t, s)
	io.WriteString(conn, upgradeRequest+"GET / HTTP/1.1\r\nHost: p\r\n\r\n")
	if got, _ := io.ReadAll(conn); len(got) != 0 {
		t.Errorf("got %q, want the connection closed", got)
	}
}

// Close ends connections held by hostile modes, in clear or inside TLS.
func TestInbandCloseEndsHeldConnections(t *testing.T) {
	for _, mode := range []InbandMode{InbandBytesAfter101, InbandSilent, InbandUnasked101Clear} {
		s, err := Start(Config{InbandTLS: mode, Require: RequireTLS})
		if err != nil {
			t.Fatal(err)
		}
		conn := dialRaw(t, s)
		request := upgradeRequest
		if mode == InbandUnasked101Clear {
			request = "GET / HTTP/1.1\r\nHost: p\r\n\r\n"
		}
		io.WriteString(conn, request)
		readHead(t, conn)
		if mode == InbandSilent {
			tc := tls.Client(conn, &tls.Config{RootCAs: s.CertPool(), ServerName: "localhost"})
			if err := tc.Handshake(); err != nil {
				t.Fatal(err)
			}
		}
		done := make(chan struct{})
		go func() { s.Close(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("mode %d: Close did not return", mode)
		}
	}
}

func TestInbandConfigChecked(t *testing.T) {
	if _, err := Start(Config{TLS: true, InbandTLS: InbandRFC2817}); err == nil {
		t.Error("Start accepted InbandTLS on a TLS server")
	}
}
