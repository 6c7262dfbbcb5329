package testserver

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// client says how a test client talks to a server.
type client struct {
	http1, http2, h2c bool   // protocols offered over TCP
	http3             bool   // HTTP/3 over QUIC only, through http3.Transport
	maxTLS            uint16 // 0: crypto/tls default
	cert              *tls.Certificate
	roots             *x509.CertPool // nil: the server's CA
	quic              *quic.Config   // for http3; nil: quic-go's defaults
}

var (
	h1Client  = client{http1: true}
	h2Client  = client{http2: true}
	h2cClient = client{h2c: true}
	h3Client  = client{http3: true}
	tls12     = client{http1: true, http2: true, maxTLS: tls.VersionTLS12}
	tls13     = client{http1: true, http2: true}
)

// start starts a server for cfg, closed when the test ends.
func start(t *testing.T, cfg Config) *Server {
	t.Helper()
	s, err := Start(cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// newClient returns an http.Client for s, its connections closed when the
// test ends.
func newClient(t *testing.T, s *Server, c client) *http.Client {
	t.Helper()
	roots := c.roots
	if roots == nil {
		roots = s.CertPool()
	}
	var certs []tls.Certificate
	if c.cert != nil {
		certs = []tls.Certificate{*c.cert}
	}
	if c.http3 {
		tr := &http3.Transport{
			TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: certs},
			QUICConfig:      c.quic,
		}
		t.Cleanup(func() { tr.Close() })
		return &http.Client{Transport: tr, Timeout: 30 * time.Second}
	}
	var p http.Protocols
	p.SetHTTP1(c.http1)
	p.SetHTTP2(c.http2)
	p.SetUnencryptedHTTP2(c.h2c)
	tr := &http.Transport{
		Protocols: &p,
		TLSClientConfig: &tls.Config{
			RootCAs:      roots,
			Certificates: certs,
			MaxVersion:   c.maxTLS,
		},
		// Long enough that a body behind "Expect: 100-continue" is only
		// sent if the server asks for it.
		ExpectContinueTimeout: time.Minute,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// response is what a client got back.
type response struct {
	status int
	proto  string
	header http.Header
	body   string
}

func do(c *http.Client, req *http.Request) (response, error) {
	resp, err := c.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, err
	}
	return response{status: resp.StatusCode, proto: resp.Proto, header: resp.Header, body: string(body)}, nil
}

func get(c *http.Client, url string) (response, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return response{}, err
	}
	return do(c, req)
}

// onlyRequest returns the single request s has seen.
func onlyRequest(t *testing.T, s *Server) Request {
	t.Helper()
	seen := s.Requests()
	if len(seen) != 1 {
		t.Fatalf("server saw %d requests, want 1", len(seen))
	}
	return seen[0]
}

func TestProtocols(t *testing.T) {
	tests := []struct {
		name      string
		cfg       Config
		client    client
		wantProto string
		wantTLS   uint16
		wantALPN  string
	}{
		{name: "TLS speaks HTTP/2", cfg: Config{TLS: true}, client: h2Client,
			wantProto: "HTTP/2.0", wantTLS: tls.VersionTLS13, wantALPN: "h2"},
		{name: "TLS speaks HTTP/1.1", cfg: Config{TLS: true}, client: h1Client,
			wantProto: "HTTP/1.1", wantTLS: tls.VersionTLS13}, // an HTTP/1-only Go client sends no ALPN
		{name: "TLS HTTP1Only answers an HTTP/2-capable client in HTTP/1.1", cfg: Config{TLS: true, HTTP1Only: true}, client: tls13,
			wantProto: "HTTP/1.1", wantTLS: tls.VersionTLS13, wantALPN: "http/1.1"},
		{name: "TLS capped at 1.2", cfg: Config{TLS: true, MaxTLSVersion: tls.VersionTLS12}, client: h2Client,
			wantProto: "HTTP/2.0", wantTLS: tls.VersionTLS12, wantALPN: "h2"},
		{name: "HTTP3 speaks HTTP/3 on the UDP port", cfg: Config{TLS: true, HTTP3: true}, client: h3Client,
			wantProto: "HTTP/3.0", wantTLS: tls.VersionTLS13, wantALPN: "h3"},
		{name: "HTTP3 still speaks HTTP/2 on the TCP port", cfg: Config{TLS: true, HTTP3: true}, client: h2Client,
			wantProto: "HTTP/2.0", wantTLS: tls.VersionTLS13, wantALPN: "h2"},
		{name: "HTTP3 speaks TLS 1.3 when TCP is capped at 1.2", cfg: Config{TLS: true, HTTP3: true, MaxTLSVersion: tls.VersionTLS12}, client: h3Client,
			wantProto: "HTTP/3.0", wantTLS: tls.VersionTLS13, wantALPN: "h3"},
		{name: "HTTP3 with HTTP1Only speaks HTTP/3", cfg: Config{TLS: true, HTTP3: true, HTTP1Only: true}, client: h3Client,
			wantProto: "HTTP/3.0", wantTLS: tls.VersionTLS13, wantALPN: "h3"},
		{name: "clear speaks h2c with prior knowledge", cfg: Config{}, client: h2cClient,
			wantProto: "HTTP/2.0"},
		{name: "clear speaks HTTP/1.1", cfg: Config{}, client: h1Client,
			wantProto: "HTTP/1.1"},
		{name: "clear HTTP1Only speaks HTTP/1.1", cfg: Config{HTTP1Only: true}, client: h1Client,
			wantProto: "HTTP/1.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := start(t, tt.cfg)
			scheme := "http://"
			if tt.cfg.TLS {
				scheme = "https://"
			}
			if want := scheme + s.Addr; s.URL != want {
				t.Errorf("URL = %q, want %q", s.URL, want)
			}
			if host, _, _ := net.SplitHostPort(s.Addr); host != "127.0.0.1" {
				t.Errorf("Addr = %q, want a port on 127.0.0.1", s.Addr)
			}

			resp, err := get(newClient(t, s, tt.client), s.URL+"/hello")
			if err != nil {
				t.Fatal(err)
			}
			if resp.status != http.StatusOK || resp.body != "ok\n" || resp.proto != tt.wantProto {
				t.Errorf("got %d %s %q, want 200 %s \"ok\\n\"", resp.status, resp.proto, resp.body, tt.wantProto)
			}
			got := onlyRequest(t, s)
			if got.Proto != tt.wantProto || got.TLSVersion != tt.wantTLS || got.ALPN != tt.wantALPN {
				t.Errorf("server saw %s TLS %#x ALPN %q, want %s TLS %#x ALPN %q",
					got.Proto, got.TLSVersion, got.ALPN, tt.wantProto, tt.wantTLS, tt.wantALPN)
			}
			if got.Method != http.MethodGet || got.Path != "/hello" || got.Host != s.Addr || got.Refused {
				t.Errorf("server saw %+v, want a served GET /hello for %s", got, s.Addr)
			}
		})
	}
}

