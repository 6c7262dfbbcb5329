package compose_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"sync"
	"testing"

	"github.com/h426/upgrade/internal/testserver"
	"go.uber.org/goleak"
)

// TestMain fails the suite if a test or an example leaves a goroutine behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// strictH2 is a server that refuses anything below HTTP/2 with a 426
// offering HTTP/2.
var strictH2 = testserver.Config{TLS: true, Require: testserver.RequireHTTP2, Upgrade: []string{"HTTP/2"}}

// startServer starts a fresh loopback server that lives as long as the test.
func startServer(t testing.TB, cfg testserver.Config) *testserver.Server {
	t.Helper()
	s, err := testserver.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// legacyBase is the *http.Transport a caller would put under the
// upgrade.Transport: it trusts the server's CA (the only place the roots
// are given) and speaks HTTP/1.1 over TLS 1.2 at most, so a strict server
// refuses it.
func legacyBase(s *testserver.Server) *http.Transport {
	return &http.Transport{
		Protocols: http1Only(),
		TLSClientConfig: &tls.Config{
			RootCAs:    s.CertPool(),
			MaxVersion: tls.VersionTLS12,
		},
	}
}

func http1Only() *http.Protocols {
	p := new(http.Protocols)
	p.SetHTTP1(true)
	return p
}

// verifiedByCA reports whether resp came over TLS whose chain was verified
// up to the server's test CA, which no system pool holds.
func verifiedByCA(t testing.TB, resp *http.Response, s *testserver.Server) bool {
	t.Helper()
	block, _ := pem.Decode(s.CA().PEM())
	if block == nil {
		t.Fatal("test CA: no PEM block")
	}
	ca, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if resp.TLS == nil {
		return false
	}
	for _, chain := range resp.TLS.VerifiedChains {
		if len(chain) > 0 && chain[len(chain)-1].Equal(ca) {
			return true
		}
	}
	return false
}

// readAll reads and closes resp's body.
func readAll(t testing.TB, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// connectProxy is an http:// proxy on loopback that tunnels CONNECT
// requests and records where each tunnel went (after the root package's
// startConnectProxy).
type connectProxy struct {
	url *url.URL

	mu      sync.Mutex // guards tunnels and conns
	tunnels []string   // the CONNECT targets, in order
	conns   []net.Conn
	wg      sync.WaitGroup
}

func startConnectProxy(t testing.TB) *connectProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &connectProxy{url: &url.URL{Scheme: "http", Host: ln.Addr().String()}}
	srv := &http.Server{Handler: p, ErrorLog: log.New(io.Discard, "", 0)}
	p.wg.Add(1)
	go func() { defer p.wg.Done(); srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

// Tunnels returns the CONNECT targets seen so far.
func (p *connectProxy) Tunnels() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.tunnels...)
}

func (p *connectProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodConnect {
		http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
		return
	}
	upstream, err := net.Dial("tcp", r.Host)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	client, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		upstream.Close()
		return
	}
	p.mu.Lock()
	p.tunnels = append(p.tunnels, r.Host)
	p.conns = append(p.conns, client, upstream)
	p.mu.Unlock()
	io.WriteString(client, "HTTP/1.1 200 Connection established\r\n\r\n")
	p.wg.Add(2)
	pipe := func(dst, src net.Conn) {
		defer p.wg.Done()
		io.Copy(dst, src)
		dst.Close()
		src.Close()
	}
	go pipe(upstream, client)
	go pipe(client, upstream)
}

// onlyTo is a dialer that connects to addr and refuses every other
// address, recording each address asked for: a Base with it can reach
// nothing but its proxy.
type onlyTo struct {
	addr string

	mu    sync.Mutex
	dials []string
}

func (d *onlyTo) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	d.mu.Lock()
	d.dials = append(d.dials, addr)
	d.mu.Unlock()
	if addr != d.addr {
		return nil, &net.OpError{Op: "dial", Net: network, Err: errRefusedDial}
	}
	return new(net.Dialer).DialContext(ctx, network, addr)
}

func (d *onlyTo) Dials() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.dials...)
}

var errRefusedDial = errors.New("dial refused: only the proxy may be dialed")

// body returns n bytes that differ from one position to the next.
func body(n int) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		b.WriteByte(byte(i*7 + i/251))
	}
	return b.Bytes()
}
