package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/h426/upgrade"
	"github.com/h426/upgrade/internal/testserver"
)

// rowTimeout bounds one demo row, so a hang shows as a FAIL, not a stall.
// It leaves room for the 2 s an unreachable HTTP/3 costs before fallback.
const rowTimeout = 5 * time.Second

// scenario is one demo row: a loopback server that demands something, and
// how the client should end up.
type scenario struct {
	name   string
	server testserver.Config
	modern bool // the client speaks HTTP/2 and TLS 1.3 from the start
	again  bool // the row shows a second request to the origin, after a first one
	want   outcome
}

// outcome is how a row ends.
type outcome struct {
	status int
	proto  string // resp.Proto
	tls    uint16 // TLS version; 0 means not checked
	seen   int    // requests the server saw
}

// scenarios lists the demo rows. A new kind of upgrade (HTTP/3, RFC 2817,
// origin memory) adds a row here.
func scenarios() []scenario {
	return []scenario{{
		name:   "HTTP/1.1 → HTTP/2",
		server: testserver.Config{TLS: true, Require: testserver.RequireHTTP2, Upgrade: []string{"HTTP/2"}},
		want:   outcome{status: http.StatusOK, proto: "HTTP/2.0", seen: 2},
	}, {
		name:   "HTTP/1.1 → h2c",
		server: testserver.Config{Require: testserver.RequireHTTP2, Upgrade: []string{"h2c"}},
		want:   outcome{status: http.StatusOK, proto: "HTTP/2.0", seen: 2},
	}, {
		// The TLS upgrade keeps the caller's HTTP/1.1.
		name:   "TLS 1.2 → 1.3",
		server: testserver.Config{TLS: true, Require: testserver.RequireTLS13, Upgrade: []string{"TLS/1.3"}},
		want:   outcome{status: http.StatusOK, proto: "HTTP/1.1", tls: tls.VersionTLS13, seen: 2},
	}, {
		// CUPS answers in clear, then switches the same port to TLS.
		name:   "http:// → TLS in-band (RFC 2817)",
		server: testserver.Config{InbandTLS: testserver.InbandCUPS, Require: testserver.RequireTLS, Upgrade: []string{"TLS/1.2,TLS/1.1,TLS/1.0"}},
		want:   outcome{status: http.StatusOK, proto: "HTTP/1.1", tls: tls.VersionTLS12, seen: 3}, // GET, OPTIONS, GET
	}, {
		name:   "HTTP/1.1 → HTTP/3",
		server: testserver.Config{TLS: true, HTTP3: true, Require: testserver.RequireHTTP3, Upgrade: []string{"HTTP/3"}},
		want:   outcome{status: http.StatusOK, proto: "HTTP/3.0", tls: tls.VersionTLS13, seen: 2},
	}, {
		// Servers send Upgrade inside HTTP/2 responses too.
		name:   "HTTP/2 → HTTP/3",
		server: testserver.Config{TLS: true, HTTP3: true, Require: testserver.RequireHTTP3, Upgrade: []string{"h3"}},
		modern: true,
		want:   outcome{status: http.StatusOK, proto: "HTTP/3.0", tls: tls.VersionTLS13, seen: 2},
	}, {
		// nginx with ssl_protocols TLSv1.3: no 426, an alert in the handshake.
		name:   "TLS 1.3 only, handshake refused → 1.3",
		server: testserver.Config{TLS: true, MinTLSVersion: tls.VersionTLS13},
		want:   outcome{status: http.StatusOK, proto: "HTTP/1.1", tls: tls.VersionTLS13, seen: 1},
	}, {
		// Node's http2 server with allowHTTP1: false: the ALPN is refused.
		name:   "h2 only, ALPN refused → HTTP/2",
		server: testserver.Config{TLS: true, HTTP2Only: true},
		want:   outcome{status: http.StatusOK, proto: "HTTP/2.0", seen: 1},
	}, {
		// UDP is dropped: QUIC has the fallback delay alone, then TCP races
		// it and is first; HTTP/2 answers.
		name:   "HTTP/3 unreachable → HTTP/2",
		server: testserver.Config{TLS: true, DropUDP: true, Require: testserver.RequireHTTP2, Upgrade: []string{"HTTP/3, HTTP/2"}},
		want:   outcome{status: http.StatusOK, proto: "HTTP/2.0", seen: 2},
	}, {
		// Caddy's way: no 426, an Alt-Svc on the first answer; the second
		// request opens a new connection over HTTP/3.
		name:   "Alt-Svc: h3, second request",
		server: testserver.Config{TLS: true, HTTP3: true, Handler: advertiseH3},
		again:  true,
		want:   outcome{status: http.StatusOK, proto: "HTTP/3.0", tls: tls.VersionTLS13, seen: 1},
	}, {
		// The origin memory: the first request paid the 426 (server saw 2),
		// the second goes straight to HTTP/2 (server sees 1).
		name:   "second request, remembered",
		server: testserver.Config{TLS: true, Require: testserver.RequireHTTP2, Upgrade: []string{"HTTP/2"}},
		again:  true,
		want:   outcome{status: http.StatusOK, proto: "HTTP/2.0", seen: 1},
	}, {
		name:   "unusable offer",
		server: testserver.Config{TLS: true, Require: testserver.RefuseAll, Upgrade: []string{"websocket"}},
		want:   outcome{status: http.StatusUpgradeRequired, proto: "HTTP/1.1", seen: 1},
	}, {
		// One replay at most: the second 426 is the answer.
		name:   "loop",
		server: testserver.Config{TLS: true, Require: testserver.RefuseAll, Upgrade: []string{"HTTP/2"}},
		want:   outcome{status: http.StatusUpgradeRequired, proto: "HTTP/2.0", seen: 2},
	}}
}