// TestHTTP1OnlyRefusesHTTP2 checks that a server told to speak HTTP/1.1 does
// not answer a client that speaks only HTTP/2.
func TestHTTP1OnlyRefusesHTTP2(t *testing.T) {
	tests := []struct {
		name   string
		cfg    Config
		client client
	}{
		{name: "no h2 in ALPN", cfg: Config{TLS: true, HTTP1Only: true}, client: h2Client},
		{name: "no h2c in clear", cfg: Config{HTTP1Only: true}, client: h2cClient},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := start(t, tt.cfg)
			resp, err := get(newClient(t, s, tt.client), s.URL)
			if err == nil && resp.status == http.StatusOK {
				t.Fatalf("HTTP/2-only client got %d %s, want a failure", resp.status, resp.proto)
			}
			if n := s.Count(); n != 0 {
				t.Errorf("Count = %d, want 0", n)
			}
		})
	}
}

func TestRequirements(t *testing.T) {
	refuseTeapot := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Upgrade", "h2c, garbage")
		w.WriteHeader(http.StatusTeapot)
	})
	tests := []struct {
		name        string
		cfg         Config
		client      client
		wantStatus  int
		wantProto   string
		wantUpgrade []string // header lines, in order
		wantConn    string   // Connection header
	}{
		{name: "RequireHTTP2 refuses HTTP/1.1",
			cfg:    Config{TLS: true, Require: RequireHTTP2, Upgrade: []string{"HTTP/2.0", "h2c, TLS/1.3"}},
			client: h1Client, wantStatus: http.StatusUpgradeRequired, wantProto: "HTTP/1.1",
			wantUpgrade: []string{"HTTP/2.0", "h2c, TLS/1.3"}, wantConn: "Upgrade"},
		{name: "RequireHTTP2 serves HTTP/2",
			cfg:    Config{TLS: true, Require: RequireHTTP2, Upgrade: []string{"HTTP/2.0"}},
			client: h2Client, wantStatus: http.StatusOK, wantProto: "HTTP/2.0"},
		{name: "RequireHTTP2 in clear refuses HTTP/1.1",
			cfg:    Config{Require: RequireHTTP2, Upgrade: []string{"h2c"}},
			client: h1Client, wantStatus: http.StatusUpgradeRequired, wantProto: "HTTP/1.1",
			wantUpgrade: []string{"h2c"}, wantConn: "Upgrade"},
		{name: "RequireHTTP2 in clear serves h2c",
			cfg:    Config{Require: RequireHTTP2, Upgrade: []string{"h2c"}},
			client: h2cClient, wantStatus: http.StatusOK, wantProto: "HTTP/2.0"},
		{name: "RequireTLS13 refuses TLS 1.2",
			cfg:    Config{TLS: true, Require: RequireTLS13, Upgrade: []string{"TLS/1.3"}},
			client: tls12, wantStatus: http.StatusUpgradeRequired, wantProto: "HTTP/2.0",
			wantUpgrade: []string{"TLS/1.3"}},
		{name: "RequireTLS13 serves TLS 1.3",
			cfg:    Config{TLS: true, Require: RequireTLS13, Upgrade: []string{"TLS/1.3"}},
			client: tls13, wantStatus: http.StatusOK, wantProto: "HTTP/2.0"},
		{name: "RequireTLS refuses clear",
			cfg:    Config{Require: RequireTLS, Upgrade: []string{"TLS/1.2"}},
			client: h1Client, wantStatus: http.StatusUpgradeRequired, wantProto: "HTTP/1.1",
			wantUpgrade: []string{"TLS/1.2"}, wantConn: "Upgrade"},
		{name: "RequireTLS serves TLS",
			cfg:    Config{TLS: true, Require: RequireTLS},
			client: h1Client, wantStatus: http.StatusOK, wantProto: "HTTP/1.1"},
		{name: "RequireHTTP3 refuses HTTP/1.1",
			cfg:    Config{TLS: true, HTTP3: true, Require: RequireHTTP3, Upgrade: []string{"h3"}},
			client: h1Client, wantStatus: http.StatusUpgradeRequired, wantProto: "HTTP/1.1",
			wantUpgrade: []string{"h3"}, wantConn: "Upgrade"},
		{name: "RequireHTTP3 refuses HTTP/2 without Connection",
			cfg:    Config{TLS: true, HTTP3: true, Require: RequireHTTP3, Upgrade: []string{"HTTP/3", "h3"}},
			client: h2Client, wantStatus: http.StatusUpgradeRequired, wantProto: "HTTP/2.0",
			wantUpgrade: []string{"HTTP/3", "h3"}},
		{name: "RequireHTTP3 serves HTTP/3",
			cfg:    Config{TLS: true, HTTP3: true, Require: RequireHTTP3, Upgrade: []string{"h3"}},
			client: h3Client, wantStatus: http.StatusOK, wantProto: "HTTP/3.0"},
		{name: "RequireHTTP2 serves HTTP/3",
			cfg:    Config{TLS: true, HTTP3: true, Require: RequireHTTP2, Upgrade: []string{"h2"}},
			client: h3Client, wantStatus: http.StatusOK, wantProto: "HTTP/3.0"},
		{name: "RefuseAll refuses HTTP/3 without Upgrade or Connection",
			cfg:    Config{TLS: true, HTTP3: true, Require: RefuseAll, Upgrade: []string{"h3", "h2"}},
			client: h3Client, wantStatus: http.StatusUpgradeRequired, wantProto: "HTTP/3.0"},
		{name: "RefuseAll refuses HTTP/2 without Connection",
			cfg:    Config{TLS: true, Require: RefuseAll, Upgrade: []string{"h2c"}},
			client: h2Client, wantStatus: http.StatusUpgradeRequired, wantProto: "HTTP/2.0",
			wantUpgrade: []string{"h2c"}},
		{name: "RefuseAll without Upgrade lines",
			cfg:    Config{Require: RefuseAll},
			client: h1Client, wantStatus: http.StatusUpgradeRequired, wantProto: "HTTP/1.1"},
		{name: "Refuse replaces the default refusal",
			cfg:    Config{Require: RefuseAll, Upgrade: []string{"ignored"}, Refuse: refuseTeapot},
			client: h1Client, wantStatus: http.StatusTeapot, wantProto: "HTTP/1.1",
			wantUpgrade: []string{"h2c, garbage"}},
		{name: "no Require serves everything",
			cfg:    Config{Upgrade: []string{"h2c"}},
			client: h1Client, wantStatus: http.StatusOK, wantProto: "HTTP/1.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := start(t, tt.cfg)
			resp, err := get(newClient(t, s, tt.client), s.URL)
			if err != nil {
				t.Fatal(err)
			}
			if resp.status != tt.wantStatus || resp.proto != tt.wantProto {
				t.Errorf("got %d %s, want %d %s", resp.status, resp.proto, tt.wantStatus, tt.wantProto)
			}
			wantRefused := tt.wantStatus != http.StatusOK
			if wantRefused {
				if got := resp.header.Values("Upgrade"); !slices.Equal(got, tt.wantUpgrade) {
					t.Errorf("Upgrade = %q, want %q", got, tt.wantUpgrade)
				}
				if got := resp.header.Get("Connection"); got != tt.wantConn {
					t.Errorf("Connection = %q, want %q", got, tt.wantConn)
				}
			}
			if resp.status == http.StatusUpgradeRequired && resp.body != "426 upgrade required\n" {
				t.Errorf("body = %q, want the default refusal", resp.body)
			}

			got := onlyRequest(t, s)
			if got.Refused != wantRefused {
				t.Errorf("Request.Refused = %v, want %v", got.Refused, wantRefused)
			}
			if want := map[bool]int{false: 0, true: 1}[wantRefused]; s.Refused() != want || s.Count() != 1 {
				t.Errorf("Refused, Count = %d, %d; want %d, 1", s.Refused(), s.Count(), want)
			}
		})
	}
}

