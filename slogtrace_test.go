package upgrade

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/h426/upgrade/internal/testserver"
)

// SlogTrace logs a first contact, then a remembered request at Debug only.
func TestSlogTrace(t *testing.T) {
	forEachPair(t, func(t *testing.T, p upgradePair) {
		s := startServer(t, p.server)
		tr := newTransport(t, legacyBase(t, s.CertPool()))
		var logs bytes.Buffer
		logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		for range 2 {
			resp, err := tr.RoundTrip(newRequest(t, WithTrace(testContext(t), SlogTrace(logger)), "GET", s.URL, nil))
			if err != nil {
				t.Fatal(err)
			}
			readAll(t, resp)
		}
		offer := p.server.Upgrade[0]
		want := []string{
			`msg="upgrade: 426 Upgrade Required" offered=` + quoteIfNeeded(offer) + ` proto=HTTP/1.1`,
			`msg="upgrade: decided" candidates=` + quoteIfNeeded(offer),
			`msg="upgrade: replaying" protocol=` + offer,
			`msg="upgrade: learned" origin=` + s.URL,
			`msg="upgrade: replay done" protocol=` + offer + ` status=200 proto=` + p.wantProto,
			`level=DEBUG msg="upgrade: remembered" origin=` + s.URL,
		}
		got := logs.String()
		for _, w := range want {
			if !strings.Contains(got, w) {
				t.Errorf("log lacks %q:\n%s", w, got)
			}
		}
	})
}

// Learning an Alt-Svc, and a race of QUIC against TCP, are logged with
// what a reader needs: where, for how long, who won.
func TestSlogTraceAltSvcAndRace(t *testing.T) {
	t.Run("Alt-Svc", func(t *testing.T) {
		s := altSvcServer(t, testserver.Config{HTTP3: true}, func(port string) string { return `h3=":` + port + `"; ma=60` })
		tr := newTransport(t, legacyBase(t, s.CertPool()))
		wantLogged(t, tr, s.URL, `msg="upgrade: Alt-Svc" origin=`+s.URL+` protocol=h3 max_age=1m0s`)
	})
	t.Run("race", func(t *testing.T) {
		s := startServer(t, testserver.Config{TLS: true, DropUDP: true})
		tr := newTransport(t, legacyBase(t, s.CertPool()))
		tr.HTTP3FallbackDelay = 50 * time.Millisecond
		remember(t, tr, s.URL, "HTTP/3")
		wantLogged(t, tr, s.URL, `msg="upgrade: QUIC raced TCP" addr=`+mustParse(s.URL).Host+` winner=TCP`)
	})
}

// wantLogged sends a GET to url with SlogTrace and fails unless the log has want.
func wantLogged(t *testing.T, tr *Transport, url, want string) {
	t.Helper()
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	resp, err := tr.RoundTrip(newRequest(t, WithTrace(testContext(t), SlogTrace(logger)), "GET", url, nil))
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	if !strings.Contains(logs.String(), want) {
		t.Errorf("log lacks %q:\n%s", want, logs.String())
	}
}

func quoteIfNeeded(s string) string {
	if strings.ContainsAny(s, " ,") {
		return `"` + s + `"`
	}
	return s
}
