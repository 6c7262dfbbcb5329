package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/h426/upgrade/internal/testserver"
)

// -v shows each step of an in-band switch to TLS (RFC 2817): the OPTIONS,
// the 101, the handshake on the same connection, the OPTIONS answered
// inside TLS, then the request inside TLS.
func TestVerboseInbandTLS(t *testing.T) {
	srv, err := testserver.Start(testserver.Config{
		InbandTLS: testserver.InbandCUPS, Require: testserver.RequireTLS, Upgrade: []string{"TLS/1.2,TLS/1.1,TLS/1.0"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	var stdout, stderr bytes.Buffer
	if code := run(withServer(t, []string{"-v", "--legacy", "--cacert", "CA", "URL/jobs"}, srv), &stdout, &stderr); code != exitOK {
		t.Fatalf("exit %d; stderr:\n%s", code, &stderr)
	}
	if stdout.String() != "ok\n" {
		t.Errorf("stdout %q, want ok", &stdout)
	}
	steps := []string{
		"< HTTP/1.1 426 Upgrade Required (no TLS)",
		"* offered: TLS/1.2, TLS/1.1, TLS/1.0",
		"* asking " + srv.Addr + " to switch to TLS in-band (RFC 2817)",
		"> OPTIONS * HTTP/1.1\n> Host: " + srv.Addr + "\n> Connection: Upgrade\n> Upgrade: TLS/1.2, TLS/1.1, TLS/1.0\n",
		"< HTTP/1.1 101 Switching Protocols (no TLS)",
		"< Connection: Keep-Alive",
		"* TLS handshake on the same connection: TLS 1.2, ALPN http/1.1",
		"< HTTP/1.1 200 OK to the OPTIONS, inside TLS",
		"* connected to " + srv.Addr + " (TLS 1.2, ALPN http/1.1)\n> GET /jobs HTTP/1.1",
		"* final: HTTP/1.1, TLS 1.2, status 200 OK",
	}
	out := stderr.String()
	at := 0
	for _, step := range steps {
		i := strings.Index(out[at:], step)
		if i < 0 {
			t.Fatalf("stderr lacks %q after offset %d:\n%s", step, at, out)
		}
		at += i + len(step)
	}
}