func TestRecordsBody(t *testing.T) {
	body := make([]byte, 3<<20+17)
	for i := range body {
		body[i] = byte(rand.Uint32())
	}
	created := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusCreated)
	})

	tests := []struct {
		name   string
		cfg    Config
		client client
	}{
		{name: "HTTP/1.1", cfg: Config{TLS: true, Handler: created}, client: h1Client},
		{name: "HTTP/2", cfg: Config{TLS: true, Handler: created}, client: h2Client},
		{name: "h2c", cfg: Config{Handler: created}, client: h2cClient},
		{name: "HTTP/3", cfg: Config{TLS: true, HTTP3: true, Handler: created}, client: h3Client},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := start(t, tt.cfg)
			req, err := http.NewRequest(http.MethodPost, s.URL+"/upload?x=1", bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("X-Test", "yes")
			resp, err := do(newClient(t, s, tt.client), req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.status != http.StatusCreated {
				t.Errorf("status = %d, want %d from Config.Handler", resp.status, http.StatusCreated)
			}
			got := onlyRequest(t, s)
			if got.Method != http.MethodPost || got.Path != "/upload" || got.Header.Get("X-Test") != "yes" {
				t.Errorf("server saw %s %s X-Test=%q, want POST /upload X-Test=yes", got.Method, got.Path, got.Header.Get("X-Test"))
			}
			if got.BodyLen != int64(len(body)) || got.BodySHA256 != sha256.Sum256(body) {
				t.Errorf("server saw a body of %d bytes, SHA-256 %x; want %d, %x",
					got.BodyLen, got.BodySHA256, len(body), sha256.Sum256(body))
			}
		})
	}
}

