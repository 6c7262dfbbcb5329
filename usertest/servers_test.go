package upgradeuser

import (
	"crypto/tls"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/h426/upgrade"
	"github.com/h426/upgrade/upgradetest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Every upgradetest server, met by an upgrade.Transport over the client
// the server hands out: the response comes over the protocol the server
// demands, and the server saw the request there exactly once, with its
// body.
func TestEachServerIsMet(t *testing.T) {
	cases := []struct {
		name  string
		start func(http.Handler) *upgradetest.Server
		proto string // of the response, and of the request the server served
		tls   uint16 // the response's TLS version; 0 in clear
		// requests sent before the one checked: an Alt-Svc is learned
		// from a response, so only the second request goes over HTTP/3.
		before int
	}{
		{"HTTP/2", upgradetest.NewHTTP2Server, "HTTP/2.0", 0, 0},
		{"h2c", upgradetest.NewH2CServer, "HTTP/2.0", 0, 0},
		{"HTTP/3", upgradetest.NewHTTP3Server, "HTTP/3.0", tls.VersionTLS13, 0},
		{"TLS 1.3", func(h http.Handler) *upgradetest.Server { return upgradetest.NewTLSServer(tls.VersionTLS13, h) }, "HTTP/1.1", tls.VersionTLS13, 0},
		{"in-band TLS", upgradetest.NewInbandServer, "HTTP/1.1", tls.VersionTLS12, 0},
		{"TLS 1.3 only, refused in the handshake", upgradetest.NewTLS13OnlyServer, "HTTP/1.1", tls.VersionTLS13, 0},
		{"HTTP/2 only, refused in the handshake", upgradetest.NewHTTP2OnlyServer, "HTTP/2.0", 0, 0},
		{"Alt-Svc", upgradetest.NewAltSvcServer, "HTTP/3.0", tls.VersionTLS13, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := c.start(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				io.WriteString(w, "got "+string(body))
			}))
			defer srv.Close()
			transport := &upgrade.Transport{Base: srv.Client().Transport}
			defer transport.Close()
			client := &http.Client{Transport: transport}

			var resp *http.Response
			for range c.before + 1 {
				var err error
				resp, err = client.Post(srv.URL+"/orders", "text/plain", strings.NewReader("one order"))
				if err != nil {
					t.Fatal(err)
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusOK || string(body) != "got one order" {
					t.Fatalf("%s %q, %v; want 200 \"got one order\"", resp.Status, body, err)
				}
			}
			if resp.Proto != c.proto {
				t.Errorf("response over %s, want %s", resp.Proto, c.proto)
			}
			if c.tls != 0 && (resp.TLS == nil || resp.TLS.Version < c.tls) {
				t.Errorf("response over TLS %v, want %s or later", resp.TLS, tls.VersionName(c.tls))
			}
			if srv.Served(c.proto) != 1 || srv.Served("") != c.before+1 {
				t.Errorf("served %d over %s, %d in all; want 1 and %d", srv.Served(c.proto), c.proto, srv.Served(""), c.before+1)
			}
			var posts int
			for _, r := range srv.Requests() {
				if r.Method == http.MethodPost && !r.Refused {
					posts++
					if r.BodyLen != int64(len("one order")) {
						t.Errorf("a POST over %s arrived with %d body bytes, want %d", r.Proto, r.BodyLen, len("one order"))
					}
				}
			}
			if posts != c.before+1 {
				t.Errorf("%d POSTs served, want %d", posts, c.before+1)
			}
		})
	}
}
