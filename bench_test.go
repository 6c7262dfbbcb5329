package upgrade

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/h426/upgrade/internal/testserver"
	"github.com/quic-go/quic-go/http3"
)

// The benchmarks measure what the wrapper costs against the transport it
// ends up using, in the same run: interleaved on loopback
// (BenchmarkLoopbackAB, BenchmarkFirstContact) and with fake transports
// that answer at once, so only the wrapper's own work is timed
// (BenchmarkOverhead). scripts/bench runs them pinned and prints a table.
// Their names are fixed so results compare across versions.

// benchRequest sends one request and reads the whole answer.
func benchRequest(b *testing.B, rt http.RoundTripper, method, url string, body []byte, wantProto string) {
	var req *http.Request
	var err error
	if body == nil {
		req, err = http.NewRequest(method, url, nil)
	} else {
		req, err = http.NewRequest(method, url, bytes.NewReader(body))
	}
	if err != nil {
		b.Fatal(err)
	}
	resp, err := rt.RoundTrip(req)
	if err != nil {
		b.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Proto != wantProto {
		b.Fatalf("%d over %s, want 200 over %s", resp.StatusCode, resp.Proto, wantProto)
	}
}

// abbaBlock is how long one block of requests runs before the other side
// gets the machine: long enough that a block's start costs little, short
// enough that the machine's drift is the same for both sides of a quad.
const abbaBlock = 1500 * time.Microsecond

// measureAB times bare and wrapped interleaved inside one benchmark: each
// iteration is a quad of blocks, A B B A then B A A B, so that the block
// right after a switch (about 1.4 % slower on this machine) falls on both
// sides equally, linear drift cancels, and neither side is always first. It reports the median of the per-quad ratios
// wrapped/bare (medratio) with a bootstrap 95 % interval (lo, hi), and each
// side's ns per unit of work. Run it pinned: -cpu 1 under taskset
// (scripts/bench).
func measureAB(b *testing.B, bare, wrapped func()) (bareNS, wrappedNS float64) {
	bare()
	wrapped() // warm: connections, memory
	perBlock := 0
	for start := time.Now(); time.Since(start) < abbaBlock; perBlock++ {
		bare()
	}
	perBlock = max(perBlock, 1)
	block := func(f func()) time.Duration {
		start := time.Now()
		for range perBlock {
			f()
		}
		return time.Since(start)
	}
	var ratios []float64
	var bareTotal, wrappedTotal time.Duration
	quad := 0
	for b.Loop() {
		// A B B A, then B A A B: each side as often first in a quad.
		first, second := bare, wrapped
		if quad++; quad%2 == 0 {
			first, second = wrapped, bare
		}
		x1 := block(first)
		y1 := block(second)
		y2 := block(second)
		x2 := block(first)
		a1, a2, w1, w2 := x1, x2, y1, y2
		if quad%2 == 0 {
			a1, a2, w1, w2 = y1, y2, x1, x2
		}
		bareTotal += a1 + a2
		wrappedTotal += w1 + w2
		ratios = append(ratios, float64(w1+w2)/float64(a1+a2))
	}
	med, lo, hi := medianInterval(ratios)
	units := float64(2 * perBlock * len(ratios))
	b.ReportMetric(med, "medratio")
	b.ReportMetric(lo, "lo")
	b.ReportMetric(hi, "hi")
	bareNS, wrappedNS = float64(bareTotal.Nanoseconds())/units, float64(wrappedTotal.Nanoseconds())/units
	b.ReportMetric(bareNS, "bare-ns/req")
	b.ReportMetric(wrappedNS, "upgrade-ns/req")
	return bareNS, wrappedNS
}

// medianInterval returns the median of xs and a 95 % bootstrap interval
// for it (2000 resamples, a fixed seed so that runs compare).
func medianInterval(xs []float64) (med, lo, hi float64) {
	median := func(v []float64) float64 {
		s := slices.Clone(v)
		slices.Sort(s)
		n := len(s)
		if n%2 == 1 {
			return s[n/2]
		}
		return (s[n/2-1] + s[n/2]) / 2
	}
	rng := rand.New(rand.NewPCG(1, 2))
	meds := make([]float64, 2000)
	sample := make([]float64, len(xs))
	for i := range meds {
		for j := range sample {
			sample[j] = xs[rng.IntN(len(xs))]
		}
		meds[i] = median(sample)
	}
	slices.Sort(meds)
	return median(xs), meds[len(meds)*25/1000], meds[len(meds)*975/1000]
}

// remembered describes one target: a server that demands it, and the bare
// transport that speaks it from the start.
type remembered struct {
	name   string
	server testserver.Config
	bare   func(b *testing.B, s *testserver.Server) http.RoundTripper
	proto  string
}

var rememberedTargets = []remembered{
	{"h2", testserver.Config{TLS: true, Require: testserver.RequireHTTP2, Upgrade: []string{"HTTP/2"}},
		func(b *testing.B, s *testserver.Server) http.RoundTripper {
			bare := legacyBase(b, s.CertPool()) // the same TLS settings the upgraded transport inherits
			bare.Protocols = new(http.Protocols)
			bare.Protocols.SetHTTP2(true)
			return bare
		}, "HTTP/2.0"},
	{"h3", testserver.Config{TLS: true, HTTP3: true, Require: testserver.RequireHTTP3, Upgrade: []string{"HTTP/3"}},
		func(b *testing.B, s *testserver.Server) http.RoundTripper {
			bare := &http3.Transport{TLSClientConfig: &tls.Config{RootCAs: s.CertPool()}}
			b.Cleanup(func() { bare.Close() })
			return bare
		}, "HTTP/3.0"},
	{"tls13", testserver.Config{TLS: true, Require: testserver.RequireTLS13, Upgrade: []string{"TLS/1.3"}},
		func(b *testing.B, s *testserver.Server) http.RoundTripper {
			bare := legacyBase(b, s.CertPool())
			bare.TLSClientConfig.MinVersion, bare.TLSClientConfig.MaxVersion = tls.VersionTLS13, tls.VersionTLS13
			return bare
		}, "HTTP/1.1"},
}

// BenchmarkLoopbackAB: the wrapper against the transport it ends up using,
// interleaved over loopback: pass-through (no 426) against the same
// HTTP/1.1 transport bare, and each remembered target against a bare
// transport that speaks it from the start.
func BenchmarkLoopbackAB(b *testing.B) {
	b.Run("pass", func(b *testing.B) {
		s := startServer(b, testserver.Config{HTTP1Only: true})
		base := legacyBase(b, nil)
		up := newTransport(b, base)
		bare := func() { benchRequest(b, base, "GET", s.URL, nil, "HTTP/1.1") }
		wrapped := func() { benchRequest(b, up, "GET", s.URL, nil, "HTTP/1.1") }
		measureAB(b, bare, wrapped)
		reportAllocs(b, bare, wrapped, nil, nil)
	})
	for _, target := range rememberedTargets {
		b.Run(target.name, func(b *testing.B) {
			s := startServer(b, target.server)
			up := newTransport(b, legacyBase(b, s.CertPool()))
			benchRequest(b, up, "GET", s.URL, nil, target.proto) // learns the origin
			bare := underlying(b, up, target.proto)
			send := func(rt http.RoundTripper, body []byte) func() {
				method := "GET"
				if body != nil {
					method = "POST"
				}
				return func() { benchRequest(b, rt, method, s.URL, body, target.proto) }
			}
			measureAB(b, send(bare, nil), send(up, nil))
			body := []byte("a request body")
			reportAllocs(b, send(bare, nil), send(up, nil), send(bare, body), send(up, body))
		})
	}
	// HTTP/3 learned from Alt-Svc rather than a 426: the same steady state.
	b.Run("altsvc", func(b *testing.B) {
		s := altSvcServer(b, testserver.Config{HTTP3: true}, func(port string) string { return `h3=":` + port + `"` })
		up := newTransport(b, legacyBase(b, s.CertPool()))
		benchRequest(b, up, "GET", s.URL, nil, "HTTP/1.1") // learns the advertisement
		benchRequest(b, up, "GET", s.URL, nil, "HTTP/3.0")
		bare := underlying(b, up, "HTTP/3.0")
		measureAB(b,
			func() { benchRequest(b, bare, "GET", s.URL, nil, "HTTP/3.0") },
			func() { benchRequest(b, up, "GET", s.URL, nil, "HTTP/3.0") })
	})
	// An Alt-Svc where nothing answers QUIC: after one fallback, HTTP/3 is
	// marked broken and every request goes through Base, against Base
	// alone. No request may try QUIC again: nothing is remembered, so each
	// goes straight to Base.
	b.Run("udp-dropped", func(b *testing.B) {
		s := altSvcServer(b, testserver.Config{DropUDP: true}, func(port string) string { return `h3=":` + port + `"` })
		base := legacyBase(b, s.CertPool())
		up := newTransport(b, base)
		benchRequest(b, up, "GET", s.URL, nil, "HTTP/1.1") // learns the advertisement
		benchRequest(b, up, "GET", s.URL, nil, "HTTP/1.1") // QUIC gives way after the fallback delay
		measureAB(b,
			func() { benchRequest(b, base, "GET", s.URL, nil, "HTTP/1.1") },
			func() { benchRequest(b, up, "GET", s.URL, nil, "HTTP/1.1") })
		if m := up.mem.Load(); !m.empty() || !up.broken.any() {
			b.Error("HTTP/3 is remembered or not marked broken: requests may have tried QUIC")
		}
	})
	// Two bare transports alike in every way but their connections: what
	// comparing separate pools costs the instrument, and why the targets
	// above are measured against the very transport the wrapper uses.
	b.Run("control", func(b *testing.B) {
		target := rememberedTargets[len(rememberedTargets)-1]
		s := startServer(b, target.server)
		one, other := target.bare(b, s), target.bare(b, s)
		measureAB(b,
			func() { benchRequest(b, one, "GET", s.URL, nil, target.proto) },
			func() { benchRequest(b, other, "GET", s.URL, nil, target.proto) })
	})
}

// reportAllocs reports the allocations the wrapper adds to a request
// over loopback, inner transports included (overhead-allocs), and to one
// with a body (overhead-allocs-body) when given. They count the whole
// process, the server too, which does the same work for both sides;
// HTTP/3's own count varies a little from request to request.
func reportAllocs(b *testing.B, bare, wrapped, bareBody, wrappedBody func()) {
	const runs = 500
	b.ReportMetric(testing.AllocsPerRun(runs, wrapped)-testing.AllocsPerRun(runs, bare), "overhead-allocs")
	if bareBody != nil {
		b.ReportMetric(testing.AllocsPerRun(runs, wrappedBody)-testing.AllocsPerRun(runs, bareBody), "overhead-allocs-body")
	}
}

// underlying returns the bare transport beneath up's only inner transport,
// net/http's or quic-go's, with the same connections: against it, the
// ratio is what the wrapper and its inner transport add, and nothing else.
func underlying(b *testing.B, up *Transport, proto string) http.RoundTripper {
	inner := up.inner.all()
	if len(inner) != 1 {
		b.Fatalf("%d inner transports, want 1", len(inner))
	}
	switch rt := inner[0].(type) {
	case *tcpTransport:
		return rt.RoundTripper
	case *http3Transport:
		return rt.Transport
	}
	b.Fatalf("inner transport %T for %s", inner[0], proto)
	return nil
}

// BenchmarkFirstContact: 100 requests to an origin met for the first time,
// each unit a new origin (a new Host on the same server), against an
// oracle that knows to pay the 426 once and then speaks HTTP/2. The
// wrapper's extra work is the replay and learning the origin.
func BenchmarkFirstContact(b *testing.B) {
	s := startServer(b, testserver.Config{TLS: true, Require: testserver.RequireHTTP2, Upgrade: []string{"HTTP/2"}})
	// The oracle uses the very connections the wrapper does: its Base for
	// the 426, the HTTP/2 transport beneath it for the rest.
	legacy := legacyBase(b, s.CertPool())
	up := newTransport(b, legacy)
	benchRequest(b, up, "GET", s.URL, nil, "HTTP/2.0")
	h2 := underlying(b, up, "HTTP/2.0")
	origin := 0
	send := func(rt http.RoundTripper, host string, want int) {
		req, err := http.NewRequest("GET", s.URL, nil)
		if err != nil {
			b.Fatal(err)
		}
		req.Host = host
		resp, err := rt.RoundTrip(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			b.Fatalf("status %d, want %d", resp.StatusCode, want)
		}
	}
	measureAB(b,
		func() {
			origin++
			host := fmt.Sprintf("origin-%d.test", origin)
			send(legacy, host, http.StatusUpgradeRequired)
			for range 100 {
				send(h2, host, http.StatusOK)
			}
		},
		func() {
			origin++
			host := fmt.Sprintf("origin-%d.test", origin)
			for range 100 {
				send(up, host, http.StatusOK)
			}
		})
}

// fakeTransport answers every request at once with an empty 200 over TLS,
// as a transport whose network costs nothing would.
type fakeTransport struct{ proto string }

var fakeTLS = &tls.ConnectionState{Version: tls.VersionTLS13, HandshakeComplete: true}

func (f fakeTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		req.Body.Close()
	}
	return &http.Response{StatusCode: http.StatusOK, Proto: f.proto, ProtoMajor: 1, ProtoMinor: 1, TLS: fakeTLS, Body: http.NoBody, Request: req}, nil
}

