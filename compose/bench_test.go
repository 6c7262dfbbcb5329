package compose_test

import (
	"net/http"
	"net/url"
	"testing"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/metric/noop"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
	"golang.org/x/oauth2"
)

// fakeTransport answers every request at once with an empty 200, as a
// transport whose network costs nothing would.
type fakeTransport struct{}

func (fakeTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		req.Body.Close()
	}
	return &http.Response{StatusCode: http.StatusOK, Proto: "HTTP/1.1", Body: http.NoBody, Request: req}, nil
}

// BenchmarkOverhead measures, for scale, what the middleware users already
// pay costs per request over the same fake transport as the root package's
// BenchmarkOverhead: subtract "fake" from each.
func BenchmarkOverhead(b *testing.B) {
	req := &http.Request{Method: "GET", URL: &url.URL{Scheme: "https", Host: "strict.test"}, Host: "strict.test", Header: http.Header{}}
	req = req.WithContext(b.Context())
	for _, tt := range []struct {
		name string
		rt   http.RoundTripper
	}{
		{"fake", fakeTransport{}},
		{"oauth2", &oauth2.Transport{Source: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "t0ken"}), Base: fakeTransport{}}},
		{"otelhttp-noop", otelhttp.NewTransport(fakeTransport{},
			otelhttp.WithTracerProvider(tracenoop.NewTracerProvider()), otelhttp.WithMeterProvider(noop.NewMeterProvider()))},
	} {
		b.Run(tt.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				resp, err := tt.rt.RoundTrip(req)
				if err != nil {
					b.Fatal(err)
				}
				resp.Body.Close()
			}
		})
	}
}
