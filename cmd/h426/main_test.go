package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/h426/upgrade/internal/testserver"
	"go.uber.org/goleak"
)

// TestMain fails the suite if a run leaves a goroutine behind: the command
// must close its transports and the demo its servers.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestDemo(t *testing.T) {
	var stdout, stderr bytes.Buffer
	start := time.Now()
	if code := run([]string{"demo"}, &stdout, &stderr); code != exitOK {
		t.Errorf("h426 demo: exit %d, want 0; stderr:\n%s", code, &stderr)
	}
	// The unreachable HTTP/3 row costs its 2 s, the others little; the
	// bound leaves room for a loaded machine.
	if elapsed := time.Since(start); elapsed > 15*time.Second {
		t.Errorf("h426 demo took %v, want under 15s", elapsed)
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if len(lines) != 1+len(scenarios()) {
		t.Fatalf("got %d lines, want a header and %d rows:\n%s", len(lines), len(scenarios()), &stdout)
	}
	for i, sc := range scenarios() {
		row := lines[i+1]
		if !strings.HasPrefix(row, sc.name) || !strings.HasSuffix(row, " ok") {
			t.Errorf("row %q: want it to start with %q and end with ok", row, sc.name)
		}
	}
}

func TestDemoReportsFailure(t *testing.T) {
	wrong := scenarios()[0]
	wrong.want.proto = "HTTP/1.1" // the row really ends on HTTP/2.0
	var stdout, stderr bytes.Buffer
	if code := demo(context.Background(), &stdout, &stderr, []scenario{wrong}); code != exitError {
		t.Errorf("exit %d, want %d", code, exitError)
	}
	if !strings.Contains(stdout.String(), "FAIL") {
		t.Errorf("table does not say FAIL:\n%s", &stdout)
	}
	if !strings.Contains(stderr.String(), "want status 200 over HTTP/1.1") {
		t.Errorf("stderr does not explain the failure:\n%s", &stderr)
	}
}

func TestDemoTakesNoArguments(t *testing.T) {
	if code := run([]string{"demo", "extra"}, io.Discard, io.Discard); code != exitUsage {
		t.Errorf("exit %d, want %d", code, exitUsage)
	}
}

func TestParseArgs(t *testing.T) {
	body := filepath.Join(t.TempDir(), "body.json")
	if err := os.WriteFile(body, []byte("{\"a\": 1}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const url = "https://example.test/x"
	tests := []struct {
		name  string
		args  []string
		check func(t *testing.T, o options)
	}{{
		name: "-H repeats in order",
		args: []string{"-H", "A: 1", "-H", "B:2", "-H", "A: 3", url},
		check: func(t *testing.T, o options) {
			want := headerFlag{{"A", "1"}, {"B", "2"}, {"A", "3"}}
			if !slices.Equal(o.headers, want) {
				t.Errorf("headers = %v, want %v", o.headers, want)
			}
		},
	}, {
		name: "-d @file reads the file as is",
		args: []string{"-d", "@" + body, url},
		check: func(t *testing.T, o options) {
			if !o.data.set || string(o.data.body) != "{\"a\": 1}\n" {
				t.Errorf("data = %+v, want the file", o.data)
			}
		},
	}, {
		name: "-d repeated joins with &",
		args: []string{"-d", "a=1", "-d", "b=2", url},
		check: func(t *testing.T, o options) {
			if string(o.data.body) != "a=1&b=2" {
				t.Errorf("data = %q, want a=1&b=2", o.data.body)
			}
		},
	}, {
		name: "--legacy and --min-tls",
		args: []string{"--legacy", "--min-tls", "1.3", url},
		check: func(t *testing.T, o options) {
			if !o.legacy || o.minTLS != tls.VersionTLS13 {
				t.Errorf("legacy = %v, minTLS = %v; want true, TLS 1.3", o.legacy, o.minTLS.String())
			}
		},
	}, {
		name: "defaults",
		args: []string{url},
		check: func(t *testing.T, o options) {
			if o.url != url || o.timeout != 30*time.Second || o.legacy || o.minTLS != 0 || o.data.set {
				t.Errorf("options = %+v", o)
			}
		},
	}, {
		name: "-m in fractions of a second",
		args: []string{"-m", "1.5", url},
		check: func(t *testing.T, o options) {
			if o.timeout != 1500*time.Millisecond {
				t.Errorf("timeout = %v, want 1.5s", o.timeout)
			}
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			o, err := parseArgs(tt.args, &stderr)
			if err != nil {
				t.Fatalf("parseArgs: %v; stderr:\n%s", err, &stderr)
			}
			tt.check(t, o)
		})
	}
}

func TestParseArgsErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"no URL", []string{"-v"}},
		{"two URLs", []string{"http://a.test", "http://b.test"}},
		{"flag after the URL", []string{"http://a.test", "-v"}},
		{"not http", []string{"ftp://a.test/"}},
		{"no host", []string{"http:///x"}},
		{"header without colon", []string{"-H", "A 1", "http://a.test"}},
		{"header name not a token", []string{"-H", "A B: 1", "http://a.test"}},
		{"missing file", []string{"-d", "@" + filepath.Join(t.TempDir(), "none"), "http://a.test"}},
		{"bad TLS version", []string{"--min-tls", "1.1", "http://a.test"}},
		{"negative timeout", []string{"-m", "-1", "http://a.test"}},
		{"unknown flag", []string{"--nope", "http://a.test"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			if code := run(tt.args, io.Discard, &stderr); code != exitUsage {
				t.Errorf("exit %d, want %d", code, exitUsage)
			}
			if !strings.Contains(stderr.String(), "usage: h426") {
				t.Errorf("stderr has no usage:\n%s", &stderr)
			}
		})
	}
}

