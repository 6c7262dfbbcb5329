package upgrade

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/h426/upgrade/internal/testserver"
	"go.uber.org/goleak"
)

// TestMain fails the suite if a test leaves a goroutine behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// Time bounds for a loaded machine: CI runs this suite on two cores beside
// other work, under -race. A test may bound time, but what it expects to
// succeed gets far more than it needs, so that a busy machine is slow, not
// red; a wait that succeeds ends at once, whatever its bound.
const (
	// patience bounds a request, or a wait for something, that must succeed.
	patience = time.Minute
	// promptly is how long a call may take that must end "at once" (at a
	// deadline, a cancel, a drain bound): well below the bounds that would
	// end it otherwise (patience, in-band TLS's 10 s, quicSetup).
	promptly = 5 * time.Second
	// quicSetup is the HTTP3HandshakeTimeout of tests that do not test that
	// bound: a QUIC handshake starved of CPU is slow, not a broken network.
	quicSetup = 30 * time.Second
)

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

// upgradePair is a strict server and what a legacy client (legacyBase) is
// upgraded to there.
type upgradePair struct {
	name      string
	kind      targetKind // what the replay goes over
	server    testserver.Config
	wantProto string // the replay's resp.Proto
	wantTLS   uint16 // the least TLS version of the replay; 0 in clear
}

// upgradePairs has one row per kind of target, from the protocol a legacy
// client speaks to the one the server demands.
var upgradePairs = []upgradePair{
	{"h1 to h2", targetHTTP2, testserver.Config{TLS: true, Require: testserver.RequireHTTP2, Upgrade: []string{"HTTP/2"}}, "HTTP/2.0", tls.VersionTLS12},
	{"h1 to h2c", targetH2C, testserver.Config{Require: testserver.RequireHTTP2, Upgrade: []string{"h2c"}}, "HTTP/2.0", 0},
	{"TLS 1.2 to 1.3", targetTLS, testserver.Config{TLS: true, Require: testserver.RequireTLS13, Upgrade: []string{"TLS/1.3"}}, "HTTP/1.1", tls.VersionTLS13},
	{"h1 to h3", targetHTTP3, testserver.Config{TLS: true, HTTP3: true, Require: testserver.RequireHTTP3, Upgrade: []string{"HTTP/3"}}, "HTTP/3.0", tls.VersionTLS13},
	{"plain to in-band TLS", targetInbandTLS, testserver.Config{InbandTLS: testserver.InbandRFC2817, Require: testserver.RequireTLS, Upgrade: []string{"TLS/1.2"}}, "HTTP/1.1", tls.VersionTLS12},
}

// forEachPair runs f as a subtest over every upgrade pair, or over those
// whose kind is in only.
func forEachPair(t *testing.T, f func(t *testing.T, p upgradePair), only ...targetKind) {
	t.Helper()
	for _, p := range upgradePairs {
		if len(only) > 0 && !slices.Contains(only, p.kind) {
			continue
		}
		t.Run(p.name, func(t *testing.T) { f(t, p) })
	}
}

// legacyBase is a client that speaks HTTP/1.1 only, with TLS 1.2 at most:
// what strict servers answer with 426.
func legacyBase(t testing.TB, roots *x509.CertPool) *http.Transport {
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	base := &http.Transport{
		Protocols:       protocols,
		TLSClientConfig: &tls.Config{RootCAs: roots, MaxVersion: tls.VersionTLS12},
	}
	t.Cleanup(base.CloseIdleConnections)
	return base
}

// newTransport wraps base and closes the result when the test ends. Its
// HTTP/3 setup bound is quicSetup; tests of that bound set their own.
func newTransport(t testing.TB, base http.RoundTripper) *Transport {
	tr := &Transport{Base: base, HTTP3HandshakeTimeout: quicSetup}
	if recallOnly {
		tr.CheckUpgrade = DefaultCheckUpgrade
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

// recallOnly makes newTransport's Transports keep remembered routes off
// the express path (bothWays). Tests run one at a time.
var recallOnly bool

// testContext bounds every request a test makes.
func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), patience)
	t.Cleanup(cancel)
	return ctx
}

func newRequest(t testing.TB, ctx context.Context, method, url string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// readAll reads and closes resp's body.
func readAll(t testing.TB, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	return string(b)
}

// drain reads and closes resp's body, for goroutines other than the
// test's, which must not call readAll's t.Fatalf.
func drain(resp *http.Response) error {
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return fmt.Errorf("reading body: %w", err)
	}
	return nil
}

// recorder is a Trace that keeps what it was told.
type recorder struct {
	mu       sync.Mutex // guards the fields below
	got426   []Got426Info
	decided  []DecisionInfo
	started  []Protocol
	finished []ReplayDoneInfo
}

func (r *recorder) trace() *Trace {
	return &Trace{
		Got426:      func(i Got426Info) { r.mu.Lock(); r.got426 = append(r.got426, i); r.mu.Unlock() },
		Decided:     func(i DecisionInfo) { r.mu.Lock(); r.decided = append(r.decided, i); r.mu.Unlock() },
		ReplayStart: func(p Protocol) { r.mu.Lock(); r.started = append(r.started, p); r.mu.Unlock() },
		ReplayDone:  func(i ReplayDoneInfo) { r.mu.Lock(); r.finished = append(r.finished, i); r.mu.Unlock() },
	}
}