// BenchmarkOverhead: the wrapper's own time and allocations per request,
// over fake transports that answer at once: pass-through with nothing
// remembered and with a full memory of other origins, and each remembered
// target. "-parallel" runs 256 goroutines on the one origin. overhead-ns
// and overhead-allocs are per request, against the fake alone.
func BenchmarkOverhead(b *testing.B) {
	req := &http.Request{Method: "GET", URL: &url.URL{Scheme: "https", Host: "strict.test"}, Host: "strict.test", Header: http.Header{}}
	req = req.WithContext(b.Context())
	paths := []struct {
		name   string
		target target // zero: pass-through
		full   bool   // the memory holds defaultMemorySize other origins
		body   bool   // a POST whose body GetBody makes again, as http.NewRequest gives
	}{
		{"pass", target{}, false, false},
		{"pass-fullmemory", target{}, true, false},
		{"h2", target{kind: targetHTTP2}, false, false},
		{"h3", target{kind: targetHTTP3}, false, false},
		{"h3-body", target{kind: targetHTTP3}, false, true},
		{"tls13", target{kind: targetTLS, minTLS: tls.VersionTLS13}, false, false},
	}
	for _, p := range paths {
		req := req
		if p.body {
			payload := []byte("a request body")
			req = req.Clone(req.Context())
			req.Method, req.ContentLength = "POST", int64(len(payload))
			req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(payload)), nil }
			req.Body, _ = req.GetBody()
		}
		fake := fakeTransport{proto: "HTTP/1.1"}
		tr := &Transport{Base: fake, Template: &http.Transport{}}
		b.Cleanup(func() { tr.Close() })
		expires := time.Now().Add(time.Hour)
		if p.full {
			for i := range defaultMemorySize {
				o := origin{secure: true, host: fmt.Sprintf("other-%04d.test", i)}
				tr.memory().put(o, memoryEntry{via: candidate{offer: Protocol{"HTTP", "2"}, target: target{kind: targetHTTP2}}, expires: expires})
			}
		}
		if p.target.kind != 0 {
			tr.inner.get(p.target, func() http.RoundTripper { return fake })
			tr.memory().put(originOf(req), memoryEntry{via: candidate{offer: Protocol{"X", "1"}, target: p.target}, expires: expires})
		}
		send := func(rt http.RoundTripper) func() {
			return func() {
				resp, _ := rt.RoundTrip(req)
				resp.Body.Close()
			}
		}
		b.Run(p.name, func(b *testing.B) {
			bareNS, wrappedNS := measureAB(b, send(fake), send(tr))
			b.ReportMetric(wrappedNS-bareNS, "overhead-ns")
			b.ReportMetric(testing.AllocsPerRun(1000, send(tr))-testing.AllocsPerRun(1000, send(fake)), "overhead-allocs")
		})
		b.Run(p.name+"-parallel", func(b *testing.B) {
			// A unit is 256 goroutines sending 128 requests each, as a
			// pool of workers would: enough that what starting a
			// goroutine costs (a first deep call may grow its stack, on
			// either side) does not pass for contention.
			const goroutines, each = 256, 128
			inParallel := func(f func()) func() {
				return func() {
					var wg sync.WaitGroup
					for range goroutines {
						wg.Go(func() {
							for range each {
								f()
							}
						})
					}
					wg.Wait()
				}
			}
			bareNS, wrappedNS := measureAB(b, inParallel(send(fake)), inParallel(send(tr)))
			b.ReportMetric((wrappedNS-bareNS)/(goroutines*each), "overhead-ns")
		})
	}
}
