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
)

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

// newBase offers what the protocol options ask for the first request.
func TestNewBase(t *testing.T) {
	tests := []struct {
		name      string
		first     firstRequest
		http1Only bool
		min, max  uint16
	}{
		{"default", firstRequest{}, false, 0, 0},
		{"--http2", firstRequest{http: "2"}, false, 0, 0},
		{"--http1.1", firstRequest{http: "1.1"}, true, 0, 0},
		{"--legacy", legacy, true, 0, tls.VersionTLS12},
		{"--tlsv1.3", firstRequest{minTLS: tls.VersionTLS13}, false, tls.VersionTLS13, 0},
		{"--tlsv1.0 --tls-max 1.1", firstRequest{minTLS: tls.VersionTLS10, maxTLS: tls.VersionTLS11}, false, tls.VersionTLS10, tls.VersionTLS11},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := newBase(tt.first, &tls.Config{})
			p := base.Protocols
			if tt.http1Only {
				if p == nil || !p.HTTP1() || p.HTTP2() || p.UnencryptedHTTP2() || !slices.Equal(base.TLSClientConfig.NextProtos, []string{"http/1.1"}) {
					t.Errorf("Protocols %v, ALPN %q; want HTTP/1.1 only", p, base.TLSClientConfig.NextProtos)
				}
			} else if p != nil || !base.ForceAttemptHTTP2 {
				t.Errorf("Protocols %v; want Go's default, HTTP/2 by ALPN", p)
			}
			if c := base.TLSClientConfig; c.MinVersion != tt.min || c.MaxVersion != tt.max {
				t.Errorf("TLS versions %x to %x, want %x to %x", c.MinVersion, c.MaxVersion, tt.min, tt.max)
			}
		})
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
		wantStdout []string // each must appear
		notStdout  []string // none may appear
		wantStderr []string
		wantSeen   int
		wantOut    string // what -o OUT wrote
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
			"> GET /path HTTP/2",
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
		name:       "-X and -H reach the server",
		server:     testserver.Config{},
		args:       []string{"-X", "PUT", "-H", "X-Test: 1", "URL"},
		wantStdout: []string{"ok\n"},
		wantSeen:   1,
		check: func(t *testing.T, seen []testserver.Request) {
			if seen[0].Method != http.MethodPut || seen[0].Header.Get("X-Test") != "1" {
				t.Errorf("server got %s with X-Test %q, want PUT with 1", seen[0].Method, seen[0].Header.Get("X-Test"))
			}
		},
	}, {
		name:      "-o writes the body, and -i's head, to a file",
		server:    testserver.Config{},
		args:      []string{"URL", "-io", "OUT"},
		wantOut:   "HTTP/1.1 200 OK\n",
		notStdout: []string{"ok"},
		wantSeen:  1,
	}, {
		name:       "-I sends HEAD and prints the head",
		server:     testserver.Config{},
		args:       []string{"-I", "URL"},
		wantStdout: []string{"HTTP/1.1 200 OK\n", "Content-Type: "},
		notStdout:  []string{"ok\n"},
		wantSeen:   1,
		check: func(t *testing.T, seen []testserver.Request) {
			if seen[0].Method != http.MethodHead {
				t.Errorf("server got %s, want HEAD", seen[0].Method)
			}
		},
	}, {
		name:       "without -L a redirect is the answer",
		server:     testserver.Config{Handler: redirectOld},
		args:       []string{"-w", "%{http_code}", "URL/old"},
		wantStdout: []string{"302"},
		notStdout:  []string{"ok\n"},
		wantSeen:   1,
	}, {
		name:       "-L follows a redirect",
		server:     testserver.Config{Handler: redirectOld},
		args:       []string{"-L", "-v", "-w", "%{http_code} %{url_effective}", "URL/old"},
		wantStdout: []string{"ok\n200 http://"},
		wantStderr: []string{"> GET /old HTTP/1.1", "* following the redirect to http://", "> GET /new HTTP/1.1"},
		wantSeen:   2,
		check: func(t *testing.T, seen []testserver.Request) {
			if seen[1].Path != "/new" {
				t.Errorf("second request went to %s, want /new", seen[1].Path)
			}
		},
	}, {
		name:       "-f on a 404 prints no body and exits 22",
		server:     testserver.Config{Handler: http.NotFoundHandler()},
		args:       []string{"-f", "URL"},
		wantCode:   exitHTTPFailed,
		notStdout:  []string{"not found"},
		wantStderr: []string{"h426: the requested URL returned error: 404\n"},
		wantSeen:   1,
	}, {
		name:       "-w writes the code and version after an upgrade to HTTP/2",
		server:     testserver.Config{TLS: true, Require: testserver.RequireHTTP2, Upgrade: []string{"HTTP/2"}},
		args:       []string{"--legacy", "--cacert", "CA", "-w", `%{http_code} %{http_version}\n`, "URL"},
		wantStdout: []string{"ok\n200 2\n"},
		wantSeen:   2,
	}, {
		name:       "-w after an upgrade to HTTP/3",
		server:     testserver.Config{TLS: true, HTTP3: true, Require: testserver.RequireHTTP3, Upgrade: []string{"HTTP/3"}},
		args:       []string{"--legacy", "--cacert", "CA", "-w", `%{http_version}\n`, "URL"},
		wantStdout: []string{"ok\n3\n"},
		wantSeen:   2,
	}, {
		name:       "--http1.1 stays on HTTP/1.1 where HTTP/2 is on offer",
		server:     testserver.Config{TLS: true},
		args:       []string{"--http1.1", "--cacert", "CA", "-w", "%{http_version}", "URL"},
		wantStdout: []string{"ok\n1.1"},
		wantSeen:   1,
	}, {
		name:       "--http2 is the default over TLS",
		server:     testserver.Config{TLS: true},
		args:       []string{"--http2", "--cacert", "CA", "-w", "%{http_version}", "URL"},
		wantStdout: []string{"ok\n2"},
		wantSeen:   1,
	}, {
		name:       "--http3 goes straight to HTTP/3",
		server:     testserver.Config{TLS: true, HTTP3: true},
		args:       []string{"--http3", "-v", "--cacert", "CA", "-w", "%{http_version}", "URL"},
		wantStdout: []string{"ok\n3"},
		wantStderr: []string{"* --http3: going straight to HTTP/3\n* connected to "},
		wantSeen:   1,
	}, {
		name:       "--http3 falls back to TCP when QUIC gets no answer",
		server:     testserver.Config{TLS: true, DropUDP: true},
		args:       []string{"--http3", "-v", "--cacert", "CA", "-w", "%{http_version}", "URL"},
		wantStdout: []string{"ok\n2"},
		wantStderr: []string{" not up within 300ms: TCP dialed beside it\n* TCP won after ", "QUIC handshake slower than TCP"},
		wantSeen:   1,
	}, {
		name:       "--http3 on http:// goes as without it",
		server:     testserver.Config{},
		args:       []string{"--http3", "-w", "%{http_version}", "URL"},
		wantStdout: []string{"ok\n1.1"},
		wantStderr: []string{"--http3 applies to https:// URLs only"},
		wantSeen:   1,
	}, {
		name:       "--tls-max caps the first request's TLS",
		server:     testserver.Config{TLS: true},
		args:       []string{"--tls-max", "1.2", "--cacert", "CA", "URL"},
		wantStdout: []string{"ok\n"},
		wantSeen:   1,
		check: func(t *testing.T, seen []testserver.Request) {
			if seen[0].TLSVersion != tls.VersionTLS12 {
				t.Errorf("server got %s, want TLS 1.2", tls.VersionName(seen[0].TLSVersion))
			}
		},
	}, {
		name:       "--tlsv1.3 refuses a server capped at TLS 1.2",
		server:     testserver.Config{TLS: true, MaxTLSVersion: tls.VersionTLS12},
		args:       []string{"--tlsv1.3", "--cacert", "CA", "URL"},
		wantCode:   exitError,
		wantStderr: []string{"h426: ", "protocol version"},
		wantSeen:   0,
	}, {
		name:       "-m gives up on a server that does not answer",
		server:     testserver.Config{Handler: hang},
		args:       []string{"-m", "2", "URL"},
		wantCode:   exitError,
		wantStderr: []string{"deadline exceeded"},
		wantSeen:   1,
	}, {
		name:     "-s silences errors",
		server:   testserver.Config{TLS: true},
		args:     []string{"-s", "URL"},
		wantCode: exitError,
		wantSeen: 0,
		check:    nil,
	}, {
		name:       "-sS shows errors all the same",
		server:     testserver.Config{TLS: true},
		args:       []string{"-sS", "URL"},
		wantCode:   exitError,
		wantStderr: []string{"h426: ", "certificate"},
		wantSeen:   0,
	}, {
		name:      "-sf on a 404: nothing at all, exit 22",
		server:    testserver.Config{Handler: http.NotFoundHandler()},
		args:      []string{"-sf", "URL"},
		wantCode:  exitHTTPFailed,
		notStdout: []string{"not found"},
		wantSeen:  1,
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
			srv := startServer(t, tt.server)
			out := filepath.Join(t.TempDir(), "out")
			args := withServer(t, tt.args, srv)
			if i := slices.Index(args, "OUT"); i >= 0 {
				args[i] = out
			}

			code, stdout, stderr := runCLI(args...)
			if code != tt.wantCode {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tt.wantCode, stderr)
			}
			for _, want := range tt.wantStdout {
				if !strings.Contains(stdout, want) {
					t.Errorf("stdout lacks %q:\n%s", want, stdout)
				}
			}
			for _, unwanted := range tt.notStdout {
				if strings.Contains(stdout, unwanted) {
					t.Errorf("stdout has %q:\n%s", unwanted, stdout)
				}
			}
			for _, want := range tt.wantStderr {
				if !strings.Contains(stderr, want) {
					t.Errorf("stderr lacks %q:\n%s", want, stderr)
				}
			}
			if len(tt.wantStderr) == 0 && tt.wantCode != exitOK && stderr != "" {
				t.Errorf("stderr = %q, want nothing", stderr)
			}
			if tt.wantOut != "" {
				if written, err := os.ReadFile(out); err != nil || !strings.HasPrefix(string(written), tt.wantOut) || !strings.HasSuffix(string(written), "ok\n") {
					t.Errorf("-o wrote %q (%v), want %q… then ok", written, err, tt.wantOut)
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

// redirectOld sends /old to /new and serves the rest.
var redirectOld = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/old" {
		http.Redirect(w, r, "/new", http.StatusFound)
		return
	}
	io.WriteString(w, "ok\n")
})

