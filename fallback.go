package upgrade

import (
	"context"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
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
func (t *Transport) replay(req *http.Request, origin origin, bodies *replayBody, first io.ReadCloser, candidates []candidate, offered []Protocol, resp426 *http.Response, trace *Trace) (*http.Response, error) {
	defer bodies.done()
	ctx := req.Context()
	marked := context.WithValue(ctx, replayedKey{}, true)
	var attempts []Attempt
	body := first
	for i := 0; i < len(candidates); i++ {
		c := candidates[i]
		trace.replayStart(c.offer)
		out := req.Clone(marked)
		out.Body = body
		if multiplexed(c.target) {
			removeHopByHop(out.Header)
		}
		resp, err := t.send(out, c.target)
		t.noteOutcome(ctx, origin, c.target, err)
		if err == nil {
			if resp.StatusCode != http.StatusUpgradeRequired {
				t.learn(origin, c)
				if trace.Learned != nil {
					trace.Learned(MemoryInfo{Origin: origin.String(), Protocol: c.offer})
				}
			}
			trace.replayDone(ReplayDoneInfo{Protocol: c.offer, StatusCode: resp.StatusCode, Proto: resp.Proto, TLS: tlsVersion(resp)})
			return resp, nil
		}
		attempts = append(attempts, Attempt{Protocol: c.offer, Err: err})
		early := beforeConnection(err) && ctx.Err() == nil
		if early && encrypted(c.target) {
			// The failure may be an attacker's: never fall back from TLS to
			// cleartext (DESIGN §4).
			candidates = append(candidates[:i+1], onlyEncrypted(candidates[i+1:])...)
		}
		fallback := early && i+1 < len(candidates)
		trace.replayDone(ReplayDoneInfo{Protocol: c.offer, Err: err, Fallback: fallback})
		if !early {
			// The request may have reached the server, or the caller gave
			// up: report it as a transport would.
			return nil, err
		}
		if !fallback {
			break
		}
		if body, err = bodies.next(); err != nil {
			attempts = append(attempts, Attempt{Protocol: candidates[i+1].offer, Err: err})
			break
		}
	}
	return nil, &UpgradeError{Offered: offered, Attempts: attempts, Response: resp426}
}

// encrypted reports whether tgt runs over TLS; only h2c does not.
func encrypted(tgt target) bool {
	return tgt.kind != targetH2C
}

// onlyEncrypted keeps the candidates that run over TLS.
func onlyEncrypted(cs []candidate) []candidate {
	kept := cs[:0]
	for _, c := range cs {
		if encrypted(c.target) {
			kept = append(kept, c)
		}
	}
	return kept
}

// multiplexed reports whether tgt speaks HTTP/2 or HTTP/3, which forbid the
// headers of a single HTTP/1.1 connection.
func multiplexed(tgt target) bool {
	return tgt.kind == targetHTTP2 || tgt.kind == targetH2C || tgt.kind == targetHTTP3
}

// send sends out over the inner transport for tgt. A failure before any
// connection carries the connectError mark (dial.go).
func (t *Transport) send(out *http.Request, tgt target) (*http.Response, error) {
	rt, err := t.innerFor(tgt)
	if err != nil {
		if out.Body != nil {
			out.Body.Close() // no transport took it, and RoundTrip must close it
		}
		return nil, err
	}
	resp, err := rt.RoundTrip(out)
	if err == nil {
		resp.Body = &releasingBody{ReadCloser: resp.Body, t: t, rt: rt}
	}
	return resp, err
}

// releasingBody lets a connection that was busy when Close ran go when its
// response is done: CloseIdleConnections alone leaves it pooled (h2c keeps
// it), and HTTP/3 shuts down only when its last response is closed.
type releasingBody struct {
	io.ReadCloser
	t      *Transport
	rt     http.RoundTripper
	closed atomic.Bool
}

func (b *releasingBody) Close() error {
	err := b.ReadCloser.Close()
	if !b.closed.CompareAndSwap(false, true) {
		return err
	}
	if h, ok := b.rt.(*http3Transport); ok {
		h.requestDone()
	}
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

// Broken marks (DESIGN §5, after Chromium's broken alternative services):
// an offer that failed before any connection is not tried again for the
// origin for 5 minutes, the period doubling with each further failure up to
// two days. A success clears the mark.
const (
	brokenPeriod    = 5 * time.Minute
	maxBrokenPeriod = 48 * time.Hour
	maxBrokenMarks  = 4096
)

// brokenKey names a protocol for an origin. The in-band Upgrade list is left
// out: it varies with how the offer was learned, the failure does not.
type brokenKey struct {
	origin origin
	kind   targetKind
	minTLS uint16
}

func brokenKeyOf(o origin, tgt target) brokenKey {
	return brokenKey{origin: o, kind: tgt.kind, minTLS: tgt.minTLS}
}

type brokenMark struct {
	until    time.Time
	failures int
}

// brokenMarks is a bounded set of marks; the least recently touched go first.
type brokenMarks struct {
	mu    sync.Mutex // guards marks: the read-modify-write of a failure count
	marks *simplelru.LRU[brokenKey, brokenMark]
}

func (t *Transport) brokenMarks() *brokenMarks {
	t.brokenOnce.Do(func() {
		marks, _ := simplelru.NewLRU[brokenKey, brokenMark](maxBrokenMarks, nil) // fails only for a size <= 0
		t.broken = &brokenMarks{marks: marks}
	})
	return t.broken
}

func (t *Transport) clock() time.Time {
	if t.now != nil {
		return t.now()
	}
	return time.Now()
}

// dropBroken moves the candidates marked broken for origin to skipped.
func (t *Transport) dropBroken(origin origin, usable []candidate, skipped []Skipped) ([]candidate, []Skipped) {
	b := t.brokenMarks()
	now := t.clock()
	kept := usable[:0]
	b.mu.Lock()
	for _, c := range usable {
		if mark, ok := b.marks.Peek(brokenKeyOf(origin, c.target)); ok && now.Before(mark.until) {
			skipped = append(skipped, Skipped{Protocol: c.offer, Reason: ErrBroken})
			continue
		}
		kept = append(kept, c)
	}
	b.mu.Unlock()
	return kept, skipped
}

// noteOutcome marks tgt broken for origin after a failure before any
// connection, and clears the mark after a response. Failures the caller
// caused (its context ended) say nothing about the server.
func (t *Transport) noteOutcome(ctx context.Context, origin origin, tgt target, err error) {
	b := t.brokenMarks()
	key := brokenKeyOf(origin, tgt)
	now := t.clock()
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case err == nil:
		b.marks.Remove(key)
	case beforeConnection(err) && ctx.Err() == nil:
		mark, _ := b.marks.Get(key)
		if now.Before(mark.until) {
			// Requests that were in flight together saw one outage, not
			// several: the period doubles per failure after it expired.
			return
		}
		mark.failures++
		period := brokenPeriod << min(mark.failures-1, 10)
		mark.until = now.Add(min(period, maxBrokenPeriod))
		b.marks.Add(key, mark)
	}
}
