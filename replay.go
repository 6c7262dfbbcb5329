package upgrade

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"
)

// The discarded 426 body is read at most this far and this long, so a
// server that trickles or never ends its body cannot hold up the replay.
const (
	drainLimit   = 64 << 10
	drainTimeout = 200 * time.Millisecond
)

var errBodyTaken = errors.New("upgrade: request body was taken back for a replay")

// oneShotBody wraps a request body that has no GetBody. It lets the
// transport take the body back for a replay as long as nothing read from it,
// race-free with the writer goroutine of the transport that was given it.
// Until the owner releases or takes it back, a Close from that transport is
// held so an unread body stays usable.
type oneShotBody struct {
	rc io.ReadCloser

	mu            sync.Mutex // guards the flags below
	read          bool       // some Read reached rc: bytes may have left
	closeAsked    bool       // the transport called Close
	released      bool       // the owner will not take the body back
	taken         bool       // the owner took rc back; this wrapper is dead
	closedForward bool       // rc.Close was called through this wrapper
}

func newOneShotBody(rc io.ReadCloser) *oneShotBody { return &oneShotBody{rc: rc} }

func (b *oneShotBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	if b.taken {
		b.mu.Unlock()
		return 0, errBodyTaken
	}
	b.read = true
	b.mu.Unlock()
	return b.rc.Read(p)
}

func (b *oneShotBody) Close() error {
	b.mu.Lock()
	if b.taken {
		b.mu.Unlock()
		return nil
	}
	b.closeAsked = true
	forward := (b.read || b.released) && b.markClosedLocked()
	b.mu.Unlock()
	if forward {
		return b.rc.Close()
	}
	return nil
}

// release gives up the right to take the body back: a held Close goes
// through now, a later one at once. Safe on a nil receiver.
func (b *oneShotBody) release() {
	if b == nil {
		return
	}
	b.mu.Lock()
	b.released = true
	forward := b.closeAsked && !b.taken && b.markClosedLocked()
	b.mu.Unlock()
	if forward {
		b.rc.Close()
	}
}

// take returns the underlying body if no byte of it can have been read, and
// makes this wrapper refuse any later Read.
func (b *oneShotBody) take() (io.ReadCloser, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.read || b.released || b.taken {
		return nil, false
	}
	b.taken = true
	return b.rc, true
}

func (b *oneShotBody) markClosedLocked() bool {
	if b.closedForward {
		return false
	}
	b.closedForward = true
	return true
}

// hasBody reports whether req carries a body that matters for replay.
func hasBody(req *http.Request) bool {
	return req.Body != nil && req.Body != http.NoBody
}

// replayBody hands out the body for each attempt at one request: the
// first, through Base or a remembered route, and each replay. A body may be
// sent again when there is none, when GetBody makes it anew, or when no
// byte of it was read (a 426 answered Expect: 100-continue).
type replayBody struct {
	req     *http.Request // the caller's
	current *oneShotBody  // the one-shot body as last handed out, if any
}

// first returns the request to send first. A body that cannot be made
// again (no GetBody) is wrapped so that it can be told afterwards whether
// it is still unread; other requests go out as they are, at no cost.
func (s *replayBody) first() *http.Request {
	if !hasBody(s.req) || s.req.GetBody != nil {
		return s.req
	}
	s.current = newOneShotBody(s.req.Body)
	first := s.req.WithContext(s.req.Context()) // shallow copy: never modify the caller's request
	first.Body = s.current
	return first
}

// again returns the request ready to be sent once more, after an attempt
// that never had a connection; false when its body is gone.
func (s *replayBody) again() (*http.Request, bool) {
	body, err := s.next()
	if err != nil {
		return nil, false
	}
	if body == s.req.Body {
		return s.req, true
	}
	again := s.req.WithContext(s.req.Context())
	again.Body = body
	return again, true
}

