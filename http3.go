package upgrade

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// http3Transport is quic-go's HTTP/3 transport on a UDP socket of its own,
// so that its dial failures carry the connectError mark and Close releases
// the socket. quic-go's Close cuts every connection at once, so Close here
// waits for the responses still being read before it calls it.
type http3Transport struct {
	*http3.Transport

	mu      sync.Mutex      // guards the fields below
	quic    *quic.Transport // built on the first dial
	active  int             // requests whose response is not closed yet
	closing bool            // Close was called; shut down when active is 0
}

// newHTTP3 builds the HTTP/3 transport. QUIC has its own sockets, so only
// the TLS settings and response limits carry over from the template.
func (t *Transport) newHTTP3() *http3Transport {
	// Clone, not TLSClientConfig.Clone: it first runs net/http's one-time
	// setup, which writes the template's TLS config, so no read races it.
	template := t.template().Clone()
	h := &http3Transport{}
	h.Transport = &http3.Transport{
		TLSClientConfig: t.tlsConfig(template.TLSClientConfig, tls.VersionTLS13), // QUIC runs TLS 1.3 only
		QUICConfig: &quic.Config{
			HandshakeIdleTimeout: t.http3HandshakeTimeout(),
			// As http3's defaults: no server-opened streams, keep-alives.
			MaxIncomingStreams: -1,
			KeepAlivePeriod:    10 * time.Second,
		},
		Dial:                   h.dial,
		DisableCompression:     template.DisableCompression,
		MaxResponseHeaderBytes: int(template.MaxResponseHeaderBytes),
	}
	return h
}

func (h *http3Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	h.mu.Lock()
	if h.closing {
		h.mu.Unlock()
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, ErrClosed
	}
	h.active++
	h.mu.Unlock()
	if req.Body != nil && req.Body != http.NoBody {
		// quic-go v0.65.0 closes the body twice when a request fails after
		// its body began: in RoundTripOpt on the error, and when it stops
		// sending. The body may be the caller's, owed exactly one Close.
		req = req.WithContext(req.Context()) // a shallow copy: req may be the caller's
		req.Body = &closeOnceBody{ReadCloser: req.Body}
	}
	resp, err := h.Transport.RoundTrip(req)
	if err != nil {
		h.requestDone()
		return nil, err
	}
	resp.Body = &h3Response{body: resp.Body, h: h}
	return resp, nil
}

// h3Response is a response body that tells its transport when the
// response is done, exactly once: when a Read returns an error or io.EOF
// (a body read to its end and never closed, typical of HEAD, must not keep
// Close from releasing the transport), or when it is closed.
type h3Response struct {
	body io.ReadCloser
	h    *http3Transport
	done atomic.Bool
}

func (r *h3Response) Read(p []byte) (int, error) {
	n, err := r.body.Read(p)
	if err != nil {
		r.finish()
	}
	return n, err
}

func (r *h3Response) Close() error {
	err := r.body.Close()
	r.finish()
	return err
}

func (r *h3Response) finish() {
	if r.done.CompareAndSwap(false, true) {
		r.h.requestDone()
	}
}

// requestDone is called once per request: when its response is done (see
// h3Response), or when the request failed.
func (h *http3Transport) requestDone() {
	h.mu.Lock()
	h.active--
	last := h.closing && h.active == 0
	h.mu.Unlock()
	if last {
		h.shutdown()
	}
}

// CloseIdleConnections closes the idle HTTP/3 connections, but only when no
// response is being read: quic-go counts a connection idle once RoundTrip
// has returned, and closing it would cut the response body.
func (h *http3Transport) CloseIdleConnections() {
	h.mu.Lock()
	busy := h.active > 0
	h.mu.Unlock()
	if !busy {
		h.Transport.CloseIdleConnections()
	}
}

// Close shuts down now if no response is being read, otherwise when the
// last one is closed: the connections, then the QUIC transport and socket.
func (h *http3Transport) Close() error {
	h.mu.Lock()
	h.closing = true
	idle := h.active == 0
	h.mu.Unlock()
	if !idle {
		return nil
	}
	return h.shutdown()
}

func (h *http3Transport) shutdown() error {
	err := h.Transport.Close()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.quic != nil {
		err = errors.Join(err, h.quic.Close(), h.quic.Conn.Close())
		h.quic = nil
	}
	return err
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
	if h.closing && h.active == 0 {
		return nil, ErrClosed
	}
	if h.quic == nil {
		udp, err := net.ListenUDP("udp", nil)
		if err != nil {
			return nil, err
		}
		h.quic = &quic.Transport{Conn: udp}
	}
	return h.quic, nil
}

// closeOnceBody passes on the first Close only.
type closeOnceBody struct {
	io.ReadCloser
	once sync.Once
	err  error
}

func (b *closeOnceBody) Close() error {
	b.once.Do(func() { b.err = b.ReadCloser.Close() })
	return b.err
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
