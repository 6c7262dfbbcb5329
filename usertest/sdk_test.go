package upgradeuser

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/h426/upgrade"
	"github.com/h426/upgrade/upgradetest"
)

// Client is an SDK's API client, built as the README's section for SDK
// authors shows.
type Client struct {
	http   *http.Client
	closer io.Closer
}

// NewClient returns the API client. base is the caller's transport (nil:
// http.DefaultTransport); its proxy, roots and dialer carry over to
// upgraded connections.
func NewClient(base http.RoundTripper, logger *slog.Logger) *Client {
	up := &upgrade.Transport{Base: base}
	rt := http.RoundTripper(up)
	if logger != nil {
		rt = logUpgrades{rt, upgrade.SlogTrace(logger)}
	}
	return &Client{http: &http.Client{Transport: rt}, closer: up}
}

type logUpgrades struct {
	rt    http.RoundTripper
	trace *upgrade.Trace
}

func (l logUpgrades) RoundTrip(req *http.Request) (*http.Response, error) {
	return l.rt.RoundTrip(req.WithContext(upgrade.WithTrace(req.Context(), l.trace)))
}

func (c *Client) Close() error { return c.closer.Close() }

// The SDK's client meets the 426 over the caller's transport and logs the
// upgrade to the caller's logger.
func TestSDKClientLogsUpgrade(t *testing.T) {
	srv := upgradetest.NewHTTP2Server(nil)
	defer srv.Close()
	var logs bytes.Buffer
	c := NewClient(srv.Client().Transport, slog.New(slog.NewTextHandler(&logs, nil)))
	defer c.Close()

	resp, err := c.http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Proto != "HTTP/2.0" || srv.Served("HTTP/2.0") != 1 {
		t.Errorf("response over %s, served over HTTP/2: %d; want HTTP/2.0 and 1", resp.Proto, srv.Served("HTTP/2.0"))
	}
	for _, want := range []string{"upgrade: 426", "upgrade: replay"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("logs lack %q:\n%s", want, logs.String())
		}
	}
}
