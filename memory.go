package upgrade

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// Defaults for the origin memory (DESIGN §5).
const (
	defaultMemoryTTL  = 24 * time.Hour // as Alt-Svc's default max-age
	defaultMemorySize = 4096
)

// memoryEntry is what an origin demanded, and until when to believe it.
type memoryEntry struct {
	via     candidate
	expires time.Time
}

// memory remembers per origin the protocol a replay succeeded over, so the
// next request goes there directly. It is an LRU with an expiry per entry.
// golang-lru's expirable cache is not used: it starts a goroutine that never
// exits, and it cannot take an imported entry's own expiry.
type memory struct {
	ttl time.Duration

	mu      sync.Mutex // guards entries: a lookup moves an entry to the front
	entries *simplelru.LRU[origin, memoryEntry]
	size    atomic.Int32 // len(entries), read without the lock on every request
}

// memory returns the origin memory, built on first use; nil when it is off.
func (t *Transport) memory() *memory {
	if t.MemorySize < 0 {
		return nil
	}
	t.memoryOnce.Do(func() {
		size, ttl := t.MemorySize, t.MemoryTTL
		if size == 0 {
			size = defaultMemorySize
		}
		if ttl <= 0 {
			ttl = defaultMemoryTTL
		}
		entries, _ := simplelru.NewLRU[origin, memoryEntry](size, nil) // fails only for size <= 0
		t.mem.Store(&memory{ttl: ttl, entries: entries})
	})
	return t.mem.Load()
}

// recall returns the protocol remembered for req's origin, if any. A
// request that has nothing remembered pays one atomic load.
func (t *Transport) recall(req *http.Request) (origin, candidate, bool) {
	m := t.mem.Load()
	if m == nil || m.size.Load() == 0 {
		return origin{}, candidate{}, false
	}
	key := originOf(req)
	m.mu.Lock()
	entry, ok := m.entries.Get(key)
	if ok && !t.clock().Before(entry.expires) {
		m.entries.Remove(key)
		m.size.Store(int32(m.entries.Len()))
		ok = false
	}
	m.mu.Unlock()
	if !ok || (needsDirectRoute(entry.via.target) && t.proxied(req)) ||
		(multiplexed(entry.via.target) && needsHTTP1(req)) {
		return origin{}, candidate{}, false
	}
	return key, entry.via, true
}

// learn remembers that origin answered over c.
func (t *Transport) learn(o origin, c candidate) {
	m := t.memory()
	if m == nil {
		return
	}
	m.put(o, memoryEntry{via: c, expires: t.clock().Add(m.ttl)})
}

func (m *memory) put(o origin, entry memoryEntry) {
	m.mu.Lock()
	m.entries.Add(o, entry)
	m.size.Store(int32(m.entries.Len()))
	m.mu.Unlock()
}

// forget drops what is remembered for o.
func (t *Transport) forget(o origin) {
	m := t.mem.Load()
	if m == nil {
		return
	}
	m.mu.Lock()
	m.entries.Remove(o)
	m.size.Store(int32(m.entries.Len()))
	m.mu.Unlock()
}

// viaMemory sends req straight over the protocol remembered for its origin
// (DESIGN §5). A 426 there is handled like any other. A failure before any
// connection forgets the origin, marks the protocol broken and sends the
// request through Base again, if its body can be sent again.
func (t *Transport) viaMemory(req *http.Request, o origin, via candidate) (*http.Response, error) {
	trace := traceFrom(req.Context())
	if trace.Remembered != nil {
		trace.Remembered(MemoryInfo{Origin: o.String(), Protocol: via.offer})
	}
	out, held := holdBody(req)
	if multiplexed(via.target) && hasHopByHop(out.Header) {
		out = out.Clone(out.Context())
		removeHopByHop(out.Header)
	}
	resp, err := t.send(out, via.target)
	t.noteOutcome(req.Context(), o, via.target, err)
	if err != nil {
		if !beforeConnection(err) || req.Context().Err() != nil {
			held.release()
			return nil, err
		}
		t.forget(o)
		if trace.Forgot != nil {
			trace.Forgot(MemoryInfo{Origin: o.String(), Protocol: via.offer, Err: err})
		}
		if via.target.kind == targetInbandTLS {
			// Base would send it in clear, where the server demanded TLS
			// and the switch failed, perhaps at an attacker's hands.
			held.release()
			return nil, err
		}
		again, ok := requestAgain(req, held)
		if !ok {
			return nil, err
		}
		return t.viaBase(again)
	}
	if resp.StatusCode != http.StatusUpgradeRequired {
		held.release()
		return resp, nil
	}
	// The server wants more than what it once asked for.
	t.forget(o)
	if trace.Forgot != nil {
		trace.Forgot(MemoryInfo{Origin: o.String(), Protocol: via.offer})
	}
	return t.upgrade(req, held, resp)
}

