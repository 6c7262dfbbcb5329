package upgrade

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/h426/upgrade/internal/testserver"
)

// The 426 is paid once per origin: later requests go straight to the
// protocol that worked, over every kind of target.
func TestMemoryPaysThe426Once(t *testing.T) {
	tests := []struct {
		name      string
		server    testserver.Config
		wantProto string
	}{
		{"HTTP/2", testserver.Config{TLS: true, Require: testserver.RequireHTTP2, Upgrade: []string{"HTTP/2"}}, "HTTP/2.0"},
		{"h2c", testserver.Config{Require: testserver.RequireHTTP2, Upgrade: []string{"h2c"}}, "HTTP/2.0"},
		{"TLS/1.3", testserver.Config{TLS: true, Require: testserver.RequireTLS13, Upgrade: []string{"TLS/1.3"}}, "HTTP/1.1"},
		{"HTTP/3", testserver.Config{TLS: true, HTTP3: true, Require: testserver.RequireHTTP3, Upgrade: []string{"HTTP/3"}}, "HTTP/3.0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startServer(t, tt.server)
			tr := newTransport(t, legacyBase(t, s.CertPool()))
			var hits atomic.Int32
			trace := &Trace{Remembered: func(MemoryInfo) { hits.Add(1) }}
			for i := range 10 {
				body := fmt.Sprint("request ", i)
				resp, err := tr.RoundTrip(newRequest(t, WithTrace(testContext(t), trace), "POST", s.URL, strings.NewReader(body)))
				if err != nil {
					t.Fatal(err)
				}
				if readAll(t, resp); resp.StatusCode != 200 || resp.Proto != tt.wantProto {
					t.Fatalf("request %d: %d over %s", i, resp.StatusCode, resp.Proto)
				}
			}
			if refused, seen := s.Refused(), s.Count(); refused != 1 || seen != 11 {
				t.Errorf("server refused %d of %d requests, want 1 of 11", refused, seen)
			}
			if n := hits.Load(); n != 9 {
				t.Errorf("%d requests went straight to the remembered protocol, want 9", n)
			}
		})
	}
}

func TestMemoryExpiresAndIsBounded(t *testing.T) {
	servers := make([]*testserver.Server, 3)
	ca, err := testserver.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	for i := range servers {
		servers[i] = startServer(t, testserver.Config{TLS: true, CA: ca, Require: testserver.RequireHTTP2, Upgrade: []string{"HTTP/2"}})
	}
	tr := newTransport(t, legacyBase(t, ca.CertPool()))
	tr.MemorySize, tr.MemoryTTL = 2, time.Hour
	clock := time.Now()
	tr.now = func() time.Time { return clock }
	get := func(s *testserver.Server) {
		t.Helper()
		resp, err := tr.RoundTrip(newRequest(t, testContext(t), "GET", s.URL, nil))
		if err != nil {
			t.Fatal(err)
		}
		if readAll(t, resp); resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}

	get(servers[0])
	get(servers[0])
	if n := servers[0].Refused(); n != 1 {
		t.Fatalf("refused %d, want 1 before expiry", n)
	}
	clock = clock.Add(time.Hour)
	get(servers[0])
	if n := servers[0].Refused(); n != 2 {
		t.Errorf("refused %d after the TTL, want the 426 met again", n)
	}
	// Two more origins push the first out of a memory of two.
	get(servers[1])
	get(servers[2])
	get(servers[0])
	if n := servers[0].Refused(); n != 3 {
		t.Errorf("refused %d after eviction, want the 426 met again", n)
	}
}

// A remembered protocol that fails before a connection is forgotten, marked
// broken, and the request goes through Base again.
func TestMemoryForgetsAFailingProtocol(t *testing.T) {
	s := startServer(t, testserver.Config{TLS: true, DropUDP: true, Require: testserver.RequireHTTP2, Upgrade: []string{"HTTP/3, HTTP/2"}})
	tr := newTransport(t, legacyBase(t, s.CertPool()))
	tr.HTTP3HandshakeTimeout = 200 * time.Millisecond
	warm := fmt.Sprintf(`{"version":1,"entries":[{"origin":%q,"protocol":"HTTP/3","expires":%q}]}`,
		s.URL, time.Now().Add(time.Hour).Format(time.RFC3339))
	if n, skipped, err := tr.ImportMemory(strings.NewReader(warm)); n != 1 || skipped != 0 || err != nil {
		t.Fatalf("import: %d, %d, %v", n, skipped, err)
	}
	var rec recorder
	var forgot []MemoryInfo
	trace := rec.trace()
	trace.Forgot = func(i MemoryInfo) { forgot = append(forgot, i) }
	payload := bytes.Repeat([]byte("x"), 10_000)
	resp, err := tr.RoundTrip(newRequest(t, WithTrace(testContext(t), trace), "POST", s.URL, bytes.NewReader(payload)))
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	if resp.StatusCode != 200 || resp.Proto != "HTTP/2.0" {
		t.Fatalf("got %d over %s, want 200 over HTTP/2.0", resp.StatusCode, resp.Proto)
	}
	if len(forgot) != 1 || !isTimeout(forgot[0].Err) {
		t.Errorf("forgot %+v, want HTTP/3 forgotten after its timeout", forgot)
	}
	if skipped := rec.decided[0].Skipped; len(skipped) != 1 || !errors.Is(skipped[0].Reason, ErrBroken) {
		t.Errorf("after the 426, skipped %v; want HTTP/3 marked broken", skipped)
	}
	seen := s.Requests()
	if len(seen) != 2 || seen[1].BodyLen != int64(len(payload)) {
		t.Errorf("server saw %+v, want the 426 then the whole body over HTTP/2", seen)
	}
}

// Hundreds of requests meeting their first 426 together build each inner
// transport once, and all end correctly; once the origin is learned, a herd
// meets no 426 at all.
func TestMemoryUnderAHerd(t *testing.T) {
	s := startServer(t, testserver.Config{TLS: true, Require: testserver.RequireHTTP2, Upgrade: []string{"HTTP/2"}})
	base := legacyBase(t, s.CertPool())
	base.MaxConnsPerHost = 50 // the herd queues on the first leg instead of opening 500 sockets
	tr := newTransport(t, base)
	herd := func(n int) {
		t.Helper()
		start := make(chan struct{})
		var wg sync.WaitGroup
		errs := capErrors(t)
		for range n {
			wg.Go(func() {
				<-start
				resp, err := tr.RoundTrip(newRequest(t, testContext(t), "GET", s.URL, nil))
				if err != nil {
					errs.Error(err)
					return
				}
				if err := drain(resp); err != nil {
					errs.Error(err)
				} else if resp.StatusCode != 200 || resp.Proto != "HTTP/2.0" {
					errs.Errorf("%d over %s", resp.StatusCode, resp.Proto)
				}
			})
		}
		close(start)
		wg.Wait()
	}

	herd(500)
	if n := tr.inner.built.Load(); n != 1 {
		t.Errorf("%d inner transports built for one kind, want 1", n)
	}
	learned := s.Refused()
	t.Logf("first herd of 500: %d met the 426 before the origin was learned", learned)
	herd(300)
	if n := s.Refused() - learned; n != 0 {
		t.Errorf("a herd of 300 to a learned origin met %d 426s, want 0", n)
	}
}

func TestOriginKey(t *testing.T) {
	tests := []struct {
		url, host string
		want      origin
	}{
		{"https://Example.COM/x", "", origin{true, "example.com", ""}},
		{"https://example.com:443/x", "", origin{true, "example.com", ""}},
		{"http://example.com/", "", origin{false, "example.com", ""}},
		{"http://example.com:80/", "example.com", origin{false, "example.com", ""}},
		{"https://example.com:8443/", "", origin{true, "example.com:8443", ""}},
		{"https://[::1]:8443/", "", origin{true, "[::1]:8443", ""}},
		{"https://[::1]:443/", "", origin{true, "[::1]", ""}},
		{"https://example.com/", "Example.com", origin{true, "example.com", ""}},
		{"https://example.com/", "example.com:443", origin{true, "example.com", ""}},
		{"https://10.0.0.1/", "www.Example.com", origin{true, "10.0.0.1", "www.example.com"}},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest("GET", tt.url, nil)
		if tt.host != "" {
			req.Host = tt.host
		}
		if got := originOf(req); got != tt.want {
			t.Errorf("%s (Host %q): %+v, want %+v", tt.url, tt.host, got, tt.want)
		}
	}
	// A canonical host is its own canonical form, whatever it came from.
	for _, host := range []string{"h.test:443:443", "h.test:443:443:443", "H.test:443", "[::1]:443", "[::1]:443:443", "::1:443", "h.test:80:443", ":443", ""} {
		for _, secure := range []bool{true, false} {
			once := canonicalHost(host, secure)
			if twice := canonicalHost(once, secure); twice != once {
				t.Errorf("canonicalHost(%q, secure %v) = %q, and of that %q", host, secure, once, twice)
			}
		}
	}
}

