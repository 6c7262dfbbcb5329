package compose_test

import (
	"bytes"
	"crypto/sha256"
	"io"
	"net/http"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/h426/upgrade"
	"github.com/h426/upgrade/internal/testserver"
	"github.com/hashicorp/go-retryablehttp"
)

// newRetryClient is a retryablehttp.Client over rt that retries at once and
// logs nothing.
func newRetryClient(rt http.RoundTripper) *retryablehttp.Client {
	c := retryablehttp.NewClient()
	c.Logger = nil
	c.RetryWaitMin, c.RetryWaitMax = time.Millisecond, 10*time.Millisecond
	c.HTTPClient.Transport = rt
	return c
}

// A POST through retryablehttp meets the 426 and is replayed over HTTP/2
// with its whole body; the server reads that body once, on the replay, and
// never on the refused request. retryablehttp sees one attempt: the replay
// happens below it.
func TestRetryablehttpPostReplayed(t *testing.T) {
	s := startServer(t, strictH2)
	up := &upgrade.Transport{Base: legacyBase(s)}
	t.Cleanup(func() { up.Close() })
	client := newRetryClient(up)
	var attempts []int
	client.RequestLogHook = func(_ retryablehttp.Logger, _ *http.Request, n int) { attempts = append(attempts, n) }

	payload := body(100 << 10)
	resp, err := client.Post(s.URL+"/upload", "application/octet-stream", payload)
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, resp); resp.StatusCode != 200 || resp.Proto != "HTTP/2.0" || got != "ok\n" {
		t.Errorf("%d over %s, body %q; want 200 over HTTP/2.0", resp.StatusCode, resp.Proto, got)
	}
	if !slices.Equal(attempts, []int{0}) {
		t.Errorf("retryablehttp attempts %v, want [0]", attempts)
	}

	seen := s.Requests()
	if len(seen) != 2 || s.Refused() != 1 {
		t.Fatalf("server saw %d requests, %d refused; want 2 (426, replay), 1", len(seen), s.Refused())
	}
	if r := seen[0]; !r.Refused || r.Proto != "HTTP/1.1" || r.BodyLen != 0 {
		t.Errorf("first request: %s refused=%t, %d body bytes read; want HTTP/1.1, refused, none read", r.Proto, r.Refused, r.BodyLen)
	}
	if r := seen[1]; r.Refused || r.Proto != "HTTP/2.0" || r.Method != http.MethodPost ||
		r.BodyLen != int64(len(payload)) || r.BodySHA256 != sha256.Sum256(payload) {
		t.Errorf("replay: %s %s refused=%t, %d body bytes; want POST over HTTP/2.0 with the %d bytes sent", r.Method, r.Proto, r.Refused, r.BodyLen, len(payload))
	}
}

// The layers compose: the replay over HTTP/2 gets a 503, retryablehttp
// retries, and the retry goes straight over the HTTP/2 the upgrade
// remembered, body and all. retryablehttp sees two attempts, the server
// three requests, one 426.
func TestRetryablehttpRetriesAfterReplay(t *testing.T) {
	var served atomic.Int32
	cfg := strictH2
	cfg.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// testserver has read the body and recorded its length and hash
		// in Requests() before the handler runs.
		if served.Add(1) == 1 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok\n")
	})
	s := startServer(t, cfg)
	up := &upgrade.Transport{Base: legacyBase(s)}
	t.Cleanup(func() { up.Close() })
	client := newRetryClient(up)
	var attempts []int
	client.RequestLogHook = func(_ retryablehttp.Logger, _ *http.Request, n int) { attempts = append(attempts, n) }

	payload := bytes.Repeat([]byte("retry me "), 1000)
	resp, err := client.Post(s.URL+"/upload", "text/plain", payload)
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, resp); resp.StatusCode != 200 || resp.Proto != "HTTP/2.0" || got != "ok\n" {
		t.Errorf("%d over %s, body %q; want 200 over HTTP/2.0", resp.StatusCode, resp.Proto, got)
	}
	if !slices.Equal(attempts, []int{0, 1}) {
		t.Errorf("retryablehttp attempts %v, want [0 1]", attempts)
	}
	if n := served.Load(); n != 2 {
		t.Errorf("handler ran %d times, want 2 (503, then 200)", n)
	}

	seen := s.Requests()
	if len(seen) != 3 || s.Refused() != 1 {
		t.Fatalf("server saw %d requests, %d refused; want 3 (426, replay → 503, retry → 200), 1", len(seen), s.Refused())
	}
	want := []testserver.Request{
		{Proto: "HTTP/1.1", Refused: true},
		{Proto: "HTTP/2.0", BodyLen: int64(len(payload)), BodySHA256: sha256.Sum256(payload)},
		{Proto: "HTTP/2.0", BodyLen: int64(len(payload)), BodySHA256: sha256.Sum256(payload)},
	}
	for i, r := range seen {
		w := want[i]
		if r.Proto != w.Proto || r.Refused != w.Refused || r.BodyLen != w.BodyLen || r.BodySHA256 != w.BodySHA256 {
			t.Errorf("server request %d: %s refused=%t, %d body bytes; want %s refused=%t, %d bytes as sent",
				i, r.Proto, r.Refused, r.BodyLen, w.Proto, w.Refused, w.BodyLen)
		}
	}
}
