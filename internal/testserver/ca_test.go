package testserver

import (
	"crypto/x509"
	"encoding/pem"
	"testing"
)

func TestCA(t *testing.T) {
	ca, err := NewCA()
	if err != nil {
		t.Fatal(err)
	}
	server, err := ca.ServerCert()
	if err != nil {
		t.Fatal(err)
	}
	client, err := ca.ClientCert("alice")
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewCA()
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		leaf    *x509.Certificate
		roots   *x509.CertPool
		host    string // DNSName to verify; "" for none
		usage   x509.ExtKeyUsage
		wantErr bool
	}{
		{name: "server for 127.0.0.1", leaf: server.Leaf, roots: ca.CertPool(), host: "127.0.0.1", usage: x509.ExtKeyUsageServerAuth},
		{name: "server for ::1", leaf: server.Leaf, roots: ca.CertPool(), host: "::1", usage: x509.ExtKeyUsageServerAuth},
		{name: "server for localhost", leaf: server.Leaf, roots: ca.CertPool(), host: "localhost", usage: x509.ExtKeyUsageServerAuth},
		{name: "server not for example.com", leaf: server.Leaf, roots: ca.CertPool(), host: "example.com", usage: x509.ExtKeyUsageServerAuth, wantErr: true},
		{name: "server not a client", leaf: server.Leaf, roots: ca.CertPool(), usage: x509.ExtKeyUsageClientAuth, wantErr: true},
		{name: "server not trusted by another CA", leaf: server.Leaf, roots: other.CertPool(), host: "127.0.0.1", usage: x509.ExtKeyUsageServerAuth, wantErr: true},
		{name: "client", leaf: client.Leaf, roots: ca.CertPool(), usage: x509.ExtKeyUsageClientAuth},
		{name: "client not a server", leaf: client.Leaf, roots: ca.CertPool(), usage: x509.ExtKeyUsageServerAuth, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.leaf.Verify(x509.VerifyOptions{
				DNSName:   tt.host,
				Roots:     tt.roots,
				KeyUsages: []x509.ExtKeyUsage{tt.usage},
			})
			if gotErr := err != nil; gotErr != tt.wantErr {
				t.Errorf("Verify: %v, want error %v", err, tt.wantErr)
			}
		})
	}

	if got := client.Leaf.Subject.CommonName; got != "alice" {
		t.Errorf("client CN = %q, want alice", got)
	}
	block, _ := pem.Decode(ca.PEM())
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("PEM() does not hold a certificate: %q", ca.PEM())
	}
	root, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !root.IsCA {
		t.Error("PEM() certificate is not a CA")
	}
}
