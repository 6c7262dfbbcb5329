package upgrade

import (
	"fmt"
	"strings"
	"testing"

	"github.com/h426/upgrade/internal/testserver"
)

// Host forms that name the remembered origin other than canonically, or
// name another origin, get the same answer and leave the same memory both
// ways.
func TestRedExpressHostForms(t *testing.T) {
	bothWays(t, func(t *testing.T) string {
		s := startServer(t, testserver.Config{TLS: true, Require: testserver.RequireHTTP2, Upgrade: []string{"HTTP/2"}})
		tr := newTransport(t, legacyBase(t, s.CertPool()))
		port := s.Addr[strings.LastIndexByte(s.Addr, ':')+1:]
		base := "https://localhost:" + port
		var out []string
		get := func(url, host string) {
			req := newRequest(t, testContext(t), "GET", url, nil)
			if host != "" {
				req.Host = host
			}
			resp, err := tr.RoundTrip(req)
			if err != nil {
				out = append(out, "error "+err.Error())
				return
			}
			readAll(t, resp)
			out = append(out, fmt.Sprint(resp.StatusCode, " ", resp.Proto))
		}
		get(base, "")                      // learn
		get(base, "")                      // settle
		get("https://LOCALHOST:"+port, "") // upper case
		get(base, "LOCALHOST:"+port)       // Host in upper case
		get(base, "localhost:"+port+"")    // Host as the URL's
		get(base, "other.test")            // another virtual host
		get("HTTPS://localhost:"+port, "") // scheme in upper case (url.Parse lowers it)
		get("https://127.0.0.1:"+port, "") // another origin, learned last
		get(base, "")                      // the first, no longer last
		var mem strings.Builder
		tr.ExportMemory(&mem)
		refused := s.Refused()
		return fmt.Sprintf("%s; refused %d; memory %d", strings.Join(out, ", "), refused,
			strings.Count(mem.String(), `"origin"`))
	})
}