// A request naming another virtual host, or another port, is another origin.
func TestMemoryKeysOnHostAndPort(t *testing.T) {
	s := startServer(t, testserver.Config{TLS: true, Require: testserver.RequireHTTP2, Upgrade: []string{"HTTP/2"}})
	base := legacyBase(t, s.CertPool())
	base.TLSClientConfig.ServerName = "localhost"
	tr := newTransport(t, base)
	getAs(t, tr, s.URL, "")
	getAs(t, tr, s.URL, "")
	getAs(t, tr, s.URL, "other.test")
	if n := s.Refused(); n != 2 {
		t.Errorf("server refused %d, want 2: the other Host is another origin", n)
	}
}

func TestMemoryExportImport(t *testing.T) {
	s := startServer(t, testserver.Config{TLS: true, Require: testserver.RequireTLS13, Upgrade: []string{"TLS/1.3"}})
	first := newTransport(t, legacyBase(t, s.CertPool()))
	resp, err := first.RoundTrip(newRequest(t, testContext(t), "GET", s.URL, nil))
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	var file bytes.Buffer
	if err := first.ExportMemory(&file); err != nil {
		t.Fatal(err)
	}
	var decoded memoryFile
	if err := json.Unmarshal(file.Bytes(), &decoded); err != nil || decoded.Version != 1 || len(decoded.Entries) != 1 ||
		decoded.Entries[0].Origin != s.URL || decoded.Entries[0].Protocol != "TLS/1.3" {
		t.Fatalf("exported %s (%v)", file.Bytes(), err)
	}

	warm := newTransport(t, legacyBase(t, s.CertPool()))
	if n, skipped, err := warm.ImportMemory(&file); n != 1 || skipped != 0 || err != nil {
		t.Fatalf("import: %d imported, %d skipped, %v", n, skipped, err)
	}
	before := s.Refused()
	resp, err = warm.RoundTrip(newRequest(t, testContext(t), "GET", s.URL, nil))
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	if resp.StatusCode != 200 || resp.TLS.Version != tls.VersionTLS13 || s.Refused() != before {
		t.Errorf("warm start: %d over %s after %d new 426s; want 200 over TLS 1.3 and none", resp.StatusCode, tls.VersionName(resp.TLS.Version), s.Refused()-before)
	}
}

