package testserver

import (
	"bytes"
	"crypto/sha256"
	"io"
	"net/http"
)

// Request is what the server saw of one request.
type Request struct {
	Proto      string // r.Proto: "HTTP/1.1", "HTTP/2.0", "HTTP/3.0"
	TLSVersion uint16 // negotiated TLS version; 0 in clear
	ALPN       string // negotiated application protocol ("h3" over QUIC); "" if none or in clear
	ClientCert string // common name of the verified client certificate; "" if none
	Method     string
	Path       string      // r.URL.Path
	Host       string      // r.Host
	Header     http.Header // clone of the request header as it arrived

	// Refused reports that the request was answered with the refusal. The
	// body of a refused request is never read, as a real server refuses
	// before reading: a client sending "Expect: 100-continue" never sends it.
	Refused bool

	// For served requests, the body as read to EOF (without keeping it).
	BodyLen    int64
	BodySHA256 [32]byte
}

// serveHTTP is the handler of every request: record it, then refuse it or
// serve it.
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.enter() {
		// Close has begun; abort rather than answer a request Close may not wait for.
		panic(http.ErrAbortHandler)
	}
	defer s.handlers.Done()

	if isH2CPreface(r) {
		// The h2c preface reached the HTTP/1 server: HTTP1Only is set. It
		// is not a request; answer as a server that does not speak HTTP/2.
		http.Error(w, "testserver: HTTP/2 not supported", http.StatusHTTPVersionNotSupported)
		return
	}

	i := s.record(r)
	if s.cfg.Require != nil && !s.cfg.Require(r) {
		s.markRefused(i)
		s.refusal().ServeHTTP(w, r)
		return
	}

	hash := sha256.New()
	var kept bytes.Buffer
	var dst io.Writer = hash
	if s.cfg.KeepBody {
		dst = io.MultiWriter(hash, &kept)
	}
	n, err := io.Copy(dst, r.Body)
	var sum [32]byte
	hash.Sum(sum[:0])
	s.setBody(i, n, sum)
	if err != nil {
		http.Error(w, "testserver: reading body: "+err.Error(), http.StatusBadRequest)
		return
	}
	if s.cfg.KeepBody {
		r.Body = io.NopCloser(&kept)
	}
	s.handler().ServeHTTP(w, r)
}

// isH2CPreface reports whether r is the start of the HTTP/2 connection
// preface (RFC 9113 section 3.4), which net/http hands to the handler as a
// request when it does not serve h2c itself.
func isH2CPreface(r *http.Request) bool {
	return r.Method == "PRI" && r.RequestURI == "*" && r.ProtoMajor == 2
}

// record appends what arrived and returns its index for later updates.
func (s *Server) record(r *http.Request) int {
	seen := Request{
		Proto:  r.Proto,
		Method: r.Method,
		Path:   r.URL.Path,
		Host:   r.Host,
		Header: r.Header.Clone(),
	}
	if r.TLS != nil {
		seen.TLSVersion = r.TLS.Version
		seen.ALPN = r.TLS.NegotiatedProtocol
		// Only a verified chain names a client; PeerCertificates alone could
		// be anything the client sent.
		if len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0 {
			seen.ClientCert = r.TLS.VerifiedChains[0][0].Subject.CommonName
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, seen)
	return len(s.requests) - 1
}

func (s *Server) markRefused(i int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests[i].Refused = true
	s.refused++
}

func (s *Server) setBody(i int, n int64, sum [32]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests[i].BodyLen = n
	s.requests[i].BodySHA256 = sum
}

func (s *Server) refusal() http.Handler {
	if s.cfg.Refuse != nil {
		return s.cfg.Refuse
	}
	return http.HandlerFunc(s.refuse)
}

func (s *Server) handler() http.Handler {
	if s.cfg.Handler != nil {
		return s.cfg.Handler
	}
	return http.HandlerFunc(serveOK)
}

// refuse writes the default refusal: 426 with the configured Upgrade lines
// (RFC 9110 section 15.5.22 requires an Upgrade header with a 426).
func (s *Server) refuse(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	// HTTP/3 forbids Upgrade with the other connection-specific fields (RFC
	// 9114 section 4.2), and quic-go's client rejects a response carrying
	// it, so the 426 goes bare there. Config.Refuse can still send it.
	if r.ProtoMajor < 3 {
		for _, v := range s.cfg.Upgrade {
			h.Add("Upgrade", v)
		}
	}
	// RFC 9110 section 7.8: a sender of Upgrade also sends "Connection:
	// Upgrade". HTTP/2 forbids connection-specific fields (RFC 9113 section
	// 8.2.2), so only HTTP/1.x gets it.
	if r.ProtoMajor == 1 && len(s.cfg.Upgrade) > 0 {
		h.Set("Connection", "Upgrade")
	}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusUpgradeRequired)
	io.WriteString(w, "426 upgrade required\n")
}

func serveOK(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, "ok\n")
}
