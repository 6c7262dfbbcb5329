package testserver

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
)

// loopback is the only address a test server listens on; port 0 lets the OS
// pick a free port.
const loopback = "127.0.0.1:0"

// maxPortTries bounds the search for a port number free on both TCP and UDP.
// The OS picks the TCP port; the UDP port of that number is usually free too.
const maxPortTries = 20

// listen opens the server's TCP port and wraps it so that every connection
// accepted on it can be closed by Server.Close. If bindUDP is not nil, it also
// binds the UDP port with the same number, as an "h3" offer means the same
// host and port over UDP (RFC 9114 section 3.1); udp is nil otherwise.
//
// When bindUDP fails, another socket may hold that UDP port: listen tries
// another TCP port, keeping the failed ones open until it returns so the OS
// cannot hand the same number back.
func listen(bindUDP func(port int) (*net.UDPConn, error)) (*trackingListener, *net.UDPConn, error) {
	var failed []net.Listener
	var bindErr error
	defer func() {
		for _, ln := range failed {
			ln.Close()
		}
	}()
	for range maxPortTries {
		ln, err := net.Listen("tcp", loopback)
		if err != nil {
			return nil, nil, err
		}
		tcp := &trackingListener{Listener: ln, conns: make(map[*trackedConn]struct{})}
		if bindUDP == nil {
			return tcp, nil, nil
		}
		udp, err := bindUDP(ln.Addr().(*net.TCPAddr).Port)
		if err == nil {
			return tcp, udp, nil
		}
		failed = append(failed, ln)
		bindErr = err
	}
	return nil, nil, fmt.Errorf("testserver: no port free on both TCP and UDP in %d tries: %w", maxPortTries, bindErr)
}

// listenUDP binds the UDP port with number port on the loopback address.
func listenUDP(port int) (*net.UDPConn, error) {
	return net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
}

// newTLSConfig builds the server's TLS configuration, once per server, from
// cfg and the server certificate.
func newTLSConfig(cfg Config, cert tls.Certificate) *tls.Config {
	conf := &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   cfg.MinTLSVersion,
		MaxVersion:   cfg.MaxTLSVersion,
		// ALPN (RFC 7301) decides between HTTP/2 and HTTP/1.1 over TLS.
		NextProtos: []string{"h2", "http/1.1"},
	}
	switch {
	case cfg.HTTP1Only:
		conf.NextProtos = []string{"http/1.1"}
	case cfg.HTTP2Only:
		conf.NextProtos = []string{"h2"}
	}
	if cfg.ClientCAs != nil {
		conf.ClientCAs = cfg.ClientCAs
		conf.ClientAuth = tls.RequireAndVerifyClientCert
	}
	if cfg.HTTP2Only {
		// crypto/tls lets a client that offers only http/1.1 through to an
		// h2 server without ALPN (go.dev/issue/46310); Node's does not.
		// Without "h2" in its list the server has no such fallback, and
		// fails the handshake with no_application_protocol.
		refuse := conf.Clone()
		refuse.NextProtos = []string{"h2-only"}
		conf.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			if !slices.Contains(hello.SupportedProtos, "h2") {
				return refuse, nil
			}
			return nil, nil
		}
	}
	return conf
}

// protocols says which HTTP versions the http.Server speaks. Over TLS, HTTP/2
// is chosen by ALPN; in clear it is h2c with prior knowledge (RFC 9113
// section 3.3), which net/http serves natively.
func protocols(cfg Config) *http.Protocols {
	var p http.Protocols
	p.SetHTTP1(true)
	switch {
	case cfg.HTTP1Only:
	case cfg.TLS:
		p.SetHTTP2(true)
	default:
		p.SetUnencryptedHTTP2(true)
	}
	return &p
}

// trackingListener remembers every connection it accepts until that
// connection is closed. http.Server.Close forgets hijacked connections;
// closeAll reaches them too.
type trackingListener struct {
	net.Listener

	mu     sync.Mutex // guards conns and closed
	conns  map[*trackedConn]struct{}
	closed bool
}

func (l *trackingListener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tracked := &trackedConn{Conn: conn, owner: l}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		conn.Close()
		return nil, net.ErrClosed
	}
	l.conns[tracked] = struct{}{}
	return tracked, nil
}

// closeAll closes the listener and every connection still open; connections
// accepted afterwards are closed at once.
func (l *trackingListener) closeAll() {
	l.mu.Lock()
	l.closed = true
	conns := l.conns
	l.conns = make(map[*trackedConn]struct{})
	l.mu.Unlock()

	l.Listener.Close()
	for c := range conns {
		c.Conn.Close()
	}
}

func (l *trackingListener) forget(c *trackedConn) {
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
}

// trackedConn is an accepted connection that leaves its listener's set when
// closed.
type trackedConn struct {
	net.Conn
	owner *trackingListener
}

func (c *trackedConn) Close() error {
	c.owner.forget(c)
	return c.Conn.Close()
}

// CloseWrite keeps the TCP half-close that net/http uses before closing a
// connection whose request body it did not read (a refusal): without it the
// kernel answers the unread bytes with a RST, and the client may lose the 426.
func (c *trackedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
