package upgradetest_test

import (
	"bufio"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/h426/upgrade"
	"github.com/h426/upgrade/upgradetest"
	"go.uber.org/goleak"
)

// TestMain fails the suite if a test leaves a goroutine behind: Close, and
// upgrade.Transport's Close, must take everything with them.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// upgraded sends method to srv.URL+"/path" with body through an
// upgrade.Transport over base (srv.Client()'s transport if nil) and returns
// the response with its body read.
func upgraded(t *testing.T, srv *upgradetest.Server, base http.RoundTripper, method, body string) (*http.Response, string) {
	t.Helper()
	if base == nil {
		base = srv.Client().Transport
	}
	transport := &upgrade.Transport{Base: base}
	t.Cleanup(func() { transport.Close() })
	req, err := http.NewRequestWithContext(t.Context(), method, srv.URL+"/path", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := transport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(got)
}

// check asserts a 200 "ok\n" over proto, and what the server counted.
func check(t *testing.T, srv *upgradetest.Server, resp *http.Response, body, proto string, count, refused int) {
	t.Helper()
	if resp.StatusCode != http.StatusOK || resp.Proto != proto || body != "ok\n" {
		t.Errorf("got %s %s %q, want 200 OK %s \"ok\\n\"", resp.Status, resp.Proto, body, proto)
	}
	if srv.Served(proto) != 1 || srv.Served("") != 1 {
		t.Errorf("Served(%q), Served(\"\") = %d, %d; want 1, 1", proto, srv.Served(proto), srv.Served(""))
	}
	if srv.Count() != count || srv.Refused() != refused || len(srv.Requests()) != count {
		t.Errorf("Count, Refused, len(Requests) = %d, %d, %d; want %d, %d, %d",
			srv.Count(), srv.Refused(), len(srv.Requests()), count, refused, count)
	}
}

// rawHead sends a GET over HTTP/1.1 on a connection of its own and returns
// the response head as it came on the wire.
func rawHead(t *testing.T, srv *upgradetest.Server) string {
	t.Helper()
	conn, err := tls.Dial("tcp", strings.TrimPrefix(srv.URL, "https://"), &tls.Config{
		RootCAs:    srv.CertPool(),
		MaxVersion: tls.VersionTLS12,
		NextProtos: []string{"http/1.1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	var head strings.Builder
	r := bufio.NewReader(conn)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		head.WriteString(line)
		if line == "\r\n" {
			return head.String()
		}
	}
}

func TestNewHTTP2Server(t *testing.T) {
	srv := upgradetest.NewHTTP2Server(nil)
	defer srv.Close()
	if head := rawHead(t, srv); !strings.HasPrefix(head, "HTTP/1.1 426 ") || !strings.Contains(head, "\r\nupgrade: HTTP/2.0\r\n") {
		t.Fatalf("426 head:\n%s\nwant 426 with \"upgrade: HTTP/2.0\" in lower case", head)
	}
	resp, body := upgraded(t, srv, nil, "GET", "")
	check(t, srv, resp, body, "HTTP/2.0", 3, 2) // rawHead's, the first GET, its replay
}

func TestNewH2CServer(t *testing.T) {
	srv := upgradetest.NewH2CServer(nil)
	defer srv.Close()
	resp, body := upgraded(t, srv, nil, "GET", "")
	check(t, srv, resp, body, "HTTP/2.0", 2, 1)
	if r := srv.Requests()[0]; !r.Refused || r.Proto != "HTTP/1.1" || r.TLSVersion != 0 {
		t.Errorf("first request %+v, want refused over HTTP/1.1 in clear", r)
	}
}

func TestNewHTTP3Server(t *testing.T) {
	srv := upgradetest.NewHTTP3Server(nil)
	defer srv.Close()

	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	port := srv.URL[strings.LastIndex(srv.URL, ":")+1:]
	if resp.StatusCode != http.StatusUpgradeRequired || resp.Header.Get("Upgrade") != "HTTP/3" ||
		resp.Header.Get("Alt-Svc") != `h3=":`+port+`"; ma=2592000` {
		t.Fatalf("got %s, Upgrade %q, Alt-Svc %q; want 426 HTTP/3, h3 on port %s",
			resp.Status, resp.Header.Get("Upgrade"), resp.Header.Get("Alt-Svc"), port)
	}

	resp, body := upgraded(t, srv, nil, "GET", "")
	check(t, srv, resp, body, "HTTP/3.0", 3, 2)
	if resp.TLS == nil || resp.TLS.Version != tls.VersionTLS13 {
		t.Errorf("replay's TLS %v, want TLS 1.3", resp.TLS)
	}
}

func TestNewAltSvcServer(t *testing.T) {
	srv := upgradetest.NewAltSvcServer(nil)
	defer srv.Close()
	transport := &upgrade.Transport{Base: srv.Client().Transport}
	defer transport.Close()
	client := &http.Client{Transport: transport}
	var protos []string
	for range 3 {
		resp, err := client.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		protos = append(protos, resp.Proto)
	}
	port := srv.URL[strings.LastIndex(srv.URL, ":")+1:]
	if srv.Requests()[0].Refused || srv.Refused() != 0 {
		t.Errorf("refused %d requests, want none", srv.Refused())
	}
	if fmt.Sprint(protos) != "[HTTP/1.1 HTTP/3.0 HTTP/3.0]" || srv.Served("HTTP/3.0") != 2 || srv.Served("HTTP/1.1") != 1 {
		t.Errorf("requests over %v, served over HTTP/3: %d; want HTTP/1.1 then HTTP/3 (Alt-Svc for port %s)", protos, srv.Served("HTTP/3.0"), port)
	}
}

// Caddy sends the 426 inside HTTP/2 too.
func TestNewHTTP3ServerRefusesHTTP2(t *testing.T) {
	srv := upgradetest.NewHTTP3Server(nil)
	defer srv.Close()
	modern := &http.Transport{ForceAttemptHTTP2: true, TLSClientConfig: &tls.Config{RootCAs: srv.CertPool()}}
	defer modern.CloseIdleConnections()
	resp, body := upgraded(t, srv, modern, "GET", "")
	check(t, srv, resp, body, "HTTP/3.0", 2, 1)
	if r := srv.Requests()[0]; !r.Refused || r.Proto != "HTTP/2.0" {
		t.Errorf("first request %+v, want refused over HTTP/2.0", r)
	}
}

func TestNewTLSServer(t *testing.T) {
	srv := upgradetest.NewTLSServer(tls.VersionTLS13, nil)
	defer srv.Close()
	if head := rawHead(t, srv); !strings.HasPrefix(head, "HTTP/1.1 426 ") || !strings.Contains(head, "\r\nupgrade: TLS/1.3\r\n") {
		t.Fatalf("426 head:\n%s\nwant 426 with \"upgrade: TLS/1.3\" in lower case", head)
	}
	resp, body := upgraded(t, srv, nil, "GET", "")
	check(t, srv, resp, body, "HTTP/1.1", 3, 2)
	reqs := srv.Requests()
	if first, replay := reqs[1], reqs[2]; first.TLSVersion != tls.VersionTLS12 || replay.TLSVersion != tls.VersionTLS13 {
		t.Errorf("TLS versions seen %#x then %#x, want TLS 1.2 then 1.3", first.TLSVersion, replay.TLSVersion)
	}
}

func TestNewTLSServerPanicsOnUnknownVersion(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("NewTLSServer(0x0305, nil) did not panic")
		}
	}()
	srv := upgradetest.NewTLSServer(0x0305, nil)
	srv.Close()
}

func TestNewInbandServer(t *testing.T) {
	srv := upgradetest.NewInbandServer(nil)
	defer srv.Close()
	resp, body := upgraded(t, srv, nil, "GET", "")
	check(t, srv, resp, body, "HTTP/1.1", 3, 1) // GET in clear, OPTIONS *, GET inside TLS
	if resp.TLS == nil || resp.Request.URL.Scheme != "http" {
		t.Errorf("resp.TLS %v for %s, want TLS on the http:// URL", resp.TLS, resp.Request.URL)
	}
	reqs := srv.Requests()
	if o := reqs[1]; o.Method != "OPTIONS" || o.Path != "*" || o.TLSVersion != 0 {
		t.Errorf("second request %+v, want OPTIONS * in clear", o)
	}
	if r := reqs[2]; r.Refused || r.TLSVersion == 0 {
		t.Errorf("third request %+v, want served inside TLS", r)
	}
}

func TestNewTLS13OnlyServer(t *testing.T) {
	srv := upgradetest.NewTLS13OnlyServer(nil)
	defer srv.Close()
	if _, err := srv.Client().Get(srv.URL); err == nil {
		t.Fatal("the client capped at TLS 1.2 got through")
	}
	resp, body := upgraded(t, srv, nil, "GET", "")
	check(t, srv, resp, body, "HTTP/1.1", 1, 0) // the refusal was no request
	if resp.TLS == nil || resp.TLS.Version != tls.VersionTLS13 {
		t.Errorf("TLS %v, want TLS 1.3", resp.TLS)
	}
}

func TestNewHTTP2OnlyServer(t *testing.T) {
	srv := upgradetest.NewHTTP2OnlyServer(nil)
	defer srv.Close()
	if _, err := srv.Client().Get(srv.URL); err == nil {
		t.Fatal("the client offering only http/1.1 got through")
	}
	resp, body := upgraded(t, srv, nil, "GET", "")
	check(t, srv, resp, body, "HTTP/2.0", 1, 0)
}

// A handler of one's own gets the request body, on the replay too, and the
// server records it.
func TestHandlerReadsBody(t *testing.T) {
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(w, r.Body)
	})
	srv := upgradetest.NewHTTP2Server(echo)
	defer srv.Close()
	resp, body := upgraded(t, srv, nil, "POST", "hello, strict server")
	if resp.Proto != "HTTP/2.0" || body != "hello, strict server" {
		t.Errorf("got %s %q, want HTTP/2.0 and the body echoed", resp.Proto, body)
	}
	reqs := srv.Requests()
	if len(reqs) != 2 || !reqs[0].Refused || reqs[0].BodyLen != 0 {
		t.Fatalf("requests %+v, want a refused one with no body read, then the replay", reqs)
	}
	if r := reqs[1]; r.Method != "POST" || r.Path != "/path" || r.BodyLen != 20 || r.BodySHA256 != sha256.Sum256([]byte(body)) {
		t.Errorf("replay recorded as %s %s, %d bytes; want POST /path, 20 bytes and their SHA-256", r.Method, r.Path, r.BodyLen)
	}
}

