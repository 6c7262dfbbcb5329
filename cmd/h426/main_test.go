package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/h426/upgrade/internal/testserver"
	"go.uber.org/goleak"
)

// TestMain fails the suite if a run leaves a goroutine behind: the command
// must close its transports and the demo its servers.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// runCLI runs the command with args and returns its exit status and output.
func runCLI(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// startServer starts a loopback test server, closed when the test ends.
func startServer(t *testing.T, cfg testserver.Config) *testserver.Server {
	t.Helper()
	srv, err := testserver.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// withServer fills in the server's URL and a file with its CA certificate.
func withServer(t *testing.T, args []string, srv *testserver.Server) []string {
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, srv.CA().PEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	filled := make([]string, len(args))
	for i, a := range args {
		switch {
		case a == "CA":
			filled[i] = caFile
		case strings.HasPrefix(a, "URL"):
			filled[i] = srv.URL + strings.TrimPrefix(a, "URL")
		default:
			filled[i] = a
		}
	}
	return filled
}
