package upgrade

import (
	"context"
	"io"
	"net/http"
	"net/http/httptrace"
	"sync/atomic"
)

// replayedKey marks the context of a replayed request, so no Transport
// upgrades it again (DESIGN §3, loop guard).
type replayedKey struct{}

// alreadyReplayed reports whether req, or the request that produced resp
// (a Transport nested in Base), was a replay.
func alreadyReplayed(req *http.Request, resp *http.Response) bool {
	if req.Context().Value(replayedKey{}) != nil {
		return true
	}
	return resp.Request != nil && resp.Request.Context().Value(replayedKey{}) != nil
}

// replay sends req once over the first candidate; on a failure before any
// connection was had (dial, handshake, ALPN) it goes on to the next. Any
// response, whatever its status, ends the search (DESIGN §1 step 5).
// first is the body for the first attempt; resp426 has been drained.
func (t *Transport) replay(req *http.Request, bodies *replayBody, first io.ReadCloser, candidates []candidate, offered []Protocol, resp426 *http.Response, trace *Trace) (*http.Response, error) {
	defer bodies.done()
	var attempts []Attempt
	body := first
	for i, c := range candidates {
		trace.replayStart(c.offer)
		resp, connected, err := t.send(req, c.target, body)
		if err == nil {
			trace.replayDone(ReplayDoneInfo{Protocol: c.offer, StatusCode: resp.StatusCode, Proto: resp.Proto, TLS: tlsVersion(resp)})
			return resp, nil
		}
		attempts = append(attempts, Attempt{Protocol: c.offer, Err: err})
		fallback := !connected && req.Context().Err() == nil && i+1 < len(candidates)
		trace.replayDone(ReplayDoneInfo{Protocol: c.offer, Err: err, Fallback: fallback})
		if !fallback {
			if connected || req.Context().Err() != nil {
				// The request may have reached the server, or the caller
				// gave up: report it as a transport would.
				return nil, err
			}
			break
		}
		if body, err = bodies.next(); err != nil {
			attempts = append(attempts, Attempt{Protocol: candidates[i+1].offer, Err: err})
			break
		}
	}
	return nil, &UpgradeError{Offered: offered, Attempts: attempts, Response: resp426}
}

// send replays req over the inner transport for tgt. connected reports
// whether a connection was had: if not, the request never left.
func (t *Transport) send(req *http.Request, tgt target, body io.ReadCloser) (resp *http.Response, connected bool, err error) {
	rt, err := t.innerFor(tgt)
	if err != nil {
		return nil, false, err
	}
	var gotConn atomic.Bool
	ctx := context.WithValue(req.Context(), replayedKey{}, true)
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GotConn: func(httptrace.GotConnInfo) { gotConn.Store(true) },
	})
	out := req.Clone(ctx)
	out.Body = body
	if tgt.kind != targetTLS {
		removeHopByHop(out.Header)
	}
	resp, err = rt.RoundTrip(out)
	if err == nil {
		resp.Body = &releasingBody{ReadCloser: resp.Body, t: t, rt: rt}
	}
	return resp, gotConn.Load(), err
}

// releasingBody lets a connection that was busy when Close ran go when its
// response is done: CloseIdleConnections alone leaves it pooled (h2c keeps it).
type releasingBody struct {
	io.ReadCloser
	t  *Transport
	rt http.RoundTripper
}

func (b *releasingBody) Close() error {
	err := b.ReadCloser.Close()
	if b.t.closed.Load() {
		closeIdle(b.rt)
	}
	return err
}

func tlsVersion(resp *http.Response) uint16 {
	if resp.TLS == nil {
		return 0
	}
	return resp.TLS.Version
}