func TestNewServer(t *testing.T) {
	srv := upgradetest.NewServer(upgradetest.Config{
		Require: func(r *http.Request) bool { return r.ProtoMajor == 2 },
		Upgrade: []string{"websocket, h2c"},
	})
	defer srv.Close()
	resp, body := upgraded(t, srv, nil, "GET", "")
	check(t, srv, resp, body, "HTTP/2.0", 2, 1)
	if h := srv.Requests()[0].Header; h == nil {
		t.Error("Request.Header is nil")
	}
}

// A server that offers HTTP/2 and cannot speak it: every offer fails.
func TestNewServerHTTP1Only(t *testing.T) {
	srv := upgradetest.NewServer(upgradetest.Config{
		TLS:       true,
		HTTP1Only: true,
		Require:   func(r *http.Request) bool { return r.ProtoMajor == 2 },
		Upgrade:   []string{"HTTP/2"},
	})
	defer srv.Close()
	transport := &upgrade.Transport{Base: srv.Client().Transport}
	defer transport.Close()
	_, err := (&http.Client{Transport: transport}).Get(srv.URL)
	if _, ok := errors.AsType[*upgrade.UpgradeError](err); !ok {
		t.Fatalf("err = %v, want an *upgrade.UpgradeError", err)
	}
}