func TestKeepBody(t *testing.T) {
	for _, keep := range []bool{false, true} {
		t.Run(fmt.Sprint("KeepBody=", keep), func(t *testing.T) {
			echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.Copy(w, r.Body)
			})
			s := start(t, Config{TLS: true, Handler: echo, KeepBody: keep})
			req, err := http.NewRequest(http.MethodPost, s.URL, strings.NewReader("hello"))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := do(newClient(t, s, h2Client), req)
			if err != nil {
				t.Fatal(err)
			}
			want := map[bool]string{false: "", true: "hello"}[keep]
			if resp.body != want {
				t.Errorf("handler read %q, want %q", resp.body, want)
			}
			if got := onlyRequest(t, s); got.BodyLen != 5 {
				t.Errorf("BodyLen = %d, want 5", got.BodyLen)
			}
		})
	}
}

// countingReader counts the reads of a request body.
type countingReader struct {
	reads atomic.Int64
	r     io.Reader
}

func (c *countingReader) Read(p []byte) (int, error) {
	c.reads.Add(1)
	return c.r.Read(p)
}

// TestRefusedBodyNotRead checks that a refusal comes before the body: a
// client waiting on "Expect: 100-continue" is never asked for it.
func TestRefusedBodyNotRead(t *testing.T) {
	tests := []struct {
		name   string
		cfg    Config
		client client
	}{
		{name: "HTTP/1.1", cfg: Config{TLS: true, Require: RequireHTTP2, Upgrade: []string{"h2"}}, client: h1Client},
		{name: "HTTP/2", cfg: Config{TLS: true, Require: RequireTLS13}, client: client{http2: true, maxTLS: tls.VersionTLS12}},
		{name: "clear HTTP/1.1", cfg: Config{Require: RequireTLS}, client: h1Client},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := start(t, tt.cfg)
			body := &countingReader{r: strings.NewReader(strings.Repeat("x", 1<<20))}
			req, err := http.NewRequest(http.MethodPut, s.URL+"/big", body)
			if err != nil {
				t.Fatal(err)
			}
			req.ContentLength = 1 << 20
			req.Header.Set("Expect", "100-continue")
			resp, err := do(newClient(t, s, tt.client), req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.status != http.StatusUpgradeRequired {
				t.Errorf("status = %d, want 426", resp.status)
			}
			if n := body.reads.Load(); n != 0 {
				t.Errorf("client body read %d times, want 0", n)
			}
			if got := onlyRequest(t, s); !got.Refused || got.BodyLen != 0 {
				t.Errorf("server saw Refused=%v BodyLen=%d, want true, 0", got.Refused, got.BodyLen)
			}
		})
	}
}