func TestImportMemoryValidates(t *testing.T) {
	later := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	earlier := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	entry := func(origin, protocol, expires string) string {
		return fmt.Sprintf(`{"origin":%q,"protocol":%q,"expires":%q}`, origin, protocol, expires)
	}
	alternative := func(origin, protocol, alt string) string {
		return fmt.Sprintf(`{"origin":%q,"protocol":%q,"alternative":%q,"expires":%q}`, origin, protocol, alt, later)
	}
	quicOnly := func(origin, protocol string) string {
		return fmt.Sprintf(`{"origin":%q,"protocol":%q,"quicOnly":true,"expires":%q}`, origin, protocol, later)
	}
	file := `{"version":1,"entries":[` + strings.Join([]string{
		entry("https://a.test:443", "HTTP/2", later),                   // kept
		entry("http://b.test:80", "h2c", later),                        // kept
		entry("https://c.test:443", "websocket", later),                // unknown protocol
		entry("https://d.test:443", "h2c", later),                      // would drop TLS
		entry("http://e.test:80", "HTTP/3", later),                     // needs TLS
		entry("ftp://f.test:21", "HTTP/2", later),                      // bad scheme
		entry("https://g.test", "HTTP/2", later),                       // no port
		entry("https://h.test:99999", "HTTP/2", later),                 // bad port
		entry("https://i.test:443/path", "HTTP/2", later),              // not an origin
		entry("https://j.test:443", "HTTP/2", earlier),                 // expired
		entry("https://k.test:443", "TLS/9.9", later),                  // unknown version
		alternative("https://l.test:443", "h3", "alt.test:8443"),       // kept
		alternative("https://m.test:8443", "h3", "m.test:443"),         // privileged port from a high one
		alternative("https://n.test:443", "HTTP/2", "alt.test:8443"),   // only HTTP/3 has alternatives
		alternative("https://o.test:443", "h3", "alt.test:http"),       // port not a number
		alternative("https://p.test:443", "h3", "alt.test"),            // no port
		alternative("https://q.test:443", "h3, TLS/1.3", "alt.test:1"), // two demands
		quicOnly("https://r.test:443", "HTTP/3"),                       // kept
		quicOnly("https://s.test:443", "HTTP/2"),                       // only HTTP/3 goes alone
	}, ",") + `]}`
	tr := newTransport(t, nil)
	imported, skipped, err := tr.ImportMemory(strings.NewReader(file))
	if err != nil || imported != 4 || skipped != 15 {
		t.Errorf("imported %d, skipped %d, %v; want 4 and 15", imported, skipped, err)
	}
	var out strings.Builder
	if err := tr.ExportMemory(&out); err != nil || !strings.Contains(out.String(), `"origin":"https://l.test:443","protocol":"h3","alternative":"alt.test:8443"`) ||
		!strings.Contains(out.String(), `"origin":"https://r.test:443","protocol":"HTTP/3","quicOnly":true`) {
		t.Errorf("export: %v\n%s\nwant l.test with its alternative, r.test going alone", err, out.String())
	}
	for _, bad := range []string{`{"version":2,"entries":[]}`, `not json`, `{"version":1,"entries":{}}`} {
		if _, _, err := tr.ImportMemory(strings.NewReader(bad)); err == nil || !strings.HasPrefix(err.Error(), "upgrade: ") {
			t.Errorf("import of %s: %v, want an upgrade: error", bad, err)
		}
	}
}

// 1000 requests over 50 origins with different demands, all at once.
func TestMemoryManyOriginsConcurrently(t *testing.T) {
	ca, err := testserver.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	demands := []struct {
		cfg       testserver.Config
		wantProto string
	}{
		{testserver.Config{TLS: true, Require: testserver.RequireHTTP2, Upgrade: []string{"HTTP/2"}}, "HTTP/2.0"},
		{testserver.Config{Require: testserver.RequireHTTP2, Upgrade: []string{"h2c"}}, "HTTP/2.0"},
		{testserver.Config{TLS: true, Require: testserver.RequireTLS13, Upgrade: []string{"TLS/1.3"}}, "HTTP/1.1"},
		{testserver.Config{TLS: true, HTTP3: true, Require: testserver.RequireHTTP3, Upgrade: []string{"HTTP/3"}}, "HTTP/3.0"},
		{testserver.Config{TLS: true}, "HTTP/1.1"},
	}
	type strictServer struct {
		s         *testserver.Server
		wantProto string
	}
	origins := make([]strictServer, 50)
	for i := range origins {
		d := demands[i%len(demands)]
		cfg := d.cfg
		cfg.CA = ca
		origins[i] = strictServer{startServer(t, cfg), d.wantProto}
	}
	base := legacyBase(t, ca.CertPool())
	base.MaxConnsPerHost = 8 // 1000 requests queue on 50 origins instead of opening 1000 sockets
	tr := newTransport(t, base)
	var wg sync.WaitGroup
	errs := capErrors(t)
	for i := range 1000 {
		o := origins[i%len(origins)]
		wg.Go(func() {
			resp, err := tr.RoundTrip(newRequest(t, testContext(t), "GET", o.s.URL, nil))
			if err != nil {
				errs.Errorf("%s: %v", o.s.URL, err)
				return
			}
			if err := drain(resp); err != nil {
				errs.Errorf("%s: %v", o.s.URL, err)
			} else if resp.StatusCode != 200 || resp.Proto != o.wantProto {
				errs.Errorf("%s: %d over %s, want 200 over %s", o.s.URL, resp.StatusCode, resp.Proto, o.wantProto)
			}
		})
	}
	wg.Wait()
	if n := tr.inner.built.Load(); n != 4 {
		t.Errorf("%d inner transports built, want 4 (one per kind)", n)
	}
}

