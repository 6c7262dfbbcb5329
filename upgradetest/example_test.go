package upgradetest_test

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/h426/upgrade"
	"github.com/h426/upgrade/upgradetest"
)

// The server answers HTTP/1.1 with 426 and "upgrade: HTTP/2.0"; the
// upgrade.Transport replays the request over HTTP/2.
func ExampleNewHTTP2Server() {
	srv := upgradetest.NewHTTP2Server(nil)
	defer srv.Close()
	transport := &upgrade.Transport{Base: srv.Client().Transport}
	defer transport.Close()

	resp, err := (&http.Client{Transport: transport}).Get(srv.URL)
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	fmt.Println(resp.Status, resp.Proto)
	fmt.Println("refused:", srv.Refused(), "served over HTTP/2:", srv.Served("HTTP/2.0"))
	// Output:
	// 200 OK HTTP/2.0
	// refused: 1 served over HTTP/2: 1
}

// The server answers 426 with "Upgrade: HTTP/3" over TCP and serves
// HTTP/3 on the UDP port of the same number.
func ExampleNewHTTP3Server() {
	srv := upgradetest.NewHTTP3Server(nil)
	defer srv.Close()
	transport := &upgrade.Transport{Base: srv.Client().Transport}
	defer transport.Close()

	resp, err := (&http.Client{Transport: transport}).Get(srv.URL)
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	fmt.Println(resp.Status, resp.Proto)
	for _, r := range srv.Requests() {
		fmt.Println("server saw", r.Proto, "refused:", r.Refused)
	}
	// Output:
	// 200 OK HTTP/3.0
	// server saw HTTP/1.1 refused: true
	// server saw HTTP/3.0 refused: false
}

// The server never refuses; its Alt-Svc header sends the requests after
// the first over HTTP/3.
func ExampleNewAltSvcServer() {
	srv := upgradetest.NewAltSvcServer(nil)
	defer srv.Close()
	transport := &upgrade.Transport{Base: srv.Client().Transport}
	defer transport.Close()
	client := &http.Client{Transport: transport}

	for range 2 {
		resp, err := client.Get(srv.URL)
		if err != nil {
			panic(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		fmt.Println(resp.Status, resp.Proto)
	}
	// Output:
	// 200 OK HTTP/1.1
	// 200 OK HTTP/3.0
}

// A server that demands TLS 1.3 says so with 426 "upgrade: TLS/1.3"; the
// replay keeps HTTP/1.1 over a new TLS 1.3 connection.
func ExampleNewTLSServer() {
	srv := upgradetest.NewTLSServer(tls.VersionTLS13, nil)
	defer srv.Close()
	transport := &upgrade.Transport{Base: srv.Client().Transport}
	defer transport.Close()

	resp, err := (&http.Client{Transport: transport}).Get(srv.URL)
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	fmt.Println(resp.Status, resp.Proto, tls.VersionName(resp.TLS.Version))
	// Output:
	// 200 OK HTTP/1.1 TLS 1.3
}

// A server that speaks TLS 1.3 only refuses in the handshake, as nginx
// does; the transport reads the alert as a demand for TLS 1.3.
func ExampleNewTLS13OnlyServer() {
	srv := upgradetest.NewTLS13OnlyServer(nil)
	defer srv.Close()

	_, err := srv.Client().Get(srv.URL)
	fmt.Println("alone:", err != nil)

	transport := &upgrade.Transport{Base: srv.Client().Transport}
	defer transport.Close()
	resp, err := (&http.Client{Transport: transport}).Get(srv.URL)
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	fmt.Println("upgraded:", resp.Status, tls.VersionName(resp.TLS.Version))
	// Output:
	// alone: true
	// upgraded: 200 OK TLS 1.3
}

// Printers (CUPS) answer in clear with 426 and switch the same port to TLS
// when asked with "OPTIONS *" (RFC 2817).
func ExampleNewInbandServer() {
	srv := upgradetest.NewInbandServer(nil)
	defer srv.Close()
	transport := &upgrade.Transport{Base: srv.Client().Transport}
	defer transport.Close()

	resp, err := (&http.Client{Transport: transport}).Get(srv.URL + "/jobs")
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	fmt.Println(resp.Status, resp.Request.URL.Scheme, "inside", tls.VersionName(resp.TLS.Version))
	for _, r := range srv.Requests() {
		fmt.Println("server saw", r.Method, r.Path, "TLS:", r.TLSVersion != 0, "refused:", r.Refused)
	}
	// Output:
	// 200 OK http inside TLS 1.2
	// server saw GET /jobs TLS: false refused: true
	// server saw OPTIONS * TLS: false refused: false
	// server saw GET /jobs TLS: true refused: false
}

// The client alone meets the refusal: it speaks HTTP/1.1 with TLS 1.2 at
// most, as an old SDK would.
func ExampleServer_Client() {
	srv := upgradetest.NewHTTP2Server(nil)
	defer srv.Close()

	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.Status, resp.Proto, "upgrade:", resp.Header.Get("Upgrade"))
	fmt.Print(string(body))
	// Output:
	// 426 Upgrade Required HTTP/1.1 upgrade: HTTP/2.0
	// 426 upgrade required
}

// A handler of one's own serves the requests that meet the demand, and
// reads their body.
func ExampleNewServer() {
	srv := upgradetest.NewServer(upgradetest.Config{
		Require: func(r *http.Request) bool { return r.ProtoMajor == 2 },
		Upgrade: []string{"h2c"},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			fmt.Fprintf(w, "%s got %q\n", r.Proto, body)
		}),
	})
	defer srv.Close()
	transport := &upgrade.Transport{Base: srv.Client().Transport}
	defer transport.Close()

	resp, err := (&http.Client{Transport: transport}).Post(srv.URL, "text/plain", strings.NewReader("hello"))
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Print(string(body))
	// Output:
	// HTTP/2.0 got "hello"
}
