package upgrade

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/h426/upgrade/internal/testserver"
)

// Requests of unusual shapes to a remembered HTTP/2 origin get the same
// answer, and the server sees the same, whether they take the express path
// or recall's.
func TestRedExpressOddRequests(t *testing.T) {
	bothWays(t, func(t *testing.T) string {
		s := startServer(t, testserver.Config{TLS: true, Require: testserver.RequireHTTP2, Upgrade: []string{"HTTP/2"}})
		tr := newTransport(t, legacyBase(t, s.CertPool()))
		for range 2 { // learn, then settle
			resp, err := tr.RoundTrip(newRequest(t, testContext(t), "GET", s.URL, nil))
			if err != nil {
				t.Fatal(err)
			}
			readAll(t, resp)
		}
		body := func(req *http.Request, b string) {
			req.Body = io.NopCloser(strings.NewReader(b))
			req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(b)), nil }
			req.ContentLength = int64(len(b))
		}
		shapes := []struct {
			name string
			make func(req *http.Request) *http.Request
		}{
			{"trailers", func(req *http.Request) *http.Request {
				req.Method = "POST"
				body(req, "with trailers")
				req.ContentLength = -1
				req.Trailer = http.Header{"X-Sum": {"42"}}
				req.Header.Set("Te", "trailers")
				return req
			}},
			{"expect", func(req *http.Request) *http.Request {
				req.Method = "PUT"
				body(req, "expecting")
				req.Header.Set("Expect", "100-continue")
				return req
			}},
			{"nobody", func(req *http.Request) *http.Request {
				req.Method = "POST"
				req.Body = http.NoBody
				return req
			}},
			{"short body", func(req *http.Request) *http.Request {
				req.Method = "POST"
				body(req, "four")
				req.ContentLength = 10
				return req
			}},
			{"long body", func(req *http.Request) *http.Request {
				req.Method = "POST"
				body(req, "longer than declared")
				req.ContentLength = 3
				return req
			}},
			{"canceled", func(req *http.Request) *http.Request {
				ctx, cancel := context.WithCancel(req.Context())
				cancel()
				return req.WithContext(ctx)
			}},
			{"Host as URL", func(req *http.Request) *http.Request {
				req.Host = req.URL.Host
				return req
			}},
			{"empty Host", func(req *http.Request) *http.Request {
				req.Host = ""
				return req
			}},
			{"header case", func(req *http.Request) *http.Request {
				req.Header["x-lower"] = []string{"v"}
				return req
			}},
		}
		var out []string
		for _, sh := range shapes {
			req := sh.make(newRequest(t, testContext(t), "GET", s.URL+"/"+strings.ReplaceAll(sh.name, " ", "-"), nil))
			resp, err := tr.RoundTrip(req)
			if err != nil {
				out = append(out, sh.name+": error "+err.Error())
				continue
			}
			b := readAll(t, resp)
			out = append(out, fmt.Sprintf("%s: %d %s %q", sh.name, resp.StatusCode, resp.Proto, b))
		}
		// A request cut short by an error may reach the server's log late.
		for n := -1; n != s.Count(); time.Sleep(50 * time.Millisecond) {
			n = s.Count()
		}
		var srv []string
		for _, r := range s.Requests()[3:] {
			var names []string
			for k, v := range r.Header {
				names = append(names, k+"="+strings.Join(v, ","))
			}
			sort.Strings(names)
			host := strings.ReplaceAll(r.Host, s.Addr, "ADDR")
			srv = append(srv, fmt.Sprintf("%s %s %s host=%s body=%d refused=%v %v", r.Proto, r.Method, r.Path, host, r.BodyLen, r.Refused, names))
		}
		sort.Strings(srv)
		out = append(out, srv...)
		var mem strings.Builder
		tr.ExportMemory(&mem)
		out = append(out, fmt.Sprintf("broken: %v; memory entries: %d", tr.broken.any(), strings.Count(mem.String(), `"origin"`)))
		return strings.Join(out, "\n")
	})
}
