package upgrade

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/h426/upgrade/internal/testserver"
	"github.com/quic-go/quic-go/http3"
)

// The benchmarks compare this transport with the one it ends up using,
// measured in the same run: scripts/bench prints the ratios. Their names are
// fixed so results compare across versions.

// pair is a bare transport and an upgrade.Transport, benchmarked side by side.
type pair struct {
	name string
	rt   http.RoundTripper
}

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

// runPairs benchmarks each pair with a small GET and a 64 KiB POST, in
// turn or in parallel.
func runPairs(b *testing.B, pairs []pair, url, wantProto string, parallel bool) {
	post := bytes.Repeat([]byte("x"), 64<<10)
	for _, p := range pairs {
		for _, load := range []struct {
			suffix, method string
			body           []byte
		}{{"", "GET", nil}, {"-post64k", "POST", post}} {
			b.Run(p.name+load.suffix, func(b *testing.B) {
				benchRequest(b, p.rt, load.method, url, load.body, wantProto) // warm: connections, memory
				b.ReportAllocs()
				if !parallel {
					for b.Loop() {
						benchRequest(b, p.rt, load.method, url, load.body, wantProto)
					}
					return
				}
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						benchRequest(b, p.rt, load.method, url, load.body, wantProto)
					}
				})
			})
		}
	}
}

func passThroughPairs(b *testing.B) ([]pair, string) {
	s := startServer(b, testserver.Config{HTTP1Only: true})
	base := legacyBase(b, nil)
	return []pair{{"bare", base}, {"upgrade", newTransport(b, base)}}, s.URL
}

// BenchmarkPassThrough: no 426 involved, the same http.Transport bare and
// wrapped.
func BenchmarkPassThrough(b *testing.B) {
	pairs, url := passThroughPairs(b)
	runPairs(b, pairs, url, "HTTP/1.1", false)
}

func BenchmarkPassThroughParallel(b *testing.B) {
	pairs, url := passThroughPairs(b)
	runPairs(b, pairs, url, "HTTP/1.1", true)
}

// remembered describes one target for BenchmarkRemembered: a server that
// demands it, and the bare transport that speaks it from the start.
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

// BenchmarkRemembered: the origin demanded the protocol once; every timed
// request goes through the memory.
func BenchmarkRemembered(b *testing.B) {
	benchmarkRemembered(b, false)
}

func BenchmarkRememberedParallel(b *testing.B) {
	benchmarkRemembered(b, true)
}

func benchmarkRemembered(b *testing.B, parallel bool) {
	for _, target := range rememberedTargets {
		s := startServer(b, target.server)
		up := newTransport(b, legacyBase(b, s.CertPool()))
		pairs := []pair{{target.name + "-bare", target.bare(b, s)}, {target.name + "-upgrade", up}}
		runPairs(b, pairs, s.URL, target.proto, parallel)
	}
}

// BenchmarkFirstContact: an origin met for the first time, each iteration a
// new one (a new Host on the same server). naive is what a user writes
// without this library: send, see the 426, send again through a second
// client, every time. The -100 variants send 100 requests to each origin.
func BenchmarkFirstContact(b *testing.B) {
	s := startServer(b, testserver.Config{TLS: true, Require: testserver.RequireHTTP2, Upgrade: []string{"HTTP/2"}})
	legacy := legacyBase(b, s.CertPool())
	h2 := legacyBase(b, s.CertPool())
	h2.Protocols = new(http.Protocols)
	h2.Protocols.SetHTTP2(true)
	naive := http.RoundTripper(roundTripFunc(func(req *http.Request) (*http.Response, error) {
		resp, err := legacy.RoundTrip(req)
		if err != nil || resp.StatusCode != http.StatusUpgradeRequired {
			return resp, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return h2.RoundTrip(req)
	}))
	up := newTransport(b, legacyBase(b, s.CertPool()))

	origin := 0
	for _, p := range []pair{{"naive", naive}, {"upgrade", up}} {
		for _, perOrigin := range []int{1, 100} {
			name := p.name
			if perOrigin > 1 {
				name = fmt.Sprintf("%s-%d", p.name, perOrigin)
			}
			b.Run(name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					origin++
					host := fmt.Sprintf("origin-%d.test", origin)
					for range perOrigin {
						req, err := http.NewRequest("GET", s.URL, nil)
						if err != nil {
							b.Fatal(err)
						}
						req.Host = host
						resp, err := p.rt.RoundTrip(req)
						if err != nil {
							b.Fatal(err)
						}
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode != http.StatusOK {
							b.Fatalf("status %d", resp.StatusCode)
						}
					}
				}
			})
		}
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }
