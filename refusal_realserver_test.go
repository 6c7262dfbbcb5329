package upgrade

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/h426/upgrade/internal/testserver"
)

// Real servers that refuse in the handshake, started on loopback when
// their programs are installed (Debian's nginx; Node's built-in http2),
// skipped with the command that installs them otherwise.
func TestHandshakeRefusalRealServers(t *testing.T) {
	ca, err := testserver.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := writeServerCert(t, ca)
	payload := bytes.Repeat([]byte("real "), 4096)

	t.Run("nginx ssl_protocols TLSv1.3", func(t *testing.T) {
		nginx, err := exec.LookPath("nginx")
		if err != nil {
			t.Skip("nginx is not installed (apt-get install nginx)")
		}
		dir, port := t.TempDir(), freePort(t)
		conf := fmt.Sprintf(`daemon off; pid %[1]s/nginx.pid; error_log %[1]s/error.log;
events {}
http {
	access_log off; client_body_temp_path %[1]s; proxy_temp_path %[1]s; fastcgi_temp_path %[1]s; uwsgi_temp_path %[1]s; scgi_temp_path %[1]s;
	server {
		listen 127.0.0.1:%[2]d ssl http2;
		ssl_certificate %[3]s; ssl_certificate_key %[4]s; ssl_protocols TLSv1.3;
		location / { return 200 "nginx $ssl_protocol $server_protocol\n"; }
	}
}`, dir, port, certFile, keyFile)
		confFile := filepath.Join(dir, "nginx.conf")
		if err := os.WriteFile(confFile, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		startProgram(t, port, nginx, "-p", dir, "-c", confFile)
		tr := newTransport(t, legacyBase(t, ca.CertPool()))
		resp, err := tr.RoundTrip(newRequest(t, testContext(t), "GET", fmt.Sprintf("https://127.0.0.1:%d/", port), nil))
		if err != nil {
			t.Fatal(err)
		}
		if body := readAll(t, resp); resp.StatusCode != 200 || tlsVersion(resp) != tls.VersionTLS13 || !strings.HasPrefix(body, "nginx TLSv1.3") {
			t.Errorf("%d over %s TLS %x: %q, want 200 over TLS 1.3", resp.StatusCode, resp.Proto, tlsVersion(resp), body)
		}
	})

	t.Run("node http2 allowHTTP1 false", func(t *testing.T) {
		node, err := exec.LookPath("node")
		if err != nil {
			t.Skip("node is not installed (apt-get install nodejs)")
		}
		dir, port := t.TempDir(), freePort(t)
		script := filepath.Join(dir, "server.js")
		err = os.WriteFile(script, []byte(`const http2 = require('http2'), fs = require('fs'), crypto = require('crypto');
const server = http2.createSecureServer({key: fs.readFileSync(process.argv[2]), cert: fs.readFileSync(process.argv[3]), allowHTTP1: false});
server.on('stream', (stream) => { const h = crypto.createHash('sha256'); let n = 0;
  stream.on('data', (c) => { h.update(c); n += c.length; });
  stream.on('end', () => { stream.respond({':status': 200}); stream.end(n + ' ' + h.digest('hex')); }); });
server.listen(Number(process.argv[4]), '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
`), 0o600)
		if err != nil {
			t.Fatal(err)
		}
		startProgram(t, port, node, script, keyFile, certFile, fmt.Sprint(port))
		tr := newTransport(t, http1ALPN(legacyBase(t, ca.CertPool())))
		resp, err := tr.RoundTrip(newRequest(t, testContext(t), "POST", fmt.Sprintf("https://127.0.0.1:%d/", port), bytes.NewReader(payload)))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(payload)
		want := fmt.Sprintf("%d %s", len(payload), hex.EncodeToString(sum[:]))
		if body := readAll(t, resp); resp.StatusCode != 200 || resp.Proto != "HTTP/2.0" || body != want {
			t.Errorf("%d over %s: %q, want 200 over HTTP/2.0 with %q", resp.StatusCode, resp.Proto, body, want)
		}
	})
}

// writeServerCert writes a certificate for 127.0.0.1 from ca, and its key,
// as PEM files.
func writeServerCert(t *testing.T, ca *testserver.CA) (certFile, keyFile string) {
	cert, err := ca.ServerCert()
	if err != nil {
		t.Fatal(err)
	}
	key, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	var chain []byte
	for _, der := range cert.Certificate {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	if err := os.WriteFile(certFile, chain, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// freePort returns a loopback port nobody listens on now.
func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startProgram runs a server until the test ends, once it accepts
// connections on port.
func startProgram(t *testing.T, port int, name string, args ...string) {
	cmd := exec.Command(name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		<-exited
	})
	deadline := time.Now().Add(patience)
	for {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-exited:
			deadline = time.Time{} // it will not listen now
		default:
		}
		if time.Now().After(deadline) {
			sc := bufio.NewScanner(&out)
			for sc.Scan() {
				t.Log(sc.Text())
			}
			t.Fatalf("%s did not listen on %d", name, port)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
