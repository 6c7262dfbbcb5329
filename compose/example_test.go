package compose_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"

	"github.com/h426/upgrade"
	"github.com/h426/upgrade/upgradetest"
	"github.com/hashicorp/go-retryablehttp"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"golang.org/x/oauth2"
)

// oauth2 goes outside the upgrade.Transport, whose Base is the
// *http.Transport: the token is on every request, the one the server
// refused with 426, its replay over HTTP/2 and the later ones.
func Example_oauth2() {
	server := upgradetest.NewHTTP2Server(nil) // 426 to HTTP/1.1, "upgrade: HTTP/2.0"
	defer server.Close()
	http1 := new(http.Protocols)
	http1.SetHTTP1(true) // an HTTP/1.1 client, so the server answers 426

	// Roots, proxy, dialer and timeouts go here; the upgraded connections
	// inherit them.
	base := &http.Transport{Protocols: http1, TLSClientConfig: &tls.Config{RootCAs: server.CertPool()}}
	transport := &upgrade.Transport{Base: base}
	defer transport.Close()
	// oauth2.NewClient, and (*oauth2.Config).Client, build on the client
	// in the context.
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, &http.Client{Transport: transport})
	client := oauth2.NewClient(ctx, oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "secret"}))

	for range 3 {
		resp, err := client.Get(server.URL)
		if err != nil {
			panic(err)
		}
		resp.Body.Close()
		fmt.Println(resp.Status, resp.Proto)
	}
	for _, r := range server.Requests() {
		fmt.Println("server saw", r.Proto, "refused:", r.Refused, "-", r.Header.Get("Authorization"))
	}
	// Output:
	// 200 OK HTTP/2.0
	// 200 OK HTTP/2.0
	// 200 OK HTTP/2.0
	// server saw HTTP/1.1 refused: true - Bearer secret
	// server saw HTTP/2.0 refused: false - Bearer secret
	// server saw HTTP/2.0 refused: false - Bearer secret
	// server saw HTTP/2.0 refused: false - Bearer secret
}

// otelhttp goes outside the upgrade.Transport, whose Base is the
// *http.Transport: one client span per request, and it describes the
// response the caller got, after the upgrade.
func Example_otelhttp() {
	server := upgradetest.NewHTTP2Server(nil) // 426 to HTTP/1.1, "upgrade: HTTP/2.0"
	defer server.Close()
	http1 := new(http.Protocols)
	http1.SetHTTP1(true) // an HTTP/1.1 client, so the server answers 426
	// In a program: sdktrace.WithBatcher(exporter) rather than a recorder.
	recorder := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder))
	defer tp.Shutdown(context.Background())

	base := &http.Transport{Protocols: http1, TLSClientConfig: &tls.Config{RootCAs: server.CertPool()}}
	transport := &upgrade.Transport{Base: base}
	defer transport.Close()
	client := &http.Client{Transport: otelhttp.NewTransport(transport, otelhttp.WithTracerProvider(tp))}

	for range 3 {
		resp, err := client.Get(server.URL)
		if err != nil {
			panic(err)
		}
		resp.Body.Close() // ends the span
	}
	for _, span := range recorder.Ended() {
		attrs := attribute.NewSet(span.Attributes()...)
		status, _ := attrs.Value("http.response.status_code")
		version, _ := attrs.Value("network.protocol.version")
		fmt.Println(span.Name(), status.String(), "HTTP/"+version.String())
	}
	fmt.Println("server saw", server.Count(), "requests,", server.Refused(), "refused")
	// Output:
	// HTTP GET 200 HTTP/2.0
	// HTTP GET 200 HTTP/2.0
	// HTTP GET 200 HTTP/2.0
	// server saw 4 requests, 1 refused
}

// retryablehttp's client sends through the upgrade.Transport, whose Base is
// the *http.Transport: a POST refused with 426 is replayed over HTTP/2 with
// its whole body, and retries, if any, go through the upgrade too.
func Example_retryablehttp() {
	server := upgradetest.NewHTTP2Server(nil) // 426 to HTTP/1.1, "upgrade: HTTP/2.0"
	defer server.Close()
	http1 := new(http.Protocols)
	http1.SetHTTP1(true) // an HTTP/1.1 client, so the server answers 426

	base := &http.Transport{Protocols: http1, TLSClientConfig: &tls.Config{RootCAs: server.CertPool()}}
	transport := &upgrade.Transport{Base: base}
	defer transport.Close()
	client := retryablehttp.NewClient()
	client.Logger = nil
	client.HTTPClient.Transport = transport

	resp, err := client.Post(server.URL+"/upload", "text/plain", []byte("hello, strict server"))
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	fmt.Println(resp.Status, resp.Proto)
	for _, r := range server.Requests() {
		fmt.Println("server saw", r.Method, r.Proto, "refused:", r.Refused, "- body bytes read:", r.BodyLen)
	}
	// Output:
	// 200 OK HTTP/2.0
	// server saw POST HTTP/1.1 refused: true - body bytes read: 0
	// server saw POST HTTP/2.0 refused: false - body bytes read: 20
}