func TestNewRequest(t *testing.T) {
	o, err := parseArgs([]string{"-d", "x=1", "-H", "Host: other.test", "-H", "X-A: 1", "http://a.test/p?q=1"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	req, err := newRequest(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if req.Method != http.MethodPost || req.Host != "other.test" || req.Header.Get("X-A") != "1" {
		t.Errorf("method %s, host %s, X-A %q; want POST, other.test, 1", req.Method, req.Host, req.Header.Get("X-A"))
	}
	if got := req.Header.Get("Content-Type"); got != "application/x-www-form-urlencoded" {
		t.Errorf("Content-Type = %q", got)
	}
	// The transport may replay only a body it can get again.
	if req.GetBody == nil {
		t.Fatal("GetBody is nil: the body cannot be replayed")
	}
	for range 2 {
		rc, err := req.GetBody()
		if err != nil {
			t.Fatal(err)
		}
		if b, _ := io.ReadAll(rc); string(b) != "x=1" {
			t.Errorf("GetBody gave %q, want x=1", b)
		}
	}

	o.method = http.MethodPut
	if req, _ = newRequest(context.Background(), o); req.Method != http.MethodPut {
		t.Errorf("-X PUT -d: method %s", req.Method)
	}
}

func TestNewBase(t *testing.T) {
	legacy := newBase(true, &tls.Config{})
	if p := legacy.Protocols; p == nil || !p.HTTP1() || p.HTTP2() || p.UnencryptedHTTP2() {
		t.Errorf("legacy Protocols = %v, want HTTP1 only", p)
	}
	if v := legacy.TLSClientConfig.MaxVersion; v != tls.VersionTLS12 {
		t.Errorf("legacy MaxVersion = %s, want TLS 1.2", tls.VersionName(v))
	}
	modern := newBase(false, &tls.Config{})
	if modern.Protocols != nil || modern.TLSClientConfig.MaxVersion != 0 || !modern.ForceAttemptHTTP2 {
		t.Errorf("default base is restricted: Protocols %v, MaxVersion %x", modern.Protocols, modern.TLSClientConfig.MaxVersion)
	}
}

// TestClient runs the command against a fresh strict server per case. In
// args, URL is replaced by the server's URL and CA by a file holding its
// CA certificate.
func TestClient(t *testing.T) {
	bodyFile := filepath.Join(t.TempDir(), "body")
	body := []byte("name=h426&proto=h2c")
	if err := os.WriteFile(bodyFile, body, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		server     testserver.Config
		args       []string
		wantCode   int
		wantStdout []string
		wantStderr []string
		wantSeen   int
		check      func(t *testing.T, seen []testserver.Request)
	}{{
		name:       "-v shows the upgrade to HTTP/2",
		server:     testserver.Config{TLS: true, Require: testserver.RequireHTTP2, Upgrade: []string{"HTTP/2"}},
		args:       []string{"-v", "--legacy", "--cacert", "CA", "URL/path"},
		wantStdout: []string{"ok\n"},
		wantStderr: []string{
			"> GET /path HTTP/1.1",
			"< HTTP/1.1 426 Upgrade Required (TLS 1.2)",
			"* offered: HTTP/2",
			"* will try, in order: HTTP/2",
			"* replaying the request over HTTP/2",
			"> GET /path HTTP/2.0",
			"* HTTP/2: answered over HTTP/2.0",
			"* final: HTTP/2.0, TLS 1.2, status 200 OK",
		},
		wantSeen: 2,
	}, {
		name:       "-d @file is sent again over h2c, -i prints the head",
		server:     testserver.Config{Require: testserver.RequireHTTP2, Upgrade: []string{"h2c"}},
		args:       []string{"-i", "-d", "@" + bodyFile, "URL/form"},
		wantStdout: []string{"HTTP/2.0 200 OK\n", "Content-Type: text/plain; charset=utf-8\n", "\n\nok\n"},
		wantSeen:   2,
		check: func(t *testing.T, seen []testserver.Request) {
			last := seen[len(seen)-1]
			if last.Method != http.MethodPost || last.Proto != "HTTP/2.0" ||
				last.BodyLen != int64(len(body)) || last.BodySHA256 != sha256.Sum256(body) {
				t.Errorf("server got %s over %s with %d bytes; want POST over HTTP/2.0 with the file", last.Method, last.Proto, last.BodyLen)
			}
		},
	}, {
		name:       "TLS 1.2 to 1.3, --min-tls 1.3",
		server:     testserver.Config{TLS: true, Require: testserver.RequireTLS13, Upgrade: []string{"TLS/1.3"}},
		args:       []string{"-v", "--legacy", "--min-tls", "1.3", "--cacert", "CA", "URL"},
		wantStdout: []string{"ok\n"},
		wantStderr: []string{"offered: TLS/1.3", "final: HTTP/1.1, TLS 1.3, status 200 OK"},
		wantSeen:   2,
	}, {
		name:       "-v shows a refused handshake read as a demand",
		server:     testserver.Config{TLS: true, HTTP2Only: true},
		args:       []string{"-v", "--legacy", "--cacert", "CA", "URL"},
		wantStdout: []string{"ok\n"},
		wantStderr: []string{
			"* TLS handshake refused: remote error: tls: no application protocol",
			"* read as a demand for: HTTP/2",
			"* will try, in order: HTTP/2",
			"* final: HTTP/2.0, TLS 1.2, status 200 OK",
		},
		wantSeen: 1,
	}, {
		name:       "unusable offer returns the 426",
		server:     testserver.Config{TLS: true, Require: testserver.RefuseAll, Upgrade: []string{"websocket"}},
		args:       []string{"-v", "--legacy", "--cacert", "CA", "URL"},
		wantStdout: []string{"426 upgrade required\n"},
		wantStderr: []string{"skipping websocket: upgrade: not an upgrade this transport makes", "not upgrading", "status 426 Upgrade Required"},
		wantSeen:   1,
	}, {
		name:       "every offer fails: each attempt printed",
		server:     testserver.Config{TLS: true, HTTP1Only: true, Require: testserver.RequireHTTP2, Upgrade: []string{"HTTP/2"}},
		args:       []string{"--cacert", "CA", "URL"},
		wantCode:   exitError,
		wantStderr: []string{"h426: Get ", "h426: the 426 offered: HTTP/2\n", "h426:   HTTP/2: "},
		wantSeen:   1,
	}, {
		name:       "-k trusts anything, with a warning",
		server:     testserver.Config{TLS: true},
		args:       []string{"-k", "URL"},
		wantStdout: []string{"ok\n"},
		wantStderr: []string{"warning: -k"},
		wantSeen:   1,
	}, {
		name:       "unknown CA is an error",
		server:     testserver.Config{TLS: true},
		args:       []string{"URL"},
		wantCode:   exitError,
		wantStderr: []string{"h426: ", "certificate"},
		wantSeen:   0,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, err := testserver.Start(tt.server)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { srv.Close() })
			args := withServer(t, tt.args, srv)

			var stdout, stderr bytes.Buffer
			if code := run(args, &stdout, &stderr); code != tt.wantCode {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tt.wantCode, &stderr)
			}
			for _, want := range tt.wantStdout {
				if !strings.Contains(stdout.String(), want) {
					t.Errorf("stdout lacks %q:\n%s", want, &stdout)
				}
			}
			for _, want := range tt.wantStderr {
				if !strings.Contains(stderr.String(), want) {
					t.Errorf("stderr lacks %q:\n%s", want, &stderr)
				}
			}
			seen := srv.Requests()
			if len(seen) != tt.wantSeen {
				t.Fatalf("server saw %d requests, want %d", len(seen), tt.wantSeen)
			}
			if tt.check != nil {
				tt.check(t, seen)
			}
		})
	}
}

