package testserver

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"go.uber.org/goleak"
)

// udpPortHeld reports whether the UDP port with s's port number is held, by
// trying to bind it.
func udpPortHeld(t *testing.T, s *Server) bool {
	t.Helper()
	udp, err := listenUDP(port(t, s.Addr))
	if err != nil {
		return true
	}
	udp.Close()
	return false
}

func port(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestUDPPort checks that a server asked for HTTP/3 or for dropping holds the
// UDP port with its TCP port's number until Close, and other servers leave it
// alone.
func TestUDPPort(t *testing.T) {
	tests := []struct {
		name     string
		cfg      Config
		wantHeld bool
	}{
		{name: "HTTP3", cfg: Config{TLS: true, HTTP3: true}, wantHeld: true},
		{name: "DropUDP", cfg: Config{TLS: true, DropUDP: true}, wantHeld: true},
		{name: "TLS only", cfg: Config{TLS: true}},
		{name: "clear", cfg: Config{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Start(tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if held := udpPortHeld(t, s); held != tt.wantHeld {
				s.Close()
				t.Fatalf("UDP port %d held = %v, want %v", port(t, s.Addr), held, tt.wantHeld)
			}
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if udpPortHeld(t, s) {
				t.Errorf("UDP port %d still held after Close", port(t, s.Addr))
			}
		})
	}
}

// TestDropUDP checks that an HTTP/3 client gets no answer from a server that
// drops QUIC, while TCP still serves.
func TestDropUDP(t *testing.T) {
	tests := []struct {
		name        string
		client      client
		wantTimeout bool
		wantCount   int
	}{
		{name: "HTTP/3 handshake times out",
			client:      client{http3: true, quic: &quic.Config{HandshakeIdleTimeout: 300 * time.Millisecond}},
			wantTimeout: true},
		{name: "HTTP/2 over TCP is served", client: h2Client, wantCount: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := start(t, Config{TLS: true, DropUDP: true})
			resp, err := get(newClient(t, s, tt.client), s.URL)
			if tt.wantTimeout {
				// quic-go reports an idle timeout or a handshake timeout,
				// depending on which fires first; both are net.Errors.
				var netErr net.Error
				if !errors.As(err, &netErr) || !netErr.Timeout() {
					t.Errorf("got %d, %v; want a timeout", resp.status, err)
				}
			} else if err != nil || resp.status != http.StatusOK {
				t.Errorf("got %d, %v; want 200", resp.status, err)
			}
			if n := s.Count(); n != tt.wantCount {
				t.Errorf("Count = %d, want %d", n, tt.wantCount)
			}
		})
	}
}

// TestHTTP3CA checks that HTTP3CA changes the certificate over QUIC only.
func TestHTTP3CA(t *testing.T) {
	quicCA, err := NewCA()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name         string
		client       client
		trustQUICCA  bool // the client trusts quicCA instead of the server's CA
		wantProto    string
		wantCertFail bool
	}{
		{name: "TLS over TCP verifies with the server's CA", client: h2Client, wantProto: "HTTP/2.0"},
		{name: "QUIC fails verification with the server's CA", client: h3Client, wantCertFail: true},
		{name: "QUIC verifies with HTTP3CA", client: h3Client, trustQUICCA: true, wantProto: "HTTP/3.0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := start(t, Config{TLS: true, HTTP3: true, HTTP3CA: quicCA})
			c := tt.client
			if tt.trustQUICCA {
				c.roots = quicCA.CertPool()
			}
			resp, err := get(newClient(t, s, c), s.URL)
			if tt.wantCertFail {
				if !errors.As(err, new(*tls.CertificateVerificationError)) ||
					!errors.As(err, new(x509.UnknownAuthorityError)) {
					t.Errorf("got %d, %v; want a certificate verification error", resp.status, err)
				}
				if n := s.Count(); n != 0 {
					t.Errorf("Count = %d, want 0", n)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if resp.status != http.StatusOK || resp.proto != tt.wantProto {
				t.Errorf("got %d %s, want 200 %s", resp.status, resp.proto, tt.wantProto)
			}
			if s.CA() == quicCA {
				t.Error("CA() is HTTP3CA, want the CA of the TCP certificate")
			}
		})
	}
}

func TestStartRejectsConfig(t *testing.T) {
	ca, err := NewCA()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  Config
	}{
		{name: "HTTP3 without TLS", cfg: Config{HTTP3: true}},
		{name: "DropUDP without TLS", cfg: Config{DropUDP: true}},
		{name: "HTTP3 and DropUDP", cfg: Config{TLS: true, HTTP3: true, DropUDP: true}},
		{name: "HTTP3CA without HTTP3", cfg: Config{TLS: true, HTTP3CA: ca}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Start(tt.cfg)
			if err == nil {
				s.Close()
				t.Fatal("Start succeeded, want an error")
			}
		})
	}
}

