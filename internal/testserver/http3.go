package testserver

import (
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// newQUICTLSConfig derives the QUIC configuration from the server's TLS
// configuration, so client certificates are checked alike, presenting cert.
func newQUICTLSConfig(tcp *tls.Config, cert tls.Certificate) *tls.Config {
	conf := tcp.Clone()
	conf.Certificates = []tls.Certificate{cert}
	// QUIC carries TLS 1.3 only (RFC 9001 section 4.2), even when the TCP
	// side is capped lower.
	conf.MinVersion = tls.VersionTLS13
	conf.MaxVersion = 0
	// http3.Server sets this too; RFC 9114 section 3.1 names "h3".
	conf.NextProtos = []string{http3.NextProtoH3}
	return conf
}

// serveUDP starts the goroutine that owns udp: an HTTP/3 server, or a reader
// that drops every datagram.
func (s *Server) serveUDP(udp *net.UDPConn) {
	s.udp = udp
	s.udpDone = make(chan struct{})
	if !s.cfg.HTTP3 {
		go dropDatagrams(udp, s.udpDone)
		return
	}
	s.http3 = &http3.Server{
		Handler:   http.HandlerFunc(s.serveHTTP),
		TLSConfig: s.quicTLSConfig,
		// Not nil: a nil QUICConfig makes http3 accept 0-RTT, which serves a
		// request sent as early data (RFC 9001 section 4.6) before the
		// handshake completes. A strict server serves none.
		QUICConfig: &quic.Config{
			// quic-go's default, 5 s (10 s in all), drops a handshake that a
			// loaded machine is slow to finish, silently: the client, done
			// with its side, then waits out its idle timeout on a
			// connection the server forgot. Close ends handshakes anyway.
			HandshakeIdleTimeout: time.Minute,
		},
	}
	go func() {
		defer close(s.udpDone)
		// Returns http.ErrServerClosed once Close has begun, also when Close
		// comes first. Serve never closes udp; closeUDP does.
		s.http3.Serve(udp)
	}()
}

// closeUDP closes the HTTP/3 server, which closes its QUIC connections and
// waits for their handlers, then the UDP port, and waits for its reader.
func (s *Server) closeUDP() error {
	var err error
	if s.http3 != nil {
		err = s.http3.Close()
	}
	err = errors.Join(err, s.udp.Close())
	<-s.udpDone
	return err
}

// dropDatagrams reads and discards datagrams from udp until it is closed,
// then closes done: nothing sent to the port is ever answered.
func dropDatagrams(udp net.PacketConn, done chan<- struct{}) {
	defer close(done)
	buf := make([]byte, 64<<10) // the largest UDP payload
	for {
		if _, _, err := udp.ReadFrom(buf); err != nil {
			return
		}
	}
}