// withServer fills in the server's URL and a file with its CA certificate.
func withServer(t *testing.T, args []string, srv *testserver.Server) []string {
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, srv.CA().PEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	filled := make([]string, len(args))
	for i, a := range args {
		switch {
		case a == "CA":
			filled[i] = caFile
		case strings.HasPrefix(a, "URL"):
			filled[i] = srv.URL + strings.TrimPrefix(a, "URL")
		default:
			filled[i] = a
		}
	}
	return filled
}

func TestConnectionRefused(t *testing.T) {
	srv, err := testserver.Start(testserver.Config{})
	if err != nil {
		t.Fatal(err)
	}
	url := srv.URL
	srv.Close() // nothing listens there now
	var stderr bytes.Buffer
	if code := run([]string{"-m", "2", url}, io.Discard, &stderr); code != exitError {
		t.Errorf("exit %d, want %d", code, exitError)
	}
	if !strings.HasPrefix(stderr.String(), "h426: ") {
		t.Errorf("stderr = %q, want an h426: error", &stderr)
	}
}

// --memory carries what an origin demanded from one run to the next: the
// second run goes straight to HTTP/2 and the server refuses nothing more.
func TestMemoryFile(t *testing.T) {
	srv, err := testserver.Start(testserver.Config{TLS: true, Require: testserver.RequireHTTP2, Upgrade: []string{"HTTP/2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	file := filepath.Join(t.TempDir(), "memory.json")
	args := withServer(t, []string{"--legacy", "--cacert", "CA", "--memory", file, "-i", "URL/"}, srv)
	for i, wantRefused := range []int{1, 1} {
		var stdout, stderr bytes.Buffer
		if code := run(args, &stdout, &stderr); code != exitOK {
			t.Fatalf("run %d: exit %d: %s", i, code, &stderr)
		}
		if !strings.HasPrefix(stdout.String(), "HTTP/2.0 200") {
			t.Errorf("run %d printed %q, want an HTTP/2.0 200", i, stdout.String())
		}
		if n := srv.Refused(); n != wantRefused {
			t.Errorf("after run %d the server refused %d requests, want %d", i, n, wantRefused)
		}
	}
	saved, err := os.ReadFile(file)
	if err != nil || !strings.Contains(string(saved), `"protocol":"HTTP/2"`) {
		t.Errorf("memory file holds %s (%v)", saved, err)
	}
}