func TestClientCert(t *testing.T) {
	ca, err := NewCA()
	if err != nil {
		t.Fatal(err)
	}
	alice, err := ca.ClientCert("alice")
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewCA()
	if err != nil {
		t.Fatal(err)
	}
	mallory, err := other.ClientCert("mallory")
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		client  client
		http3   bool // the server also speaks HTTP/3
		wantCN  string
		wantErr bool
	}{
		{name: "verified certificate over HTTP/2", client: client{http2: true, cert: &alice}, wantCN: "alice"},
		{name: "verified certificate over TLS 1.2", client: client{http1: true, maxTLS: tls.VersionTLS12, cert: &alice}, wantCN: "alice"},
		{name: "verified certificate over HTTP/3", client: client{http3: true, cert: &alice}, http3: true, wantCN: "alice"},
		{name: "no certificate", client: h2Client, wantErr: true},
		{name: "no certificate over HTTP/3", client: h3Client, http3: true, wantErr: true},
		{name: "certificate from another CA", client: client{http2: true, cert: &mallory}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := start(t, Config{TLS: true, HTTP3: tt.http3, CA: ca, ClientCAs: ca.CertPool()})
			if s.CA() != ca {
				t.Error("CA() is not Config.CA")
			}
			resp, err := get(newClient(t, s, tt.client), s.URL)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("got %d, want a handshake failure", resp.status)
				}
				if n := s.Count(); n != 0 {
					t.Errorf("Count = %d, want 0", n)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := onlyRequest(t, s).ClientCert; got != tt.wantCN {
				t.Errorf("ClientCert = %q, want %q", got, tt.wantCN)
			}
		})
	}
}

