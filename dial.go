package upgrade

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// connectError marks a failure while a connection was being set up: dial,
// TLS or QUIC handshake, ALPN. No byte of any request went out on it, so
// the next offer may be tried (DESIGN §1 step 5). Upgraded transports dial
// and shake hands themselves so that every such failure carries this mark;
// anything else may have reached the server.
type connectError struct{ err error }

func (e *connectError) Error() string { return e.err.Error() }
func (e *connectError) Unwrap() error { return e.err }

// beforeConnection reports whether err happened before any connection.
func beforeConnection(err error) bool {
	var ce *connectError
	return errors.As(err, &ce)
}

type dialFunc = func(ctx context.Context, network, addr string) (net.Conn, error)

// plainDialer returns the template's TCP dialer, as http.Transport would use it.
func plainDialer(tr *http.Transport) dialFunc {
	if tr.DialContext != nil {
		return tr.DialContext
	}
	//lint:ignore SA1019 inherited as http.Transport itself would use it
	if dial := tr.Dial; dial != nil {
		return func(_ context.Context, network, addr string) (net.Conn, error) { return dial(network, addr) }
	}
	return new(net.Dialer).DialContext
}

// markConnectErrors wraps dial so that its failures carry the mark.
func markConnectErrors(dial dialFunc) dialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := dial(ctx, network, addr)
		if err != nil {
			return nil, &connectError{err}
		}
		return conn, nil
	}
}

// dialTLS dials and runs the TLS handshake itself, rather than leaving it to
// http.Transport, so that a handshake failure is known to come first. A
// server that does not agree to wantALPN (when set) fails the same way.
func dialTLS(dial dialFunc, cfg *tls.Config, handshakeTimeout time.Duration, wantALPN string) dialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := dial(ctx, network, addr)
		if err != nil {
			return nil, &connectError{err}
		}
		conf := cfg
		if conf.ServerName == "" {
			host, _, _ := net.SplitHostPort(addr)
			conf = cfg.Clone()
			conf.ServerName = host
		}
		if handshakeTimeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, handshakeTimeout)
			defer cancel()
		}
		tc := tls.Client(conn, conf)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, &connectError{err}
		}
		if got := tc.ConnectionState().NegotiatedProtocol; wantALPN != "" && got != wantALPN {
			conn.Close()
			return nil, &connectError{fmt.Errorf("upgrade: server chose ALPN %q, not %q", got, wantALPN)}
		}
		return tc, nil
	}
}

// nextProtos is the ALPN list for protocols over TLS.
func nextProtos(p *http.Protocols) []string {
	var protos []string
	if p.HTTP2() {
		protos = append(protos, "h2")
	}
	if p.HTTP1() {
		protos = append(protos, "http/1.1")
	}
	return protos
}

// protocolsOf returns what tr speaks over TLS, by net/http's own rule for a
// nil Protocols field (Transport.protocols in Go 1.24 and later).
func protocolsOf(tr *http.Transport) *http.Protocols {
	p := new(http.Protocols)
	if tr.Protocols != nil {
		*p = *tr.Protocols
		return p
	}
	p.SetHTTP1(true)
	switch {
	case tr.TLSNextProto != nil:
		// An empty map is net/http's documented way to turn HTTP/2 off.
		_, h2 := tr.TLSNextProto["h2"]
		p.SetHTTP2(h2)
	case tr.ForceAttemptHTTP2:
		p.SetHTTP2(true)
	default:
		//lint:ignore SA1019 net/http's rule reads the deprecated dialers too
		custom := tr.TLSClientConfig != nil || tr.Dial != nil || tr.DialContext != nil || tr.DialTLS != nil || tr.DialTLSContext != nil
		p.SetHTTP2(!custom)
	}
	return p
}

// http3Transport is quic-go's HTTP/3 transport on a UDP socket of its own,
// so that its dial failures can be marked and Close releases the socket.
type http3Transport struct {
	*http3.Transport

	mu   sync.Mutex      // guards quic
	quic *quic.Transport // built on the first dial
}

func (h *http3Transport) dial(ctx context.Context, addr string, tlsCfg *tls.Config, cfg *quic.Config) (*quic.Conn, error) {
	qt, err := h.quicTransport()
	if err != nil {
		return nil, &connectError{err}
	}
	udpAddr, err := resolveUDP(ctx, addr)
	if err != nil {
		return nil, &connectError{err}
	}
	// Dial, not DialEarly: the handshake must be over before a request
	// leaves, so that its failure is known to come first.
	conn, err := qt.Dial(ctx, udpAddr, tlsCfg, cfg)
	if err != nil {
		return nil, &connectError{err}
	}
	return conn, nil
}

func (h *http3Transport) quicTransport() (*quic.Transport, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.quic == nil {
		udp, err := net.ListenUDP("udp", nil)
		if err != nil {
			return nil, err
		}
		h.quic = &quic.Transport{Conn: udp}
	}
	return h.quic, nil
}

// Close closes the HTTP/3 connections, then the QUIC transport and its socket.
func (h *http3Transport) Close() error {
	err := h.Transport.Close()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.quic != nil {
		err = errors.Join(err, h.quic.Close(), h.quic.Conn.Close())
		h.quic = nil
	}
	return err
}

func resolveUDP(ctx context.Context, addr string) (*net.UDPAddr, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	portNum, err := net.DefaultResolver.LookupPort(ctx, "udp", port)
	if err != nil {
		return nil, err
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(portNum))), nil
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, err
	}
	return net.UDPAddrFromAddrPort(netip.AddrPortFrom(ips[0].Unmap(), uint16(portNum))), nil
}
