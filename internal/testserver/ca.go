package testserver

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"time"
)

// validity is how long certificates stay valid. Long enough for a demo left
// running; NotBefore is backdated an hour so small clock skew does not matter.
const validity = 365 * 24 * time.Hour

// CA is an in-memory certificate authority (ECDSA P-256), for loopback
// servers and client certificates. Its key never leaves memory.
//
// A CA is safe for concurrent use.
type CA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// NewCA returns a CA with a fresh self-signed root.
func NewCA() (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("testserver: CA key: %w", err)
	}
	template, err := newTemplate("testserver CA")
	if err != nil {
		return nil, err
	}
	template.IsCA = true
	template.BasicConstraintsValid = true
	template.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("testserver: CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("testserver: CA certificate: %w", err)
	}
	return &CA{cert: cert, key: key}, nil
}

// CertPool returns a new pool trusting this CA, for a client's RootCAs or a
// server's Config.ClientCAs.
func (ca *CA) CertPool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	return pool
}

// PEM returns the CA certificate PEM-encoded, for tools outside the process
// (curl --cacert).
func (ca *CA) PEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw})
}

// ServerCert issues a server-auth leaf valid for 127.0.0.1, ::1 and localhost.
func (ca *CA) ServerCert() (tls.Certificate, error) {
	template, err := newTemplate("localhost")
	if err != nil {
		return tls.Certificate{}, err
	}
	template.DNSNames = []string{"localhost"}
	template.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	template.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	return ca.issue(template)
}

// ClientCert issues a client-auth leaf whose subject common name is commonName;
// a server with Config.ClientCAs records that name in Request.ClientCert.
func (ca *CA) ClientCert(commonName string) (tls.Certificate, error) {
	template, err := newTemplate(commonName)
	if err != nil {
		return tls.Certificate{}, err
	}
	template.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	return ca.issue(template)
}

// issue signs template with a fresh leaf key.
func (ca *CA) issue(template *x509.Certificate) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("testserver: leaf key: %w", err)
	}
	template.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, template, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("testserver: leaf certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("testserver: leaf certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// newTemplate returns the fields every certificate shares: a random serial
// (RFC 5280 section 4.1.2.2 wants them unique per issuer), the subject and
// the validity window.
func newTemplate(commonName string) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("testserver: serial number: %w", err)
	}
	now := time.Now()
	return &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: commonName},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(validity),
	}, nil
}