// reason returns the single decision's reason.
func (r *recorder) reason(t testing.TB) error {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.decided) != 1 {
		t.Fatalf("%d decisions traced, want 1", len(r.decided))
	}
	return r.decided[0].Reason
}

// errorCap reports the failures of many requests, from any goroutine: the
// first few as they come, then, when the test ends, one line with how many
// more there were. A herd that fails as a whole says so in a few lines,
// not in a thousand.
type errorCap struct {
	t testing.TB

	mu    sync.Mutex // guards the fields below
	first string     // the first failure, to name the kind in the summary
	shown int
	more  int
}

// errorsShown is how many failures an errorCap reports in full.
const errorsShown = 5

func capErrors(t testing.TB) *errorCap {
	c := &errorCap{t: t}
	t.Cleanup(func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.more > 0 {
			t.Errorf("… and %d more failures (%d in all), the first: %s", c.more, c.shown+c.more, c.first)
		}
	})
	return c
}

func (c *errorCap) Errorf(format string, args ...any) {
	c.t.Helper()
	c.Error(fmt.Sprintf(format, args...))
}

func (c *errorCap) Error(args ...any) {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.shown == errorsShown {
		c.more++
		return
	}
	if c.shown == 0 {
		c.first = fmt.Sprint(args...)
	}
	c.shown++
	c.t.Error(args...)
}

// countingBody is a request body without GetBody that counts its Closes.
type countingBody struct {
	r      io.Reader
	closes atomic.Int32
}

func (b *countingBody) Read(p []byte) (int, error) { return b.r.Read(p) }
func (b *countingBody) Close() error               { b.closes.Add(1); return nil }

// waitCloses waits for the transports' writer goroutines to close b, then
// checks it was closed exactly once.
func (b *countingBody) waitCloses(t testing.TB) {
	t.Helper()
	waitClosedOnce(t, &b.closes, "request body")
}

// waitClosedOnce waits until closes is not zero, then checks it is one.
func waitClosedOnce(t testing.TB, closes *atomic.Int32, what string) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for closes.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n := closes.Load(); n != 1 {
		t.Errorf("%s closed %d times, want 1", what, n)
	}
}

// connCounter dials through net.Dialer and counts the connections still open.
type connCounter struct {
	conns openConns // the library's own count, as Close relies on it
	total atomic.Int32
}

// dialed returns how many connections were dialed in all.
func (c *connCounter) dialed() int32 { return c.total.Load() }

// open returns how many are open, or being dialed.
func (c *connCounter) open() int32 { return c.conns.n.Load() }

func (c *connCounter) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	conn, err := c.conns.counting(new(net.Dialer).DialContext)(ctx, network, addr)
	if err == nil {
		c.total.Add(1)
	}
	return conn, err
}

// waitAllClosed waits for every counted connection to be closed.
func (c *connCounter) waitAllClosed(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for c.open() != 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n := c.open(); n != 0 {
		t.Errorf("%d client connections still open", n)
	}
}

// connectProxy is an HTTP proxy on loopback that tunnels CONNECT requests.
type connectProxy struct {
	url     *url.URL
	tunnels atomic.Int32

	mu    sync.Mutex // guards conns
	conns []net.Conn
	wg    sync.WaitGroup
}

// startConnectProxy starts an http:// proxy, or with cfg an https:// one.
func startConnectProxy(t testing.TB, cfg *tls.Config) *connectProxy {
	p := &connectProxy{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.url = &url.URL{Scheme: "http", Host: ln.Addr().String()}
	if cfg != nil {
		ln = tls.NewListener(ln, cfg)
		p.url.Scheme = "https"
	}
	srv := &http.Server{Handler: p, ErrorLog: log.New(io.Discard, "", 0)}
	p.wg.Add(1)
	go func() { defer p.wg.Done(); srv.Serve(ln) }()
	t.Cleanup(func() { p.close(srv) })
	return p
}

// close stops the proxy and every tunnel, and waits for their goroutines.
func (p *connectProxy) close(srv *http.Server) {
	srv.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
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
	p.tunnels.Add(1)
	p.mu.Lock()
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

type rtFunc func(*http.Request) (*http.Response, error)

func (f rtFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// remember imports a memory entry saying origin answered over protocol,
// far from expiring, as a process that starts warm would.
func remember(t testing.TB, tr *Transport, origin, protocol string) {
	t.Helper()
	file := `{"version":1,"entries":[{"origin":"` + origin + `","protocol":"` + protocol + `","expires":"2999-01-01T00:00:00Z"}]}`
	if n, _, err := tr.ImportMemory(strings.NewReader(file)); n != 1 || err != nil {
		t.Fatalf("imported %d entries of %s: %v", n, file, err)
	}
}

// getAs sends a GET for url with the Host header host (the URL's when
// empty) and reads the response.
func getAs(t testing.TB, tr *Transport, url, host string) *http.Response {
	t.Helper()
	req := newRequest(t, testContext(t), "GET", url, nil)
	req.Host = host
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	return resp
}

// heldResponse writes "o", flushes, and finishes with "k\n" once release
// is closed: a response still being read while a test acts.
func heldResponse(release <-chan struct{}) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "o")
		w.(http.Flusher).Flush()
		<-release
		io.WriteString(w, "k\n")
	})
}
