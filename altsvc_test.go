package upgrade

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/h426/upgrade/internal/testserver"
)

func TestParseAltSvc(t *testing.T) {
	tests := []struct {
		lines     []string
		want      string
		wantClear bool
	}{
		{[]string{`h3=":443"; ma=2592000`}, `[{h3  443 720h0m0s}]`, false},
		{[]string{`h3=":443"`}, `[{h3  443 24h0m0s}]`, false},
		{[]string{`h3-29=":443"; ma=60, h3="alt.example:8443"; ma=30; persist=1`}, `[{h3-29  443 1m0s} {h3 alt.example 8443 30s}]`, false},
		{[]string{`h2="a,b:1"`, `h3=":1"`}, `[{h2 a,b 1 24h0m0s} {h3  1 24h0m0s}]`, false},
		{[]string{`clear`}, `[]`, true},
		{[]string{`h3=443`, `h3=":x"; ma=1`, `=":1"`, `h3=":1"; ma=-1`, `h3=":1"; ma=1.5`}, `[]`, false},
		{[]string{strings.Repeat(`h3=":1", `, 1000)}, `[]`, false},                         // over the size bound
		{[]string{strings.Repeat(`h3=":1",`, 40)}, fmt.Sprint(make([]struct{}, 0)), false}, // checked below
	}
	for i, tt := range tests {
		alts, clear := parseAltSvc(tt.lines)
		if i == len(tests)-1 {
			if len(alts) != maxAltSvcAlternatives {
				t.Errorf("%d alternatives kept, bound is %d", len(alts), maxAltSvcAlternatives)
			}
			continue
		}
		var each []string
		for _, a := range alts {
			each = append(each, fmt.Sprintf("{%s %s %s %v}", a.protocol, a.host, a.port, a.maxAge))
		}
		got := "[" + strings.Join(each, " ") + "]"
		if got != tt.want || clear != tt.wantClear {
			t.Errorf("parseAltSvc(%q) = %s, %v; want %s, %v", tt.lines, got, clear, tt.want, tt.wantClear)
		}
	}
}

func FuzzParseAltSvc(f *testing.F) {
	for _, seed := range []string{`h3=":443"; ma=2592000`, `clear`, `h3="a\"b:1"`, `h3=":1";ma="60"`, `a=""`, `"`} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, line string) {
		alts, _ := parseAltSvc([]string{line})
		if len(alts) > maxAltSvcAlternatives {
			t.Fatalf("%d alternatives", len(alts))
		}
		for _, a := range alts {
			if !isToken(a.protocol) || a.port == "" || a.maxAge < 0 {
				t.Fatalf("bad alternative %+v", a)
			}
		}
	})
}

// altSvcServer serves HTTP/1.1, HTTP/2 and HTTP/3 with no demand, and
// advertises in Alt-Svc what advertise returns for its port.
func altSvcServer(t testing.TB, cfg testserver.Config, advertise func(port string) string) *testserver.Server {
	var s *testserver.Server
	cfg.TLS = true
	cfg.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, _ := url.Parse(s.URL)
		if v := advertise(u.Port()); v != "" {
			w.Header().Set("Alt-Svc", v)
		}
		fmt.Fprintln(w, "ok")
	})
	s = startServer(t, cfg)
	return s
}

