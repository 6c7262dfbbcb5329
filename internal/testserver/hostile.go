package testserver

// Hostile refusals, for Config.Refuse: 426 responses shaped the way broken
// or hostile servers send them, so a client can be shown to end every
// exchange within its bounds. Each handler returns once the client goes
// away or the server closes, as Config.Refuse must.

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// EndlessBody refuses with 426 and Upgrade: upgrade, then sends a body that
// never ends, as fast as the client reads it.
func EndlessBody(upgrade string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeRefusalHeader(w, upgrade)
		chunk := make([]byte, 16<<10)
		for r.Context().Err() == nil {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
}

// TrickleBody refuses with 426 and Upgrade: upgrade, then sends a body of
// one byte every interval, forever.
func TrickleBody(upgrade string, interval time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeRefusalHeader(w, upgrade)
		rc := http.NewResponseController(w)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			if _, err := io.WriteString(w, "x"); err != nil {
				return
			}
			if rc.Flush() != nil {
				return
			}
			select {
			case <-tick.C:
			case <-r.Context().Done():
				return
			}
		}
	})
}

// HugeHeader refuses with 426 and Upgrade: upgrade (none when empty),
// padded with about size bytes of other header lines of 1 KiB each.
func HugeHeader(upgrade string, size int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		pad := strings.Repeat("p", 1000)
		h := w.Header()
		for i := 0; i < size; i += len(pad) + len("X-Pad: \r\n") {
			h.Add("X-Pad", pad)
		}
		writeRefusalHeader(w, upgrade)
		io.WriteString(w, "426 upgrade required\n")
	})
}

func writeRefusalHeader(w http.ResponseWriter, upgrade string) {
	if upgrade != "" {
		w.Header().Set("Upgrade", upgrade)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusUpgradeRequired)
	http.NewResponseController(w).Flush()
}

// Ending says what RawResponse does with the connection after its bytes.
type Ending uint8

const (
	// CloseConn closes the connection (over TLS, after a close_notify).
	CloseConn Ending = iota
	// ResetConn aborts the connection with a TCP RST (SO_LINGER 0), so
	// the client sees "connection reset" rather than an end of stream.
	ResetConn
	// HoldConn keeps the connection open, discarding what the client
	// sends, until the client or Server.Close ends it.
	HoldConn
)

// RawResponse answers with raw, byte for byte, written on the hijacked
// HTTP/1.x connection (inside TLS on a TLS server), then ends the
// connection as end says: status lines cut short, headers cut in the
// middle, lengths that lie. Over HTTP/2 or HTTP/3, which cannot be
// hijacked, it aborts the stream.
func RawResponse(raw string, end Ending) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			panic(http.ErrAbortHandler)
		}
		_, err = io.WriteString(conn, raw)
		switch {
		case err != nil || end == CloseConn:
			conn.Close()
		case end == ResetConn:
			reset(conn)
		default:
			io.Copy(io.Discard, conn) // until the client closes, or Close closes conn
			conn.Close()
		}
	})
}

// reset closes conn with a TCP RST, bypassing TLS so no close_notify goes
// first. The tracked connection is closed through its owner, so Close
// forgets it.
func reset(conn net.Conn) {
	if tc, ok := conn.(*tls.Conn); ok {
		conn = tc.NetConn()
	}
	tracked, ok := conn.(*trackedConn)
	if !ok {
		conn.Close()
		return
	}
	if tcp, ok := tracked.Conn.(*net.TCPConn); ok {
		tcp.SetLinger(0)
	}
	tracked.Close()
}

// Hang holds every request it is given without answering, until the client
// gives up on it or the server closes, and then aborts it: a server that
// accepted the connection and went silent. As Config.Handler, the request
// is recorded, body included, before it hangs.
var Hang http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	<-r.Context().Done()
	panic(http.ErrAbortHandler) // never an answer, not even an empty 200
})