// BenchmarkMemory reports what the memory costs: bytes per remembered
// origin, and the time and allocations of a lookup on a full memory.
func BenchmarkMemory(b *testing.B) {
	via := candidate{offer: Protocol{"HTTP", "2"}, target: target{kind: targetHTTP2}}
	b.Run("entry", func(b *testing.B) {
		for b.Loop() {
			tr := &Transport{}
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			for i := range defaultMemorySize {
				tr.memory().put(origin{secure: true, host: fmt.Sprintf("host-%04d.example.com", i)}, memoryEntry{via: via, expires: time.Now().Add(time.Hour)})
			}
			runtime.GC()
			runtime.ReadMemStats(&after)
			b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/defaultMemorySize, "bytes/entry")
			runtime.KeepAlive(tr)
		}
	})
	b.Run("lookup", func(b *testing.B) {
		tr := &Transport{}
		for i := range defaultMemorySize {
			tr.memory().put(origin{secure: true, host: fmt.Sprintf("host-%04d.example.com", i)}, memoryEntry{via: via, expires: time.Now().Add(time.Hour)})
		}
		req := &http.Request{URL: &url.URL{Scheme: "https", Host: "host-0042.example.com"}, Host: "host-0042.example.com"}
		b.ReportAllocs()
		for b.Loop() {
			if via, _ := tr.recall(&transportRequest{req: req}, tr.mem.Load()); via == nil {
				b.Fatal("not remembered")
			}
		}
	})
}

// What the memory sends: hop-by-hop headers dropped for HTTP/2, no entry
// used for a request a proxy would carry (h2c), nothing learned from a 426.
func TestMemoryPathRules(t *testing.T) {
	t.Run("hop-by-hop headers dropped", func(t *testing.T) {
		s := startServer(t, testserver.Config{TLS: true, Require: testserver.RequireHTTP2, Upgrade: []string{"HTTP/2"}})
		tr := newTransport(t, legacyBase(t, s.CertPool()))
		for range 2 {
			req := newRequest(t, testContext(t), "GET", s.URL, nil)
			req.Header.Set("Connection", "X-Hop")
			req.Header.Set("X-Hop", "1")
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			readAll(t, resp)
			if req.Header.Get("X-Hop") != "1" {
				t.Fatal("the caller's header was changed")
			}
		}
		seen := s.Requests()
		if len(seen) != 3 || seen[2].Proto != "HTTP/2.0" || seen[2].Header.Get("X-Hop") != "" || seen[2].Header.Get("Connection") != "" {
			t.Errorf("the remembered request arrived as %+v", seen[len(seen)-1])
		}
	})
	t.Run("not behind a proxy", func(t *testing.T) {
		s := startServer(t, testserver.Config{Require: testserver.RequireHTTP2, Upgrade: []string{"h2c"}})
		base := legacyBase(t, nil)
		tr := newTransport(t, base)
		remember(t, tr, "http://origin.test:80", "h2c")
		proxyURL, _ := url.Parse(s.URL)
		base.Proxy = http.ProxyURL(proxyURL) // the strict server plays the proxy
		var hits atomic.Int32
		ctx := WithTrace(testContext(t), &Trace{Remembered: func(MemoryInfo) { hits.Add(1) }})
		resp, err := tr.RoundTrip(newRequest(t, ctx, "GET", "http://origin.test/", nil))
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
		if hits.Load() != 0 || resp.StatusCode != 426 {
			t.Errorf("%d memory hits, status %d: want the proxied request through Base, meeting the 426", hits.Load(), resp.StatusCode)
		}
	})
	t.Run("a 426 on the replay is not learned", func(t *testing.T) {
		s := startServer(t, testserver.Config{TLS: true, Require: testserver.RefuseAll, Upgrade: []string{"HTTP/2"}})
		tr := newTransport(t, legacyBase(t, s.CertPool()))
		for range 2 {
			resp, err := tr.RoundTrip(newRequest(t, testContext(t), "GET", s.URL, nil))
			if err != nil {
				t.Fatal(err)
			}
			readAll(t, resp)
		}
		if n := s.Count(); n != 4 {
			t.Errorf("server saw %d requests, want 4: nothing was remembered from a 426", n)
		}
		var file bytes.Buffer
		tr.ExportMemory(&file)
		if strings.Contains(file.String(), "HTTP/2") {
			t.Errorf("exported %s", file.String())
		}
	})
}