// An Alt-Svc for HTTP/3 sends the next requests over HTTP/3; what it may
// not (a privileged port, a proxy, a broken mark, IgnoreAltSvc) is
// ignored; "clear" and max-age end it.
func TestAltSvc(t *testing.T) {
	h3On := func(port string) string { return `h3=":` + port + `"; ma=60` }
	get := func(t *testing.T, tr *Transport, s *testserver.Server, trace *Trace) *http.Response {
		t.Helper()
		ctx := testContext(t)
		if trace != nil {
			ctx = WithTrace(ctx, trace)
		}
		resp, err := tr.RoundTrip(newRequest(t, ctx, "GET", s.URL, nil))
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
		return resp
	}
	t.Run("learned", func(t *testing.T) {
		s := altSvcServer(t, testserver.Config{HTTP3: true}, h3On)
		tr := newTransport(t, legacyBase(t, s.CertPool()))
		var told []AltSvcInfo
		trace := &Trace{AltSvc: func(i AltSvcInfo) { told = append(told, i) }}
		protos := []string{get(t, tr, s, trace).Proto, get(t, tr, s, trace).Proto, get(t, tr, s, trace).Proto}
		if fmt.Sprint(protos) != "[HTTP/1.1 HTTP/3.0 HTTP/3.0]" || len(told) != 1 || told[0].MaxAge != time.Minute {
			t.Errorf("requests went over %v, Alt-Svc told %+v; want HTTP/1.1 then HTTP/3, learned once for 1m", protos, told)
		}
	})
	t.Run("max-age", func(t *testing.T) {
		s := altSvcServer(t, testserver.Config{HTTP3: true}, h3On)
		tr := newTransport(t, legacyBase(t, s.CertPool()))
		clock := time.Now()
		tr.now = func() time.Time { return clock }
		get(t, tr, s, nil)
		clock = clock.Add(time.Minute + time.Second)
		if p := get(t, tr, s, nil).Proto; p != "HTTP/1.1" {
			t.Errorf("after max-age: %s, want HTTP/1.1", p)
		}
		if p := get(t, tr, s, nil).Proto; p != "HTTP/3.0" {
			t.Errorf("advertised again: %s, want HTTP/3.0", p)
		}
	})
	t.Run("clear", func(t *testing.T) {
		tr := &Transport{}
		req := newRequest(t, testContext(t), "GET", "https://h.example/", nil)
		o := originOf(req)
		tr.memory().put(o, memoryEntry{via: candidate{offer: Protocol{Name: "h3"}, target: target{kind: targetHTTP3}}, expires: time.Now().Add(time.Hour)})
		resp := &http.Response{Header: http.Header{"Alt-Svc": {"clear"}}}
		tr.learnAltSvc(&transportRequest{req: req}, resp)
		if !tr.mem.Load().empty() {
			t.Error("clear did not forget what Alt-Svc taught")
		}
		demanded := candidate{offer: Protocol{"HTTP", "2"}, target: target{kind: targetHTTP2}}
		tr.memory().put(o, memoryEntry{via: demanded, expires: time.Now().Add(time.Hour)})
		tr.learnAltSvc(&transportRequest{req: req}, resp)
		if tr.mem.Load().empty() {
			t.Error("clear forgot what a 426 demanded")
		}
	})
	t.Run("ignored", func(t *testing.T) {
		cases := []struct {
			name  string
			setup func(*testing.T, *Transport, *http.Transport, *testserver.Server)
			alt   func(port string) string
		}{
			{"privileged port from a high one", nil, func(string) string { return `h3=":443"` }},
			{"not h3", nil, func(port string) string { return `h2=":` + port + `"` }},
			{"IgnoreAltSvc", func(_ *testing.T, tr *Transport, _ *http.Transport, _ *testserver.Server) { tr.IgnoreAltSvc = true }, h3On},
			{"broken", func(_ *testing.T, tr *Transport, _ *http.Transport, s *testserver.Server) {
				o := originOf(&http.Request{URL: mustParse(s.URL), Host: ""})
				tr.broken.fail(brokenKeyOf(o, target{kind: targetHTTP3}), time.Now())
			}, h3On},
			{"proxy", func(t *testing.T, _ *Transport, base *http.Transport, _ *testserver.Server) {
				base.Proxy = http.ProxyURL(startConnectProxy(t, nil).url)
			}, h3On},
			{"own dialer", func(_ *testing.T, _ *Transport, base *http.Transport, _ *testserver.Server) {
				base.DialContext = new(connCounter).DialContext
			}, h3On},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				s := altSvcServer(t, testserver.Config{HTTP3: true}, c.alt)
				base := legacyBase(t, s.CertPool())
				tr := newTransport(t, base)
				if c.setup != nil {
					c.setup(t, tr, base, s)
				}
				get(t, tr, s, nil)
				if m := tr.mem.Load(); m != nil && !m.empty() {
					t.Error("the advertisement was remembered")
				}
				if p := get(t, tr, s, nil).Proto; p != "HTTP/1.1" {
					t.Errorf("second request over %s, want HTTP/1.1", p)
				}
			})
		}
	})
	t.Run("alternative", func(t *testing.T) {
		// The origin is https://localhost:PORT; its Alt-Svc names another
		// server, by another port and host (127.0.0.1), that the next
		// request reaches over QUIC only if its certificate is valid for
		// localhost, from a CA the client trusts.
		ca, err := testserver.NewCA()
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			name   string
			altCA  *testserver.CA // nil: a CA of its own, which the client does not trust
			want   string
			served int // requests the alternative served
		}{
			{"valid for the origin", ca, "HTTP/3.0", 2},
			{"certificate not for the origin", nil, "HTTP/1.1", 0},
		} {
			t.Run(c.name, func(t *testing.T) {
				alt := startServer(t, testserver.Config{TLS: true, HTTP3: true, CA: c.altCA})
				altAddr := mustParse(alt.URL).Host
				s := altSvcServer(t, testserver.Config{CA: ca}, func(string) string { return `h3="` + altAddr + `"; ma=60` })
				s.URL = strings.Replace(s.URL, "127.0.0.1", "localhost", 1)
				tr := newTransport(t, legacyBase(t, ca.CertPool()))
				var told []AltSvcInfo
				var forgot int
				trace := &Trace{AltSvc: func(i AltSvcInfo) { told = append(told, i) }, Forgot: func(MemoryInfo) { forgot++ }}
				first, second, third := get(t, tr, s, trace), get(t, tr, s, trace), get(t, tr, s, trace)
				if first.Proto != "HTTP/1.1" || second.Proto != c.want || len(told) != 1 || told[0].Alternative != altAddr {
					t.Errorf("requests over %s then %s, Alt-Svc told %+v; want HTTP/1.1 then %s, alternative %s",
						first.Proto, second.Proto, told, c.want, altAddr)
				}
				if alt.Count() != c.served || s.Count() != 3-c.served {
					t.Errorf("the alternative served %d, the origin %d; want %d and %d", alt.Count(), s.Count(), c.served, 3-c.served)
				}
				if c.served == 0 && (third.Proto != "HTTP/1.1" || forgot != 1) {
					t.Errorf("after the failed alternative: %s, forgotten %d times; want HTTP/1.1, once", third.Proto, forgot)
				}
			})
		}
	})
	t.Run("learned again after the broken period", func(t *testing.T) {
		s := altSvcServer(t, testserver.Config{DropUDP: true}, h3On)
		tr := newTransport(t, legacyBase(t, s.CertPool()))
		tr.HTTP3FallbackDelay = 50 * time.Millisecond
		clock := time.Now()
		tr.now = func() time.Time { return clock }
		var learned, forgot int
		trace := &Trace{AltSvc: func(AltSvcInfo) { learned++ }, Forgot: func(MemoryInfo) { forgot++ }}
		for range 3 { // learns, fails over QUIC and is marked, then goes over TCP
			get(t, tr, s, trace)
		}
		clock = clock.Add(brokenPeriod + time.Second)
		for range 2 { // learns again, and fails again
			get(t, tr, s, trace)
		}
		if learned != 2 || forgot != 2 {
			t.Errorf("learned %d times, forgot %d; want HTTP/3 tried once per broken period: 2 and 2", learned, forgot)
		}
	})
	t.Run("nothing answers QUIC", func(t *testing.T) {
		s := altSvcServer(t, testserver.Config{DropUDP: true}, h3On)
		tr := newTransport(t, legacyBase(t, s.CertPool()))
		var forgot int
		trace := &Trace{Forgot: func(MemoryInfo) { forgot++ }}
		for i := range 4 {
			if resp := get(t, tr, s, trace); resp.StatusCode != 200 || resp.Proto != "HTTP/1.1" {
				t.Fatalf("request %d: %d over %s", i, resp.StatusCode, resp.Proto)
			}
		}
		if forgot != 1 {
			t.Errorf("HTTP/3 tried and forgotten %d times, want once per broken period", forgot)
		}
	})
}

