package upgrade_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"

	"github.com/h426/upgrade"
	"github.com/h426/upgrade/upgradetest"
)

// A client that speaks HTTP/1.1 meets a server that demands HTTP/2: the
// request is replayed once over HTTP/2 and the caller sees only the answer.
func Example() {
	server := upgradetest.NewHTTP2Server(nil) // 426 to HTTP/1.1, "upgrade: HTTP/2.0"
	defer server.Close()

	legacy := &http.Transport{
		Protocols:       http1Only(),
		TLSClientConfig: &tls.Config{RootCAs: server.CertPool()},
	}
	transport := &upgrade.Transport{Base: legacy}
	defer transport.Close()
	client := &http.Client{Transport: transport}

	resp, err := client.Get(server.URL)
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.Status, resp.Proto, string(body))
	fmt.Println("requests the server saw:", server.Count())
	// Output:
	// 200 OK HTTP/2.0 ok
	//
	// requests the server saw: 2
}

// A trace shows what the server offered and what the transport chose.
func ExampleWithTrace() {
	server := upgradetest.NewServer(upgradetest.Config{
		Require: func(r *http.Request) bool { return r.ProtoMajor == 2 },
		Upgrade: []string{"websocket, h2c"},
	})
	defer server.Close()
	transport := &upgrade.Transport{Base: &http.Transport{Protocols: http1Only()}}
	defer transport.Close()

	trace := &upgrade.Trace{
		Got426: func(info upgrade.Got426Info) {
			fmt.Println("426 over", info.Proto, "offering", info.Offered)
		},
		Decided: func(info upgrade.DecisionInfo) {
			for _, s := range info.Skipped {
				fmt.Println("skipped", s.Protocol, "-", s.Reason)
			}
			fmt.Println("trying", info.Candidates)
		},
		ReplayDone: func(info upgrade.ReplayDoneInfo) {
			fmt.Println("replayed over", info.Protocol, "got", info.Proto)
		},
	}
	req, _ := http.NewRequestWithContext(upgrade.WithTrace(context.Background(), trace), "GET", server.URL, nil)
	resp, err := transport.RoundTrip(req)
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	// Output:
	// 426 over HTTP/1.1 offering [websocket h2c]
	// skipped websocket - upgrade: not an upgrade this transport makes
	// trying [h2c]
	// replayed over h2c got HTTP/2.0
}

// When every usable offer fails before a response, the error says why for
// each, and still carries the 426.
func ExampleUpgradeError() {
	server := upgradetest.NewServer(upgradetest.Config{
		TLS:       true,
		HTTP1Only: true, // offers HTTP/2 but cannot speak it
		Require:   func(r *http.Request) bool { return r.ProtoMajor == 2 },
		Upgrade:   []string{"HTTP/2"},
	})
	defer server.Close()
	transport := &upgrade.Transport{Base: &http.Transport{
		Protocols:       http1Only(),
		TLSClientConfig: &tls.Config{RootCAs: server.CertPool()},
	}}
	defer transport.Close()

	_, err := (&http.Client{Transport: transport}).Get(server.URL)
	var upgradeErr *upgrade.UpgradeError
	if errors.As(err, &upgradeErr) {
		fmt.Println("offered:", upgradeErr.Offered)
		fmt.Println("attempts:", len(upgradeErr.Attempts), "first:", upgradeErr.Attempts[0].Protocol)
		fmt.Println("426 still readable:", upgradeErr.Response.StatusCode)
	}
	// Output:
	// offered: [HTTP/2]
	// attempts: 1 first: HTTP/2
	// 426 still readable: 426
}

func http1Only() *http.Protocols {
	p := new(http.Protocols)
	p.SetHTTP1(true)
	return p
}

// SlogTrace puts each step of an upgrade in a log/slog log.
func ExampleSlogTrace() {
	server := upgradetest.NewHTTP2Server(nil)
	defer server.Close()
	transport := &upgrade.Transport{Base: server.Client().Transport}
	defer transport.Close()

	logger := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey || a.Key == "origin" { // they change from run to run
				return slog.Attr{}
			}
			return a
		},
	}))
	ctx := upgrade.WithTrace(context.Background(), upgrade.SlogTrace(logger))
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, server.URL, nil)
	resp, err := transport.RoundTrip(req)
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	// Output:
	// level=INFO msg="upgrade: 426 Upgrade Required" offered=HTTP/2.0 proto=HTTP/1.1
	// level=INFO msg="upgrade: decided" candidates=HTTP/2.0
	// level=INFO msg="upgrade: replaying" protocol=HTTP/2.0
	// level=INFO msg="upgrade: learned" protocol=HTTP/2.0
	// level=INFO msg="upgrade: replay done" protocol=HTTP/2.0 status=200 proto=HTTP/2.0
}
