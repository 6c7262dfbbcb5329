package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/h426/upgrade/internal/testserver"
)

// verboseLines runs the command with -v and returns stderr line by line,
// made comparable: the server's address is ADDR, the Date header DATE, and
// each run of request header lines sorted, since HTTP/2 and HTTP/3 send a
// map's fields in no set order.
func verboseLines(t *testing.T, srv *testserver.Server, args ...string) []string {
	t.Helper()
	code, _, stderr := runCLI(withServer(t, append([]string{"-v"}, args...), srv)...)
	if code != exitOK {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr)
	}
	return normalise(stderr, srv.Addr)
}

func normalise(out, addr string) []string {
	lines := strings.Split(strings.TrimSuffix(strings.ReplaceAll(out, addr, "ADDR"), "\n"), "\n")
	for i, line := range lines {
		if strings.HasPrefix(line, "< Date: ") {
			lines[i] = "< Date: DATE"
		}
	}
	isField := func(line string) bool { return strings.HasPrefix(line, "> ") && strings.Contains(line, ": ") }
	for i := 0; i < len(lines); {
		j := i
		for j < len(lines) && isField(lines[j]) {
			j++
		}
		slices.Sort(lines[i:j])
		i = max(j, i+1)
	}
	return lines
}

// checkLines compares line by line and shows both in full on a difference.
func checkLines(t *testing.T, got, want []string) {
	t.Helper()
	if slices.Equal(got, want) {
		return
	}
	for i := range max(len(got), len(want)) {
		var g, w string
		if i < len(got) {
			g = got[i]
		}
		if i < len(want) {
			w = want[i]
		}
		if g != w {
			t.Errorf("line %d:\n got  %q\n want %q", i+1, g, w)
			break
		}
	}
	t.Errorf("stderr:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
}

// An upgrade to HTTP/3 shows the replay going over QUIC, with TLS 1.3 and
// h3, as an HTTP/3 request; and the 426's header.
func TestVerboseHTTP3(t *testing.T) {
	srv := startServer(t, testserver.Config{TLS: true, HTTP3: true, Require: testserver.RequireHTTP3, Upgrade: []string{"HTTP/3"}})
	got := verboseLines(t, srv, "--legacy", "--cacert", "CA", "URL/path")
	checkLines(t, got, []string{
		"* connected to ADDR (TLS 1.2, ALPN http/1.1)",
		"> GET /path HTTP/1.1",
		"> Accept-Encoding: gzip",
		"> Host: ADDR",
		"> User-Agent: Go-http-client/1.1",
		"< HTTP/1.1 426 Upgrade Required (TLS 1.2)",
		"< Connection: Upgrade",
		"< Content-Length: 21",
		"< Content-Type: text/plain; charset=utf-8",
		"< Date: DATE",
		"< Upgrade: HTTP/3",
		"* offered: HTTP/3",
		"* will try, in order: HTTP/3",
		"* replaying the request over HTTP/3",
		"* connected to ADDR (QUIC, TLS 1.3, ALPN h3)",
		"> GET /path HTTP/3",
		"> accept-encoding: gzip",
		"> user-agent: quic-go HTTP/3",
		"* remembering HTTP/3 for https://ADDR",
		"* HTTP/3: answered over HTTP/3.0 (TLS 1.3)",
		"* final: HTTP/3.0, TLS 1.3, status 200 OK",
	})
}

// An in-band switch to TLS (RFC 2817) shows each step: the OPTIONS, the
// 101, the handshake on the same connection, the OPTIONS answered inside
// TLS, then the request inside TLS.
func TestVerboseInbandTLS(t *testing.T) {
	srv := startServer(t, testserver.Config{
		InbandTLS: testserver.InbandCUPS, Require: testserver.RequireTLS, Upgrade: []string{"TLS/1.2,TLS/1.1,TLS/1.0"},
	})
	got := verboseLines(t, srv, "--legacy", "--cacert", "CA", "URL/jobs")
	checkLines(t, got, []string{
		"* connected to ADDR (cleartext)",
		"> GET /jobs HTTP/1.1",
		"> Accept-Encoding: gzip",
		"> Host: ADDR",
		"> User-Agent: Go-http-client/1.1",
		"< HTTP/1.1 426 Upgrade Required (no TLS)",
		"< Connection: Upgrade",
		"< Content-Length: 21",
		"< Content-Type: text/plain; charset=utf-8",
		"< Date: DATE",
		"< Upgrade: TLS/1.2,TLS/1.1,TLS/1.0",
		"* offered: TLS/1.2, TLS/1.1, TLS/1.0",
		"* skipping TLS/1.1: upgrade: offer would change nothing: same as the earlier offer TLS/1.2",
		"* skipping TLS/1.0: upgrade: offer would change nothing: same as the earlier offer TLS/1.2",
		"* will try, in order: TLS/1.2",
		"* replaying the request over TLS/1.2",
		"* asking ADDR to switch to TLS in-band (RFC 2817)",
		"> OPTIONS * HTTP/1.1",
		"> Connection: Upgrade",
		"> Host: ADDR",
		"> Upgrade: TLS/1.2, TLS/1.1, TLS/1.0",
		"< HTTP/1.1 101 Switching Protocols (no TLS)",
		"< Connection: Keep-Alive",
		"< Content-Length: 0",
		"< Keep-Alive: timeout=30",
		"< Upgrade: TLS/1.2,TLS/1.1,TLS/1.0",
		"* TLS handshake on the same connection: TLS 1.2, ALPN http/1.1",
		"< HTTP/1.1 200 OK to the OPTIONS, inside TLS",
		"* connected to ADDR (TLS 1.2, ALPN http/1.1)",
		"> GET /jobs HTTP/1.1",
		"> Accept-Encoding: gzip",
		"> Host: ADDR",
		"> User-Agent: Go-http-client/1.1",
		"* remembering TLS/1.2 for http://ADDR",
		"* TLS/1.2: answered over HTTP/1.1 (TLS 1.2)",
		"* final: HTTP/1.1, TLS 1.2, status 200 OK",
	})
}

// lockedBuffer lets stdout and stderr share one buffer, to see the order
// they were written in.
type lockedBuffer struct {
	mu sync.Mutex // guards b
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A request sent straight over a remembered protocol says so, and its
// lines come in the order things happened: the request, the final answer,
// then the body. HTTP/2's writer goroutine once printed the request last.
func TestVerboseRemembered(t *testing.T) {
	srv := startServer(t, testserver.Config{TLS: true, Require: testserver.RequireHTTP2, Upgrade: []string{"HTTP/2"}})
	file := filepath.Join(t.TempDir(), "memory.json")
	args := withServer(t, []string{"-v", "--legacy", "--cacert", "CA", "--memory", file, "URL/"}, srv)
	if code, _, stderr := runCLI(args...); code != exitOK {
		t.Fatalf("first run: exit %d; stderr:\n%s", code, stderr)
	}
	for range 5 { // the race it guards against was not there every time
		var both lockedBuffer
		if code := run(args, &both, &both); code != exitOK {
			t.Fatalf("exit %d:\n%s", code, both.String())
		}
		checkLines(t, normalise(both.String(), srv.Addr), []string{
			"* remembered: https://ADDR demanded HTTP/2; going straight to it",
			"* connected to ADDR (TLS 1.2, ALPN h2)",
			"> GET / HTTP/2",
			"> accept-encoding: gzip",
			"> user-agent: Go-http-client/2.0",
			"* final: HTTP/2.0, TLS 1.2, status 200 OK",
			"ok",
		})
	}
}

// A remembered protocol that no longer works is forgotten, and said so.
func TestVerboseForgot(t *testing.T) {
	srv := startServer(t, testserver.Config{TLS: true, HTTP1Only: true})
	file := filepath.Join(t.TempDir(), "memory.json")
	entry := fmt.Sprintf(`{"version":1,"entries":[{"origin":"https://%s","protocol":"HTTP/2","expires":%q}]}`,
		srv.Addr, time.Now().Add(time.Hour).Format(time.RFC3339))
	if err := os.WriteFile(file, []byte(entry), 0o600); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(verboseLines(t, srv, "--cacert", "CA", "--memory", file, "URL/"), "\n")
	for _, want := range []string{
		"* remembered: https://ADDR demanded HTTP/2; going straight to it\n",
		"\n* forgetting HTTP/2 for https://ADDR: ",
		"\n* connected to ADDR (TLS 1.3, ALPN http/1.1)\n> GET / HTTP/1.1\n",
		"\n* final: HTTP/1.1, TLS 1.3, status 200 OK",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("stderr lacks %q:\n%s", want, got)
		}
	}
}

// An Alt-Svc naming HTTP/3 is shown as it is learned.
func TestVerboseAltSvc(t *testing.T) {
	srv := startServer(t, testserver.Config{TLS: true, HTTP3: true, Handler: advertiseH3})
	got := verboseLines(t, srv, "--cacert", "CA", "URL/")
	if !slices.Contains(got, "* Alt-Svc: h3 for https://ADDR, remembered for 1m0s") {
		t.Errorf("stderr does not show the Alt-Svc:\n%s", strings.Join(got, "\n"))
	}
}
