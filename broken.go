package upgrade

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// Broken marks, after Chromium's broken alternative services: an offer that
// failed before any connection is not tried again for the origin for 5
// minutes, the period doubling with each further failure up to two days. A
// success clears the mark.
const (
	brokenPeriod    = 5 * time.Minute
	maxBrokenPeriod = 48 * time.Hour
	maxBrokenMarks  = 4096
)

// brokenKey names what broke: a kind of connection to an address. The Host
// header is left out (o.vhost): virtual servers behind one address share
// its network path, its UDP filter and its TLS stack, so after HTTP/3 failed
// for one Host, another on the same server pays nothing more.
type brokenKey struct {
	secure bool
	host   string // host[:port], as in origin
	kind   targetKind
	minTLS uint16
}

func brokenKeyOf(o origin, tgt target) brokenKey {
	return brokenKey{secure: o.secure, host: o.host, kind: tgt.kind, minTLS: tgt.minTLS}
}

type brokenMark struct {
	until    time.Time
	failures int
}

// brokenMarks is a bounded set of marks; the least recently touched go
// first. The zero value is empty and ready.
type brokenMarks struct {
	mu    sync.Mutex                            // guards marks: the read-modify-write of a failure count
	marks *simplelru.LRU[brokenKey, brokenMark] // nil until the first failure
	count atomic.Int32                          // marks' length, so a success with nothing marked takes no lock
}

// any reports, without the lock, whether anything is marked.
func (b *brokenMarks) any() bool { return b.count.Load() > 0 }

// isBroken reports whether key is marked broken at now.
func (b *brokenMarks) isBroken(key brokenKey, now time.Time) bool {
	_, broken := b.brokenUntil(key, now)
	return broken
}

// brokenUntil returns when key's mark ends, if it is marked at now.
func (b *brokenMarks) brokenUntil(key brokenKey, now time.Time) (time.Time, bool) {
	if !b.any() {
		return time.Time{}, false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	mark, ok := b.marks.Peek(key)
	return mark.until, ok && now.Before(mark.until)
}

// fail marks key broken at now. Requests that were in flight together saw
// one outage, not several: the period doubles per failure after the last
// mark expired.
func (b *brokenMarks) fail(key brokenKey, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.marks == nil {
		b.marks, _ = simplelru.NewLRU[brokenKey, brokenMark](maxBrokenMarks, nil) // fails only for a size <= 0
	}
	mark, _ := b.marks.Get(key)
	if now.Before(mark.until) {
		return
	}
	mark.failures++
	period := brokenPeriod << min(mark.failures-1, 10)
	mark.until = now.Add(min(period, maxBrokenPeriod))
	b.marks.Add(key, mark)
	b.count.Store(int32(b.marks.Len()))
}

// clear removes key's mark, if any.
func (b *brokenMarks) clear(key brokenKey) {
	if !b.any() {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.marks.Remove(key)
	b.count.Store(int32(b.marks.Len()))
}

// dropBroken moves the candidates marked broken for the request's origin to
// skipped.
func (t *Transport) dropBroken(r *transportRequest, usable []candidate, skipped []Skipped) ([]candidate, []Skipped) {
	if !t.broken.any() {
		return usable, skipped
	}
	now := t.clock()
	kept := usable[:0]
	for _, c := range usable {
		if t.broken.isBroken(brokenKeyOf(r.origin, c.target), now) {
			skipped = append(skipped, Skipped{Protocol: c.offer, Reason: ErrBroken})
			continue
		}
		kept = append(kept, c)
	}
	return kept, skipped
}

// noteOutcome marks tgt broken for the request's origin after a failure
// before any connection, and clears the mark after a response. Failures the
// caller caused (its context ended) say nothing about the server.
func (t *Transport) noteOutcome(r *transportRequest, tgt target, err error) {
	switch {
	case err == nil:
		t.broken.clear(brokenKeyOf(r.origin, tgt))
		if tgt.kind == targetHTTP3 && t.altSvcRefused.Load() != nil {
			t.altSvcRefused.Store(nil) // HTTP/3 works somewhere again: decide anew
		}
	case beforeConnection(err) && r.req.Context().Err() == nil:
		t.broken.fail(brokenKeyOf(r.origin, tgt), t.clock())
	}
}