func TestTLSVersionBounds(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		client  client
		wantTLS uint16 // 0: the handshake fails
	}{
		{name: "MinTLSVersion 1.3 rejects a 1.2 client", cfg: Config{TLS: true, MinTLSVersion: tls.VersionTLS13}, client: tls12},
		{name: "MinTLSVersion 1.3 accepts a 1.3 client", cfg: Config{TLS: true, MinTLSVersion: tls.VersionTLS13}, client: tls13, wantTLS: tls.VersionTLS13},
		{name: "MaxTLSVersion 1.2 serves a 1.3 client at 1.2", cfg: Config{TLS: true, MaxTLSVersion: tls.VersionTLS12}, client: tls13, wantTLS: tls.VersionTLS12},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := start(t, tt.cfg)
			_, err := get(newClient(t, s, tt.client), s.URL)
			if tt.wantTLS == 0 {
				if err == nil {
					t.Fatal("request succeeded, want a handshake failure")
				}
				if n := s.Count(); n != 0 {
					t.Errorf("Count = %d, want 0", n)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := onlyRequest(t, s).TLSVersion; got != tt.wantTLS {
				t.Errorf("TLSVersion = %#x, want %#x", got, tt.wantTLS)
			}
		})
	}
}

// TestConcurrent sends many requests at once over HTTP/1.1, HTTP/2 and
// HTTP/3 to a server that refuses the HTTP/1.1 ones; run it with -race.
func TestConcurrent(t *testing.T) {
	s := start(t, Config{TLS: true, HTTP3: true, Require: RequireHTTP2, Upgrade: []string{"h2"}})
	clients := []*http.Client{newClient(t, s, h1Client), newClient(t, s, h2Client), newClient(t, s, h3Client)}
	const workers, each = 48, 20 // workers: a multiple of len(clients)

	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Go(func() {
			c := clients[w%len(clients)]
			for i := range each {
				body := fmt.Sprintf("worker %d request %d", w, i)
				req, err := http.NewRequest(http.MethodPost, s.URL, strings.NewReader(body))
				if err != nil {
					errs <- err
					return
				}
				resp, err := do(c, req)
				if err != nil {
					errs <- err
					return
				}
				want := http.StatusOK
				if c == clients[0] {
					want = http.StatusUpgradeRequired
				}
				if resp.status != want {
					errs <- fmt.Errorf("worker %d: status %d, want %d", w, resp.status, want)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	failures := 0
	for err := range errs {
		if failures++; failures <= 5 {
			t.Error(err)
		}
	}
	if failures > 5 {
		t.Errorf("… and %d more failures like those (%d in all)", failures-5, failures)
	}

	if got, want := s.Count(), workers*each; got != want {
		t.Errorf("Count = %d, want %d", got, want)
	}
	if got, want := s.Refused(), workers*each/len(clients); got != want {
		t.Errorf("Refused = %d, want %d", got, want)
	}
	for _, r := range s.Requests() {
		if r.Refused != (r.Proto == "HTTP/1.1") {
			t.Fatalf("%s request recorded Refused=%v", r.Proto, r.Refused)
		}
		if !r.Refused && r.BodyLen == 0 {
			t.Fatalf("served request recorded no body")
		}
	}
}

func TestClose(t *testing.T) {
	t.Run("idempotent", func(t *testing.T) {
		for _, tt := range []struct {
			name   string
			cfg    Config
			client client
		}{
			{"HTTP/2", Config{TLS: true}, h2Client},
			// A client that learns of the close before its next request dials
			// again and, with no answer, waits for the handshake timeout:
			// short, but long enough for the first handshake on a busy machine.
			{"HTTP/3", Config{TLS: true, HTTP3: true},
				client{http3: true, quic: &quic.Config{HandshakeIdleTimeout: 2 * time.Second}}},
		} {
			t.Run(tt.name, func(t *testing.T) {
				s, err := Start(tt.cfg)
				if err != nil {
					t.Fatal(err)
				}
				c := newClient(t, s, tt.client)
				if _, err := get(c, s.URL); err != nil {
					t.Fatal(err)
				}
				for i := range 3 {
					if err := s.Close(); err != nil {
						t.Errorf("Close #%d: %v", i+1, err)
					}
				}
				if _, err := get(c, s.URL); err == nil {
					t.Error("request after Close succeeded")
				}
			})
		}
	})

	// A handler waiting on its request's context returns once Close has
	// closed the connection under it.
	t.Run("active handler", func(t *testing.T) {
		for _, tt := range []struct {
			name   string
			client client
		}{{"HTTP/1.1", h1Client}, {"HTTP/2", h2Client}, {"HTTP/3", h3Client}} {
			t.Run(tt.name, func(t *testing.T) {
				entered := make(chan struct{})
				s, err := Start(Config{TLS: true, HTTP3: true, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					close(entered)
					<-r.Context().Done()
				})})
				if err != nil {
					t.Fatal(err)
				}
				c := newClient(t, s, tt.client)
				failed := make(chan error, 1)
				go func() {
					_, err := get(c, s.URL)
					failed <- err
				}()
				<-entered
				closeWithin(t, s, 10*time.Second)
				if err := <-failed; err == nil {
					t.Error("request cut by Close succeeded")
				}
			})
		}
	})

	// A hostile refusal that hijacks the connection and holds it open is
	// still cut by Close.
	t.Run("hijacked connection", func(t *testing.T) {
		hijacked := make(chan struct{})
		hold := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			close(hijacked)
			io.Copy(io.Discard, conn) // until Close closes conn
		})
		s, err := Start(Config{Require: RefuseAll, Refuse: hold})
		if err != nil {
			t.Fatal(err)
		}
		conn, err := net.Dial("tcp", s.Addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", s.Addr)
		<-hijacked
		closeWithin(t, s, 10*time.Second)
		// The server's end is closed: the client reads EOF, not a response.
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		if line, err := bufio.NewReader(conn).ReadString('\n'); err == nil {
			t.Errorf("read %q from a connection Close should have closed", line)
		}
	})
}

// closeWithin closes s, failing the test if that takes longer than d.
func closeWithin(t *testing.T, s *Server, d time.Duration) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- s.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(d):
		t.Fatalf("Close did not return within %v", d)
	}
}