// next returns a body for the next attempt, or why there is none.
func (s *replayBody) next() (io.ReadCloser, error) {
	switch {
	case !hasBody(s.req):
		return s.req.Body, nil
	case s.req.GetBody != nil:
		body, err := s.req.GetBody()
		if err != nil {
			return nil, fmt.Errorf("upgrade: GetBody: %w", err)
		}
		if body == nil || (body == http.NoBody && s.req.ContentLength > 0) {
			// HTTP/2 and HTTP/3 would send the replay without the body the
			// request declares, and the server would take it as complete.
			return nil, fmt.Errorf("%w: GetBody returned no body", ErrBodyNotReplayable)
		}
		return body, nil
	}
	rc, ok := s.current.take()
	if !ok {
		return nil, ErrBodyNotReplayable
	}
	s.current = newOneShotBody(rc)
	return s.current, nil
}

// done ends the request: whoever holds the one-shot body last closes it.
func (s *replayBody) done() {
	if s.current != nil { // checked here, inlined: most requests have no one-shot body
		s.current.release()
	}
}

// replayedKey marks the context of a replayed request, so that no
// Transport, nested inside this one or around it, upgrades it again: one
// replay per request.
type replayedKey struct{}

func markReplayed(ctx context.Context) context.Context {
	return context.WithValue(ctx, replayedKey{}, true)
}

// alreadyReplayed reports whether req, or the request that produced resp
// (a Transport nested in Base), was a replay.
func alreadyReplayed(req *http.Request, resp *http.Response) bool {
	if req.Context().Value(replayedKey{}) != nil {
		return true
	}
	return resp.Request != nil && resp.Request.Context().Value(replayedKey{}) != nil
}

// drain426 reads a bounded prefix of the 426 body, closes it, and leaves the
// prefix in its place so an *UpgradeError can still show it.
func drain426(resp *http.Response) {
	body := resp.Body
	var once sync.Once
	closeBody := func() { once.Do(func() { body.Close() }) }
	timer := time.AfterFunc(drainTimeout, closeBody)
	prefix, _ := io.ReadAll(io.LimitReader(body, drainLimit))
	timer.Stop()
	closeBody()
	resp.Body = io.NopCloser(bytes.NewReader(prefix))
}

// hopByHop are the headers of one HTTP/1.1 connection, in canonical form;
// TE is kept when it says only "trailers".
var hopByHop = []string{"Connection", "Upgrade", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding"}

// hasHopByHop reports whether h holds anything removeHopByHop would change,
// so that a request without them is sent without a copy. It runs on every
// remembered request: a short header is scanned rather than probed six times.
func hasHopByHop(h http.Header) bool {
	if len(h) == 0 {
		return false // without starting a map iteration
	}
	if len(h) <= len(hopByHop) {
		for name, values := range h {
			switch name {
			case "Connection", "Upgrade", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding":
				return true
			case "Te":
				if !(len(values) == 1 && values[0] == "trailers") {
					return true
				}
			}
		}
		return false
	}
	for _, name := range hopByHop {
		if _, ok := h[name]; ok {
			return true
		}
	}
	te, ok := h["Te"]
	return ok && !(len(te) == 1 && te[0] == "trailers")
}

// removeHopByHop deletes the headers that belong to one HTTP/1.1 connection
// (RFC 9110 §7.6.1); HTTP/2 and HTTP/3 forbid them and Go's h2 client
// rejects some of them.
func removeHopByHop(h http.Header) {
	// A client that sends TE names it in Connection too (RFC 9110
	// §10.1.4), and "TE: trailers" is what HTTP/2 and HTTP/3 keep (gRPC
	// needs it): decide on it before the names in Connection go.
	trailers := httpguts.HeaderValuesContainsToken(h["Te"], "trailers")
	for _, line := range h["Connection"] {
		for name := range strings.SplitSeq(line, ",") {
			if name = strings.TrimSpace(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, name := range hopByHop {
		delete(h, name)
	}
	delete(h, "Te")
	if trailers {
		h["Te"] = []string{"trailers"}
	}
}