// Demands that differ by path on one origin (HAProxy: HTTP/2 at /, TLS 1.3
// at /tls13only) are met together once both are known, so alternating
// paths meets no more 426s; and they survive an export and import.
func TestMemoryCombinesDemandsByPath(t *testing.T) {
	tls13only := func(r *http.Request) bool { return r.URL.Path == "/tls13only" }
	refuse := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.ProtoMajor == 2:
			// HTTP/2 has no Upgrade header to say what it wants.
		case tls13only(r) && r.TLS.Version < tls.VersionTLS13:
			w.Header().Set("Upgrade", "TLS/1.3")
		default:
			w.Header().Set("Upgrade", "HTTP/2")
		}
		w.WriteHeader(http.StatusUpgradeRequired)
	})
	meets := func(r *http.Request) bool {
		if tls13only(r) {
			return r.TLS.Version >= tls.VersionTLS13
		}
		return r.ProtoMajor == 2
	}
	s := startServer(t, testserver.Config{TLS: true, Require: meets, Refuse: refuse})
	tr := newTransport(t, legacyBase(t, s.CertPool()))
	get := func(tr *Transport, path string) {
		t.Helper()
		resp, err := tr.RoundTrip(newRequest(t, testContext(t), "POST", s.URL+path, strings.NewReader("body")))
		if err != nil {
			t.Fatal(err)
		}
		if readAll(t, resp); resp.StatusCode != 200 {
			t.Fatalf("%s: %d over %s, want 200", path, resp.StatusCode, resp.Proto)
		}
	}
	for range 5 {
		get(tr, "/")
		get(tr, "/tls13only")
	}
	// / taught HTTP/2; /tls13only met a 426 over it and one through Base.
	if refused := s.Refused(); refused != 3 {
		t.Errorf("%d refusals for 10 alternating requests, want 3", refused)
	}
	seen := s.Requests()
	if last := seen[len(seen)-1]; last.Proto != "HTTP/2.0" || last.TLSVersion != tls.VersionTLS13 {
		t.Errorf("last request over %s TLS %x, want HTTP/2 over TLS 1.3", last.Proto, last.TLSVersion)
	}

	var file bytes.Buffer
	if err := tr.ExportMemory(&file); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(file.String(), `"protocol":"TLS/1.3, HTTP/2"`) && !strings.Contains(file.String(), `"protocol":"HTTP/2, TLS/1.3"`) {
		t.Errorf("exported %s, want both demands", file.String())
	}
	warm := newTransport(t, legacyBase(t, s.CertPool()))
	if n, skipped, err := warm.ImportMemory(&file); n != 1 || skipped != 0 || err != nil {
		t.Fatalf("imported %d, skipped %d: %v", n, skipped, err)
	}
	get(warm, "/tls13only")
	get(warm, "/")
	if refused := s.Refused(); refused != 3 {
		t.Errorf("a warm start met %d more 426s, want none", refused-3)
	}
}

// CheckUpgrade is asked before a remembered protocol is used: what it
// would veto after a 426, it vetoes before one.
func TestMemoryAsksCheckUpgrade(t *testing.T) {
	s := startServer(t, testserver.Config{TLS: true, Require: testserver.RequireHTTP2, Upgrade: []string{"HTTP/2"}})
	tr := newTransport(t, legacyBase(t, s.CertPool()))
	var asked []string
	tr.CheckUpgrade = func(req *http.Request, resp *http.Response, usable []Protocol) ([]Protocol, error) {
		asked = append(asked, req.URL.Path+" "+resp.Header.Get("Upgrade"))
		if req.URL.Path == "/private" {
			return nil, errors.New("not for this path")
		}
		return usable, nil
	}
	for _, path := range []string{"/public", "/private", "/public"} {
		resp, err := tr.RoundTrip(newRequest(t, testContext(t), "GET", s.URL+path, nil))
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
		want := map[string]int{"/public": 200, "/private": 426}[path]
		if resp.StatusCode != want {
			t.Errorf("%s: %d over %s, want %d", path, resp.StatusCode, resp.Proto, want)
		}
	}
	// /private was asked about twice: as remembered, then after its own 426.
	if got := fmt.Sprint(asked); got != "[/public HTTP/2 /private HTTP/2 /private HTTP/2 /public HTTP/2]" {
		t.Errorf("CheckUpgrade asked %s", got)
	}
	if n := s.Count(); n != 4 {
		t.Errorf("server saw %d requests, want 4: 426 and h2, 426, h2", n)
	}
}