// advertiseH3 answers "ok" with Alt-Svc naming HTTP/3 on the port asked.
var advertiseH3 = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	if _, port, err := net.SplitHostPort(r.Host); err == nil {
		w.Header().Set("Alt-Svc", `h3=":`+port+`"; ma=60`)
	}
	io.WriteString(w, "ok\n")
})

// result is what one row did.
type result struct {
	scenario
	steps   rowTrace
	got     outcome
	elapsed time.Duration
	err     error
}

func (r result) ok() bool {
	g, w := r.got, r.want
	return r.err == nil && g.status == w.status && g.proto == w.proto && g.seen == w.seen &&
		(w.tls == 0 || g.tls == w.tls)
}

// runDemo is "h426 demo".
func runDemo(args []string, stdout, stderr io.Writer) int {
	if len(args) == 1 && (args[0] == "-h" || args[0] == "--help") {
		io.WriteString(stdout, demoHelp)
		return exitOK
	}
	if len(args) > 0 {
		fmt.Fprintf(stderr, "h426: demo takes no arguments, got %q\n", args)
		return exitUsage
	}
	return demo(context.Background(), stdout, stderr, scenarios())
}

// demo plays every row, prints the table, and fails if any row went wrong.
func demo(ctx context.Context, stdout, stderr io.Writer, rows []scenario) int {
	results := make([]result, len(rows))
	for i, sc := range rows {
		results[i] = play(ctx, sc)
	}
	printTable(stdout, results)
	code := exitOK
	for _, r := range results {
		if !r.ok() {
			explain(stderr, r)
			code = exitError
		}
	}
	return code
}

// play runs one row with a fresh server and transport, both closed after.
func play(ctx context.Context, sc scenario) result {
	r := result{scenario: sc}
	srv, err := testserver.Start(sc.server)
	if err != nil {
		r.err = err
		return r
	}
	defer srv.Close()
	// Mostly the legacy client, so that the servers have something to refuse.
	first := legacy
	if sc.modern {
		first = firstRequest{}
	}
	transport := &upgrade.Transport{Base: newBase(first, &tls.Config{RootCAs: srv.CertPool()})}
	defer transport.Close()

	ctx, cancel := context.WithTimeout(ctx, rowTimeout)
	defer cancel()
	seenBefore := 0
	if sc.again {
		if _, err := get(ctx, transport, srv.URL+"/"); err != nil {
			r.err = err
			return r
		}
		seenBefore = srv.Count()
	}
	start := time.Now()
	resp, err := get(upgrade.WithTrace(ctx, r.steps.hooks()), transport, srv.URL+"/")
	r.elapsed = time.Since(start)
	r.got.seen = srv.Count() - seenBefore
	if err != nil {
		r.err = err
		return r
	}
	r.got.status, r.got.proto, r.got.tls = resp.StatusCode, resp.Proto, tlsVersion(resp)
	return r
}

// get sends a GET and reads the response to the end, so the server has
// finished with it before it is counted.
func get(ctx context.Context, rt http.RoundTripper, url string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := newClient(rt, false, nil).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	return resp, err
}

// rowTrace keeps what the upgrade trace said, for the table. Its hooks run
// on the goroutine calling RoundTrip, so it needs no lock.
type rowTrace struct {
	demand string   // the 426 or refused handshake and what it asked for
	steps  []string // what the client did about it, in order
}