// requestAgain returns req ready to be sent again after an attempt that
// never had a connection, or false when its body is gone.
func requestAgain(req *http.Request, held *oneShotBody) (*http.Request, bool) {
	bodies := replayBody{req: req, current: held}
	body, err := bodies.next()
	if err != nil {
		bodies.done()
		return nil, false
	}
	if body == req.Body {
		return req, true
	}
	again := req.WithContext(req.Context())
	again.Body = body
	return again, true
}

// The memory's file form: small, versioned JSON, in the spirit of curl's
// alt-svc cache file.
const memoryFileVersion = 1

type memoryFile struct {
	Version int               `json:"version"`
	Entries []memoryFileEntry `json:"entries"`
}

type memoryFileEntry struct {
	Origin   string    `json:"origin"`         // scheme://host:port
	Host     string    `json:"host,omitempty"` // the Host header, when it differs
	Protocol string    `json:"protocol"`       // as the server offered it, such as "HTTP/2"
	Expires  time.Time `json:"expires"`
}

// maxMemoryFileBytes bounds what ImportMemory reads.
const maxMemoryFileBytes = 16 << 20

// ExportMemory writes what the transport remembers, least recently used
// first, as JSON:
//
//	{"version":1,"entries":[{"origin":"https://example.com:443","protocol":"HTTP/2","expires":"2026-11-26T18:00:00Z"}]}
//
// ImportMemory reads it back, so a process can start warm.
func (t *Transport) ExportMemory(w io.Writer) error {
	file := memoryFile{Version: memoryFileVersion, Entries: []memoryFileEntry{}}
	if m := t.mem.Load(); m != nil {
		now := t.clock()
		m.mu.Lock()
		for _, o := range m.entries.Keys() {
			entry, _ := m.entries.Peek(o)
			if now.Before(entry.expires) {
				file.Entries = append(file.Entries, memoryFileEntry{
					Origin: o.String(), Host: o.vhost, Protocol: entry.via.offer.String(), Expires: entry.expires.UTC(),
				})
			}
		}
		m.mu.Unlock()
	}
	return json.NewEncoder(w).Encode(file)
}

// ImportMemory adds the entries ExportMemory wrote. Entries whose origin is
// malformed, whose protocol this transport would not use for that origin,
// or that have expired are skipped and counted; an unknown file version or
// malformed JSON is an error. Entries keep their own expiry.
func (t *Transport) ImportMemory(r io.Reader) (imported, skipped int, err error) {
	var file memoryFile
	if err := json.NewDecoder(io.LimitReader(r, maxMemoryFileBytes)).Decode(&file); err != nil {
		return 0, 0, fmt.Errorf("upgrade: reading memory: %w", err)
	}
	if file.Version != memoryFileVersion {
		return 0, 0, fmt.Errorf("upgrade: memory file version %d, want %d", file.Version, memoryFileVersion)
	}
	m := t.memory()
	if m == nil {
		return 0, len(file.Entries), nil
	}
	now := t.clock()
	for _, e := range file.Entries {
		o, via, ok := t.validEntry(e)
		if !ok || !now.Before(e.Expires) {
			skipped++
			continue
		}
		m.put(o, memoryEntry{via: via, expires: e.Expires})
		imported++
	}
	return imported, skipped, nil
}

// validEntry checks an imported entry the way a live 426 would be: the
// protocol must be one this transport would choose for that origin, had
// the 426 come over HTTP/1.1.
func (t *Transport) validEntry(e memoryFileEntry) (origin, candidate, bool) {
	u, err := url.Parse(e.Origin)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" || u.Port() == "" ||
		u.Path != "" || u.RawQuery != "" || u.User != nil {
		return origin{}, candidate{}, false
	}
	if port, err := strconv.Atoi(u.Port()); err != nil || port < 1 || port > 65535 {
		return origin{}, candidate{}, false
	}
	req := &http.Request{URL: u, Host: e.Host, Header: http.Header{}}
	if e.Host == "" {
		req.Host = u.Host
	}
	offered, err := ParseUpgrade(http.Header{"Upgrade": {e.Protocol}})
	if err != nil || len(offered) != 1 {
		return origin{}, candidate{}, false
	}
	tgt, reason := t.targetFor(req, &http.Response{ProtoMajor: 1, ProtoMinor: 1}, offered[0])
	if reason != nil {
		return origin{}, candidate{}, false
	}
	return originOf(req), candidate{offer: offered[0], target: tgt}, true
}
