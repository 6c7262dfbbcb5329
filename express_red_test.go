package upgrade

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/h426/upgrade/internal/testserver"
)

// bothWays runs f once with the express path off (recall alone, as after
// any WithTrace) and once with it on, and fails unless both tell the same.
func bothWays(t *testing.T, f func(t *testing.T) string) {
	t.Helper()
	var got [2]string
	for i, path := range []string{"recall", "express"} {
		t.Run(path, func(t *testing.T) {
			untraced(t)
			if path == "recall" {
				traced.Store(true)
			}
			got[i] = f(t)
		})
	}
	if got[0] != got[1] {
		t.Errorf("the express path changes the outcome:\nrecall:  %s\nexpress: %s", got[0], got[1])
	}
}

// A host that keeps the scheme's default port once after canonicalHost
// dropped it ("h.test:443:443" is remembered as "h.test:443") names a slot
// whose host is not in canonical form: a request to "h.test:443", whose
// origin is "h.test", must not go over that slot's route.
func TestRedExpressHostKeepingADefaultPort(t *testing.T) {
	bothWays(t, func(t *testing.T) string {
		learn := func(r *http.Request) bool { return r.URL.Path != "/learn" || testserver.RequireTLS13(r) }
		s := startServer(t, testserver.Config{TLS: true, Require: learn, Upgrade: []string{"TLS/1.3"}})
		base := legacyBase(t, s.CertPool())
		base.TLSClientConfig.ServerName = "localhost"
		base.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, s.Addr) // every host is the test server
		}
		tr := newTransport(t, base)
		get := func(host, path string) string {
			req := newRequest(t, testContext(t), "GET", "https://placeholder.test"+path, nil)
			req.URL.Host, req.Host = host, host
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			readAll(t, resp)
			return fmt.Sprintf("%d %s TLS %x", resp.StatusCode, resp.Proto, tlsVersion(resp))
		}
		get("h.test:443:443", "/learn") // 426, then TLS 1.3: remembered as https://h.test:443
		get("h.test:443:443", "/")      // over the remembered route, which settles it
		answer := get("h.test:443", "/")
		var mem bytes.Buffer
		tr.ExportMemory(&mem)
		var seen []string
		for _, r := range s.Requests() {
			seen = append(seen, fmt.Sprintf("%s TLS %x", r.Proto, r.TLSVersion))
		}
		return fmt.Sprintf("%s; server saw %s; memory has %d entries", answer, strings.Join(seen, ", "), strings.Count(mem.String(), `"origin"`))
	})
}