// A lookup that sees an entry expire drops only that entry, not one a
// concurrent replay put since.
func TestExpiredLookupKeepsAFreshPut(t *testing.T) {
	now := time.Now()
	o := origin{secure: true, host: "example.com"}
	via := candidate{offer: Protocol{Name: "HTTP", Version: "2"}}
	lost := 0
	const rounds = 3000
	for range rounds {
		m := newMemory(16, time.Hour)
		m.put(o, memoryEntry{via: via, expires: now.Add(-time.Second)}) // expired
		start := make(chan struct{})
		done := make(chan struct{})
		go func() {
			<-start
			m.lookup(o, now)
			close(done)
		}()
		close(start)
		m.put(o, memoryEntry{via: via, expires: now.Add(time.Hour)}) // learned just now
		<-done
		if m.lookup(o, now) == nil {
			lost++
		}
	}
	if lost > 0 {
		t.Errorf("a fresh entry was forgotten by a concurrent lookup of the expired one %d times in %d", lost, rounds)
	}
}

// The approximate LRU still ranks a lookup after the latest put above it.
func TestLRUKeepsTheEntryJustUsed(t *testing.T) {
	now := time.Now()
	via := candidate{offer: Protocol{Name: "HTTP", Version: "2"}}
	e := memoryEntry{via: via, expires: now.Add(time.Hour)}
	a := origin{secure: true, host: "a.example"}
	b := origin{secure: true, host: "b.example"}
	c := origin{secure: true, host: "c.example"}
	wrong := 0
	const rounds = 200
	for range rounds {
		m := newMemory(2, time.Hour) // a fresh hash seed each round
		m.put(a, e)
		m.put(b, e)
		m.lookup(a, now)
		m.put(c, e)
		if m.lookup(a, now) == nil {
			wrong++
		}
	}
	if wrong > 0 {
		t.Errorf("the entry used most recently was evicted in %d of %d rounds, want 0 (least recently used first)", wrong, rounds)
	}
}

// Virtual hosts behind one address, as a reverse proxy sends them, each get
// a slot of their own: a lookup does not scan the others.
func TestMemorySpreadsVirtualHosts(t *testing.T) {
	m := newMemory(defaultMemorySize, time.Hour)
	e := memoryEntry{via: candidate{offer: Protocol{Name: "HTTP", Version: "2"}}, expires: time.Now().Add(time.Hour)}
	for i := range 1000 {
		m.put(origin{secure: true, host: "backend:8443", vhost: fmt.Sprintf("site-%d.example", i)}, e)
	}
	longest := 0
	for i := range m.shards {
		if p := m.shards[i].Load(); p != nil {
			for _, slots := range *p {
				longest = max(longest, len(slots))
			}
		}
	}
	if longest > 2 {
		t.Errorf("a lookup scans %d slots for 1000 virtual hosts on one address, want at most 2", longest)
	}
}

// The slot put last, looked at before the map, never outlives its removal
// and always holds the newest entry.
func TestMemoryLastSlot(t *testing.T) {
	now := time.Now()
	h2 := memoryEntry{via: candidate{offer: Protocol{Name: "HTTP", Version: "2"}}, expires: now.Add(time.Hour)}
	h3 := memoryEntry{via: candidate{offer: Protocol{Name: "HTTP", Version: "3"}}, expires: now.Add(time.Hour)}
	a := origin{secure: true, host: "a.example"}
	b := origin{secure: true, host: "b.example"}

	m := newMemory(1, time.Hour)
	m.put(a, h2)
	m.forget(a)
	if m.lookup(a, now) != nil {
		t.Error("forgotten origin still found")
	}
	m.put(a, h2)
	m.put(a, h3)
	if e := m.lookup(a, now); e == nil || e.via.offer != h3.via.offer {
		t.Errorf("after two puts: %v; want the second", e)
	}
	m.put(b, h2) // evicts a
	if m.lookup(a, now) != nil {
		t.Error("evicted origin still found")
	}
	if m.lookup(b, now) == nil {
		t.Error("origin put last not found")
	}
	m.put(a, memoryEntry{via: h2.via, expires: now.Add(-time.Second)}) // evicts b; already expired
	if m.lookup(a, now) != nil {
		t.Error("expired origin found")
	}
	if m.lookup(a, now) != nil || m.last.Load() != nil {
		t.Error("an expired slot put last was not dropped by the lookup that saw it expire")
	}
}