func TestNewServerPanicsOnHTTP3WithoutTLS(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("NewServer(Config{HTTP3: true}) did not panic")
		}
	}()
	srv := upgradetest.NewServer(upgradetest.Config{HTTP3: true})
	srv.Close()
}

func TestServerClientAndCertificate(t *testing.T) {
	srv := upgradetest.NewHTTP2Server(nil)
	defer srv.Close()
	if first := srv.Client(); srv.Client() != first {
		t.Error("Client returns a new client each call")
	}
	if _, ok := srv.Client().Transport.(*http.Transport); !ok {
		t.Errorf("Client().Transport is %T, want *http.Transport", srv.Client().Transport)
	}
	cert := srv.Certificate()
	if !cert.IsCA {
		t.Error("Certificate is not a CA")
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	conn, err := tls.Dial("tcp", strings.TrimPrefix(srv.URL, "https://"), &tls.Config{RootCAs: roots})
	if err != nil {
		t.Fatalf("a client trusting Certificate: %v", err)
	}
	conn.Close()

	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUpgradeRequired || resp.Proto != "HTTP/1.1" {
		t.Errorf("Client got %s over %s, want 426 over HTTP/1.1", resp.Status, resp.Proto)
	}
	srv.Close()
	srv.Close() // a second Close is harmless
}