// TestListenRetries checks the search for a port number free on both TCP and
// UDP, with UDP ports that another socket holds.
func TestListenRetries(t *testing.T) {
	tests := []struct {
		name      string
		taken     int // the first taken binds fail
		wantErr   bool
		wantBinds int
	}{
		{name: "free at once", taken: 0, wantBinds: 1},
		{name: "free on the third port", taken: 2, wantBinds: 3},
		{name: "never free", taken: maxPortTries, wantErr: true, wantBinds: maxPortTries},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var tried []int
			bindUDP := func(port int) (*net.UDPConn, error) {
				tried = append(tried, port)
				if len(tried) <= tt.taken {
					return nil, &net.OpError{Op: "listen", Net: "udp", Err: syscall.EADDRINUSE}
				}
				return listenUDP(port)
			}
			tcp, udp, err := listen(bindUDP)
			if len(tried) != tt.wantBinds {
				t.Errorf("bindUDP called %d times, want %d", len(tried), tt.wantBinds)
			}
			for i, p := range tried {
				for _, q := range tried[:i] {
					if p == q {
						t.Errorf("port %d tried twice", p)
					}
				}
			}
			// Every TCP port given up is closed again.
			for _, p := range tried[:min(tt.taken, len(tried))] {
				ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
				if err != nil {
					t.Errorf("TCP port %d given up but still held: %v", p, err)
					continue
				}
				ln.Close()
			}
			if tt.wantErr {
				if !errors.Is(err, syscall.EADDRINUSE) {
					t.Errorf("err = %v, want one wrapping EADDRINUSE", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer udp.Close()
			defer tcp.closeAll()
			tcpPort, udpPort := tcp.Addr().(*net.TCPAddr).Port, udp.LocalAddr().(*net.UDPAddr).Port
			if tcpPort != udpPort || tcpPort != tried[len(tried)-1] {
				t.Errorf("TCP port %d, UDP port %d, last tried %d; want all equal", tcpPort, udpPort, tried[len(tried)-1])
			}
		})
	}
}

// TestCloseHTTP3 checks that Close takes QUIC connections, the HTTP/3 server
// and the UDP reader with it, with clients still holding connections.
func TestCloseHTTP3(t *testing.T) {
	tests := []struct {
		name   string
		cfg    Config
		client client
	}{
		{name: "HTTP3 after a request", cfg: Config{TLS: true, HTTP3: true}, client: h3Client},
		{name: "HTTP3 after a refusal", cfg: Config{TLS: true, HTTP3: true, Require: RefuseAll}, client: h3Client},
		{name: "DropUDP after a dropped handshake", cfg: Config{TLS: true, DropUDP: true},
			client: client{http3: true, quic: &quic.Config{HandshakeIdleTimeout: 100 * time.Millisecond}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
			s, err := Start(tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			c := newClient(t, s, tt.client)
			get(c, s.URL) // fails for DropUDP
			closeWithin(t, s, 10*time.Second)
			// Close the client now, as goleak looks before its cleanup runs.
			if err := c.Transport.(*http3.Transport).Close(); err != nil {
				t.Errorf("client Close: %v", err)
			}
		})
	}
}
