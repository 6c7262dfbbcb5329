package upgrade

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for the origin memory.
const (
	defaultMemoryTTL  = 24 * time.Hour // as Alt-Svc's default max-age (RFC 7838 §3.1)
	defaultMemorySize = 4096
)

// memoryEntry is what an origin demanded, and until when to believe it.
type memoryEntry struct {
	via     candidate
	expires time.Time
}

// memory remembers per origin the protocol a replay succeeded over, so the
// next request goes there directly. It is read on every request and
// written once per origin learned, so lookups take no lock: the map is
// replaced whole, under mu, by each write. It is bounded by an approximate
// LRU: every write starts a new epoch, an entry notes the epoch it was last
// used in, and the one used longest ago goes first when the memory is full.
// golang-lru's caches are not used: their lookups take a lock, and the
// expirable one starts a goroutine that never exits.
type memory struct {
	ttl  time.Duration
	size int

	// entries holds the slots per host (origin.host), so that a lookup
	// hashes one string; a host has one slot per scheme and virtual host.
	entries atomic.Pointer[map[string][]*memorySlot] // never written in place
	epoch   atomic.Uint64                            // bumped by every put

	mu sync.Mutex // serialises writers: put, forget; guards n
	n  int        // slots in entries
}

type memorySlot struct {
	origin origin
	memoryEntry
	used atomic.Uint64 // the epoch of the last lookup, or of the put
}

func newMemory(size int, ttl time.Duration) *memory {
	return &memory{ttl: ttl, size: size}
}

// empty reports whether nothing is remembered.
func (m *memory) empty() bool {
	entries := m.entries.Load()
	return entries == nil || len(*entries) == 0
}

// lookup returns what o demanded, unless it has expired by now.
func (m *memory) lookup(o origin, now time.Time) (candidate, bool) {
	entries := m.entries.Load()
	if entries == nil {
		return candidate{}, false
	}
	for _, e := range (*entries)[o.host] {
		if e.origin != o {
			continue
		}
		if !now.Before(e.expires) {
			m.forget(o)
			return candidate{}, false
		}
		// Written only when it changes, so that many goroutines on one
		// origin share its cache line rather than fight over it.
		if epoch := m.epoch.Load(); e.used.Load() != epoch {
			e.used.Store(epoch)
		}
		return e.via, true
	}
	return candidate{}, false
}

// put remembers that o answered over entry.via until entry.expires. A full
// memory first drops the entry used longest ago.
func (m *memory) put(o origin, entry memoryEntry) {
	m.mu.Lock()
	defer m.mu.Unlock()
	next := m.copyWithout(o)
	if m.n >= m.size {
		m.evictOne(next)
	}
	e := &memorySlot{origin: o, memoryEntry: entry}
	e.used.Store(m.epoch.Add(1))
	next[o.host] = append(next[o.host], e)
	m.n++
	m.entries.Store(&next)
}

// forget drops what is remembered for o.
func (m *memory) forget(o origin) {
	m.mu.Lock()
	defer m.mu.Unlock()
	next := m.copyWithout(o)
	m.entries.Store(&next)
}

// copyWithout returns a copy of the entries without o's slot, and counts
// it out. Slices are shared with the old map unless they change.
func (m *memory) copyWithout(o origin) map[string][]*memorySlot {
	var old map[string][]*memorySlot
	if p := m.entries.Load(); p != nil {
		old = *p
	}
	next := make(map[string][]*memorySlot, len(old)+1)
	for host, slots := range old {
		next[host] = slots
	}
	m.remove(next, o)
	return next
}

// remove drops o's slot from entries, a map not yet published.
func (m *memory) remove(entries map[string][]*memorySlot, o origin) {
	slots := entries[o.host]
	i := slices.IndexFunc(slots, func(e *memorySlot) bool { return e.origin == o })
	if i < 0 {
		return
	}
	m.n--
	if len(slots) == 1 {
		delete(entries, o.host)
		return
	}
	entries[o.host] = slices.Delete(slices.Clone(slots), i, i+1)
}

// evictOne drops from a full memory the entry used longest ago.
func (m *memory) evictOne(entries map[string][]*memorySlot) {
	var victim origin
	oldest := uint64(math.MaxUint64)
	for _, slots := range entries {
		for _, e := range slots {
			if used := e.used.Load(); used < oldest {
				victim, oldest = e.origin, used
			}
		}
	}
	m.remove(entries, victim)
}

// live returns the entries that have not expired by now, least recently
// used first.
func (m *memory) live(now time.Time) []memoryFileEntry {
	p := m.entries.Load()
	if p == nil {
		return nil
	}
	type liveEntry struct {
		o    origin
		e    *memorySlot
		used uint64
	}
	var entries []liveEntry
	for _, slots := range *p {
		for _, e := range slots {
			if now.Before(e.expires) {
				entries = append(entries, liveEntry{e.origin, e, e.used.Load()})
			}
		}
	}
	slices.SortFunc(entries, func(a, b liveEntry) int { return cmp.Compare(a.used, b.used) })
	live := make([]memoryFileEntry, len(entries))
	for i, le := range entries {
		live[i] = memoryFileEntry{
			Origin: le.o.String(), Host: le.o.vhost, Protocol: le.e.via.demands(), Expires: le.e.expires.UTC(),
		}
	}
	return live
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
		t.mem.Store(newMemory(size, ttl))
	})
	return t.mem.Load()
}

// learn remembers that the request's origin answered over c.
func (t *Transport) learn(r *transportRequest, c candidate) {
	m := t.memory()
	if m == nil {
		return
	}
	m.put(r.origin, memoryEntry{via: c, expires: t.clock().Add(m.ttl)})
	if r.trace.Learned != nil {
		r.trace.Learned(MemoryInfo{Origin: r.origin.String(), Protocol: c.offer})
	}
}

// forget drops what is remembered for the request's origin, because via
// failed before a connection (err) or met a 426 (err is nil).
func (t *Transport) forget(r *transportRequest, via candidate, err error) {
	if m := t.mem.Load(); m != nil {
		m.forget(r.origin)
	}
	if r.trace.Forgot != nil {
		r.trace.Forgot(MemoryInfo{Origin: r.origin.String(), Protocol: via.offer, Err: err})
	}
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
	Protocol string    `json:"protocol"`       // as the server offered it, such as "HTTP/2"; "HTTP/2, TLS/1.3" for two demands met at once
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
		file.Entries = append(file.Entries, m.live(t.clock())...)
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
	demands, err := ParseUpgrade(http.Header{"Upgrade": {e.Protocol}})
	if err != nil || len(demands) == 0 || len(demands) > 2 {
		return origin{}, candidate{}, false
	}
	s := situation{secure: u.Scheme == "https", respMajor: 1, proxied: t.proxied(req), ownDialer: t.ownDialer(), floor: t.floor()}
	var via candidate
	for i := len(demands) - 1; i >= 0; i-- { // the earlier demand is named last
		tgt, reason := targetFor(s, demands[i])
		if reason != nil {
			return origin{}, candidate{}, false
		}
		next := newCandidate(demands[i], tgt, demands[i:i+1])
		if i == len(demands)-1 {
			via = next
			continue
		}
		if via = combine(via, next); via.also == (Protocol{}) {
			return origin{}, candidate{}, false // two demands no connection meets at once
		}
	}
	return originOf(req), via, true
}