// alternativeFor: where HTTP/3 is reached for an origin, or a refusal.
func TestAlternativeFor(t *testing.T) {
	for _, tt := range []struct {
		origin, alt string // alt as in Alt-Svc: h3="alt"
		want        string // "-": refused; "": the origin's own
	}{
		{"https://o.test/", ":443", ""},
		{"https://o.test/", "O.TEST:443", ""},
		{"https://o.test/", ":0443", ""},
		{"https://o.test:8443/", ":8443", ""},
		{"https://o.test/", ":8443", "o.test:8443"},
		{"https://o.test/", "alt.test:443", "alt.test:443"},
		{"https://o.test/", "alt.test:0443", "alt.test:443"},
		{"https://[::1]:8443/", "[::1]:9443", "[::1]:9443"},
		{"https://o.test/", "127.0.0.2:443", "127.0.0.2:443"},
		{"https://o.test:8443/", ":443", "-"},            // privileged port from a high one
		{"https://o.test:8443/", "alt.test:80", "-"},     // the same
		{"https://o.test/", "a b:443", "-"},              // not a host
		{"https://o.test/", "a/b@c:443", "-"},            // not a host
		{"https://o.test/", "-a.test:443", "-"},          // not a host
		{"https://o.test/", "b\u00fccher.test:443", "-"}, // not ASCII: punycode is the wire form
	} {
		host, port, err := net.SplitHostPort(tt.alt)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := alternativeFor(mustParse(tt.origin), altService{protocol: "h3", host: host, port: port})
		if !ok {
			got = "-"
		}
		if got != tt.want {
			t.Errorf("%s, h3=%q: %q, want %q", tt.origin, tt.alt, got, tt.want)
		}
	}
}

func mustParse(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}