// hang answers when the client goes away, or after longer than any test.
var hang = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-time.After(time.Minute):
	}
})

// -w prints even when no response came, with curl's 000.
func TestConnectionRefused(t *testing.T) {
	srv, err := testserver.Start(testserver.Config{})
	if err != nil {
		t.Fatal(err)
	}
	url := srv.URL
	srv.Close() // nothing listens there now
	code, stdout, stderr := runCLI("-m", "10", "-w", "%{http_code} %{http_version}", url)
	if code != exitError || stdout != "000 0" {
		t.Errorf("exit %d, stdout %q; want %d, 000 0", code, stdout, exitError)
	}
	if !strings.HasPrefix(stderr, "h426: ") {
		t.Errorf("stderr = %q, want an h426: error", stderr)
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

// --http3 with --memory saves nothing of its own: the user asked for
// HTTP/3, the origin did not demand it.
func TestMemoryFileLeavesOutHTTP3(t *testing.T) {
	srv := startServer(t, testserver.Config{TLS: true, HTTP3: true})
	file := filepath.Join(t.TempDir(), "memory.json")
	code, stdout, stderr := runCLI(withServer(t, []string{"--http3", "--cacert", "CA", "--memory", file, "-w", "%{http_version}", "URL"}, srv)...)
	if code != exitOK || stdout != "ok\n3" {
		t.Fatalf("exit %d, stdout %q, want 0, ok over HTTP/3; stderr:\n%s", code, stdout, stderr)
	}
	saved, err := os.ReadFile(file)
	if err != nil || !strings.Contains(string(saved), `"entries":[]`) {
		t.Errorf("memory file holds %s (%v), want no entries", saved, err)
	}
}
