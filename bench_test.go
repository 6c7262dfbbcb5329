package upgrade

import (
	"io"
	"net/http"
	"testing"

	"github.com/h426/upgrade/internal/testserver"
)

// BenchmarkPassThrough measures what wrapping costs when no 426 is involved:
// the same http.Transport, used bare and through a Transport, in one run.
func BenchmarkPassThrough(b *testing.B) {
	s := startServer(b, testserver.Config{HTTP1Only: true})
	base := legacyBase(b, nil)
	clients := []struct {
		name string
		rt   http.RoundTripper
	}{
		{"bare", base},
		{"upgrade", newTransport(b, base)},
	}
	for _, c := range clients {
		b.Run(c.name, func(b *testing.B) {
			req, err := http.NewRequest("GET", s.URL, nil)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				resp, err := c.rt.RoundTrip(req)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
}