func (rt *rowTrace) hooks() *upgrade.Trace {
	return &upgrade.Trace{
		HandshakeRefused: func(info upgrade.HandshakeRefusedInfo) {
			rt.demand = "TLS alert, read as " + protocolList(info.Demand)
		},
		Got426: func(info upgrade.Got426Info) {
			rt.demand = "426 over " + info.Proto + ", offering " + protocolList(info.Offered)
			if info.Err != nil {
				rt.demand = "426 over " + info.Proto + " with a malformed Upgrade"
			}
		},
		Decided: func(info upgrade.DecisionInfo) {
			if info.Reason != nil {
				rt.steps = append(rt.steps, "not upgraded: "+whyNone(info))
			}
		},
		ReplayDone: func(info upgrade.ReplayDoneInfo) {
			if info.Err != nil {
				rt.steps = append(rt.steps, info.Protocol.String()+" failed")
				return
			}
			rt.steps = append(rt.steps, fmt.Sprintf("%s answered %d", info.Protocol, info.StatusCode))
		},
		Remembered: func(info upgrade.MemoryInfo) {
			rt.steps = append(rt.steps, "straight over "+info.Protocol.String()+", remembered")
		},
	}
}

// lines says what the server demanded, then each step, on lines that
// fit in width.
func (rt rowTrace) lines(width int) []string {
	parts := rt.steps
	if rt.demand != "" {
		parts = append([]string{rt.demand}, parts...)
	}
	if len(parts) == 0 {
		return []string{"no demand"}
	}
	lines := []string{parts[0]}
	for _, p := range parts[1:] {
		last := &lines[len(lines)-1]
		if utf8.RuneCountInString(*last)+len(" → ")+len(p) > width {
			lines = append(lines, "→ "+p)
			continue
		}
		*last += " → " + p
	}
	return lines
}

// whyNone says why nothing was tried: the reason each offer was skipped
// when that is all there is to say, otherwise the transport's reason.
func whyNone(info upgrade.DecisionInfo) string {
	if !errors.Is(info.Reason, upgrade.ErrNoUsableOffer) || len(info.Skipped) == 0 {
		return short(info.Reason)
	}
	why := make([]string, len(info.Skipped))
	for i, s := range info.Skipped {
		why[i] = s.Protocol.String() + " " + short(s.Reason)
	}
	return strings.Join(why, "; ")
}

// short drops the package prefix the library puts on every error.
func short(err error) string {
	return strings.TrimPrefix(err.Error(), "upgrade: ")
}

// tableLegend heads the demo's table.
const tableLegend = `Each scenario starts a strict server on loopback and sends it a GET, with
a client that speaks HTTP/1.1 and TLS 1.2 at most unless the name says
otherwise. ANSWER is what the client got in the end; SEEN is how many
requests reached the server; the line below each row says what the server
demanded first and what the client did about it.

`

// The table fits in tableWidth columns: the steps, the widest part, wrap.
const (
	tableWidth  = 80
	stepsIndent = "      "
)

// printTable prints a line per row and its steps below it; fmt pads by
// runes, so the arrows in the names line up.
func printTable(w io.Writer, results []result) {
	io.WriteString(w, tableLegend)
	nameWidth := len("SCENARIO")
	for _, r := range results {
		nameWidth = max(nameWidth, utf8.RuneCountInString(r.name))
	}
	fmt.Fprintf(w, "%-4s  %-*s  %-20s  %4s  %s\n", "", nameWidth, "SCENARIO", "ANSWER", "SEEN", "TIME")
	for _, r := range results {
		fmt.Fprintf(w, "%-4s  %-*s  %-20s  %4d  %s\n",
			verdict(r), nameWidth, r.name, answerColumn(r), r.got.seen, r.elapsed.Round(100*time.Microsecond))
		for _, line := range r.steps.lines(tableWidth - len(stepsIndent)) {
			fmt.Fprintf(w, "%s%s\n", stepsIndent, line)
		}
	}
}

// answerColumn is the final status, HTTP version and TLS version.
func answerColumn(r result) string {
	if r.err != nil {
		return "error"
	}
	return fmt.Sprintf("%d %s %s", r.got.status, r.got.proto, tlsName(r.got.tls))
}

func verdict(r result) string {
	if r.ok() {
		return "ok"
	}
	return "FAIL"
}

// explain says on stderr how a failed row differs from what it should be.
func explain(w io.Writer, r result) {
	if r.err != nil {
		fmt.Fprintf(w, "h426 demo: %s: %v\n", r.name, r.err)
		return
	}
	fmt.Fprintf(w, "h426 demo: %s: got %s, want %s\n", r.name, r.got, r.want)
}

func (o outcome) String() string {
	s := fmt.Sprintf("status %d over %s, server saw %d", o.status, o.proto, o.seen)
	if o.tls != 0 {
		s += ", " + tls.VersionName(o.tls)
	}
	return s
}
