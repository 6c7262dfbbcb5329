package upgrade

import (
	"cmp"
	"encoding/json"
	"fmt"
	"hash/maphash"
	"io"
	"math/bits"
	"math/rand/v2"
	"net"
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
	expires time.Time
	via     candidate
}

// memory remembers per origin the protocol a replay succeeded over, so the
// next request goes there directly. It is read on every request and
// written once per origin learned, so lookups take no lock: each of its
// shards is a map replaced whole, under mu, by a write to it. Sharding
// keeps a write's copy small when a client meets thousands of origins.
// Slots are found by a hash of the host and, when the Host header differs,
// of that virtual host too: a request hashes one string unless it names
// another Host, and a reverse proxy's thousands of virtual hosts behind one
// backend address get a slot each, not one list scanned and copied whole
// on every lookup and put. The memory is
// bounded by an approximate LRU: every put starts a new epoch, a slot
// notes the epoch it was last used in, and when the memory is full the one
// used longest ago among a sample of 32 goes. golang-lru's caches are not used: their
// lookups take a lock, and the expirable one starts a goroutine that never
// exits.
type memory struct {
	// What every lookup reads, together on one cache line.
	count atomic.Int32  // n, read without the lock on every request
	epoch atomic.Uint64 // bumped by every put
	// last is the slot put last, or nil once removed: looked at before
	// hashing, so that a client talking to the one origin it learned finds
	// it in one load, not a hash and a map probe. Written by writers
	// only, never by lookups, so that many goroutines share its line.
	last atomic.Pointer[memorySlot]
	seed maphash.Seed

	shards [memoryShards]atomic.Pointer[map[uint64][]*memorySlot] // never written in place

	ttl  time.Duration
	size int
	mu   sync.Mutex // serialises writers: put, forget; guards n
	n    int        // slots in all shards
}

const memoryShards = 64

// memorySlot is one origin's entry. A remembered request reads its first
// two cache lines only: the key, when it was used, the inner
// transport, the expiry and what sending reads of the candidate.
type memorySlot struct {
	origin origin
	used   atomic.Uint64 // the epoch of the last lookup, or of the put
	// inner is the inner transport via goes over, once a request found it
	// built and the Transport's settings allow via: later requests neither
	// look it up nor decide again what does not depend on them.
	inner atomic.Pointer[innerTransport]
	// express is inner as well when a request needs nothing more asked of
	// the Transport's settings to go over the route: no CheckUpgrade to
	// consult, no proxy for the origin, no in-band upgrade to add
	// (Transport.express).
	express atomic.Pointer[innerTransport]
	memoryEntry
}

func newMemory(size int, ttl time.Duration) *memory {
	return &memory{ttl: ttl, size: size, seed: maphash.MakeSeed()}
}

// empty reports whether nothing is remembered.
func (m *memory) empty() bool {
	return m.count.Load() == 0
}

// shardOf returns o's hash and the shard it lives in.
func (m *memory) shardOf(o origin) (uint64, *atomic.Pointer[map[uint64][]*memorySlot]) {
	h := maphash.String(m.seed, o.host)
	if o.vhost != "" {
		h ^= bits.RotateLeft64(maphash.String(m.seed, o.vhost), 1) // rotated: host and vhost do not cancel out
	}
	return h, &m.shards[h%memoryShards]
}

// lookup returns o's slot, or nil when nothing is remembered for o or it
// has expired by now. The slot is shared: read it, never write it.
func (m *memory) lookup(o origin, now time.Time) *memorySlot {
	e := m.last.Load()
	if e == nil || e.origin != o {
		if e = m.slotOf(o); e == nil {
			return nil
		}
	}
	if !now.Before(e.expires) {
		m.forgetSlot(e)
		return nil
	}
	m.touch(e)
	return e
}

// touch notes that e was used now, for the LRU.
func (m *memory) touch(e *memorySlot) {
	// Written only when it changes, so that many goroutines on one
	// origin share its cache line rather than fight over it.
	if epoch := m.epoch.Load(); e.used.Load() != epoch {
		e.used.Store(epoch)
	}
}

// slotOf returns o's slot, or nil.
func (m *memory) slotOf(o origin) *memorySlot {
	h, shard := m.shardOf(o)
	slots := shard.Load()
	if slots == nil {
		return nil
	}
	for _, e := range (*slots)[h] {
		if e.origin == o {
			return e
		}
	}
	return nil
}

// put remembers that o answered over entry.via until entry.expires. A full
// memory first drops the entry used longest ago.
func (m *memory) put(o origin, entry memoryEntry) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.remove(o)
	if m.n >= m.size {
		m.evictOne()
	}
	e := &memorySlot{origin: o, memoryEntry: entry}
	e.used.Store(m.epoch.Add(1))
	m.epoch.Add(1) // a lookup from now on ranks above this put
	h, shard := m.shardOf(o)
	next := copyShard(shard)
	next[h] = append(slices.Clip(next[h]), e)
	shard.Store(&next)
	m.last.Store(e)
	m.n++
	m.count.Store(int32(m.n))
}

// forget drops what is remembered for o.
func (m *memory) forget(o origin) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.remove(o)
}

// forgetSlot drops e, if it is still what is remembered for its origin: a
// lookup that saw it expire must not drop what a replay put since.
func (m *memory) forgetSlot(e *memorySlot) {
	m.mu.Lock()
	defer m.mu.Unlock()
	h, shard := m.shardOf(e.origin)
	if p := shard.Load(); p != nil && slices.Contains((*p)[h], e) {
		m.remove(e.origin)
	}
}

// remove drops o's slot, if any. The caller holds mu.
func (m *memory) remove(o origin) {
	h, shard := m.shardOf(o)
	p := shard.Load()
	if p == nil {
		return
	}
	slots := (*p)[h]
	i := slices.IndexFunc(slots, func(e *memorySlot) bool { return e.origin == o })
	if i < 0 {
		return
	}
	if m.last.Load() == slots[i] {
		m.last.Store(nil)
	}
	next := copyShard(shard)
	if len(slots) == 1 {
		delete(next, h)
	} else {
		next[h] = slices.Delete(slices.Clone(slots), i, i+1)
	}
	shard.Store(&next)
	m.n--
	m.count.Store(int32(m.n))
}

// copyShard returns a copy of the shard's map to change and publish.
func copyShard(shard *atomic.Pointer[map[uint64][]*memorySlot]) map[uint64][]*memorySlot {
	var old map[uint64][]*memorySlot
	if p := shard.Load(); p != nil {
		old = *p
	}
	next := make(map[uint64][]*memorySlot, len(old)+1)
	for h, slots := range old {
		next[h] = slots
	}
	return next
}

// evictSample is how many slots a full memory looks at to choose the one
// to drop: the least recently used of a sample, as Redis does, so that a
// client meeting a new origin per request pays a bounded cost, not a scan.
const evictSample = 32

// evictOne drops the entry used longest ago among a sample, starting at a
// random shard (and in a map's random order within it). The caller holds
// mu.
func (m *memory) evictOne() {
	var victim *memorySlot
	seen := 0
	start := rand.IntN(memoryShards)
	for i := range memoryShards {
		p := m.shards[(start+i)%memoryShards].Load()
		if p == nil {
			continue
		}
		for _, slots := range *p {
			for _, e := range slots {
				if victim == nil || e.used.Load() < victim.used.Load() {
					victim = e
				}
				seen++
			}
			if seen >= evictSample {
				m.remove(victim.origin)
				return
			}
		}
	}
	if victim != nil {
		m.remove(victim.origin)
	}
}

// live returns the entries that have not expired by now, least recently
// used first.
func (m *memory) live(now time.Time) []memoryFileEntry {
	type liveEntry struct {
		o    origin
		e    *memorySlot
		used uint64
	}
	var entries []liveEntry
	for i := range m.shards {
		p := m.shards[i].Load()
		if p == nil {
			continue
		}
		for _, slots := range *p {
			for _, e := range slots {
				if now.Before(e.expires) {
					entries = append(entries, liveEntry{e.origin, e, e.used.Load()})
				}
			}
		}
	}
	slices.SortFunc(entries, func(a, b liveEntry) int { return cmp.Compare(a.used, b.used) })
	live := make([]memoryFileEntry, len(entries))
	for i, le := range entries {
		live[i] = memoryFileEntry{
			Origin: le.o.String(), Host: le.o.vhost, Protocol: le.e.via.demands(),
			Alternative: le.e.via.alt, QUICOnly: le.e.via.quicOnly, Expires: le.e.expires.UTC(),
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
func (t *Transport) forget(r *transportRequest, via *candidate, err error) {
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
	Origin   string `json:"origin"`         // scheme://host:port
	Host     string `json:"host,omitempty"` // the Host header, when it differs
	Protocol string `json:"protocol"`       // as the server offered it, such as "HTTP/2"; "HTTP/2, TLS/1.3" for two demands met at once
	// Alternative is where an Alt-Svc said HTTP/3 is, host:port, when not
	// at the origin's own host and port.
	Alternative string `json:"alternative,omitempty"`
	// QUICOnly is set for HTTP/3 from a 426 that offered no TCP protocol:
	// its handshake is not raced (race.go), as Base would meet that 426.
	QUICOnly bool      `json:"quicOnly,omitempty"`
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
// that have expired, or that are beyond MemorySize (the least recently
// used, listed first) are skipped and counted; an unknown file version or
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
	type valid struct {
		o   origin
		via candidate
		e   memoryFileEntry
	}
	var entries []valid
	for _, e := range file.Entries {
		o, via, ok := t.validEntry(e)
		if !ok || !now.Before(e.Expires) {
			skipped++
			continue
		}
		entries = append(entries, valid{o, via, e})
	}
	// The file lists the least recently used first: only the last that
	// fit would be kept, so the others are not put at all (each put past a
	// full memory scans it for the one to evict).
	if extra := len(entries) - m.size; extra > 0 {
		entries = entries[extra:]
	}
	for _, v := range entries {
		m.put(v.o, memoryEntry{via: v.via, expires: v.e.Expires})
	}
	return len(entries), len(file.Entries) - len(entries), nil
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
	s := t.situationOf(req, 1, 0) // as if the 426 had come over HTTP/1.1, in clear
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
	if e.Alternative != "" {
		// Checked as the Alt-Svc that taught it was.
		host, port, err := net.SplitHostPort(e.Alternative)
		alt, ok := alternativeFor(u, altService{protocol: "h3", host: host, port: port})
		if err != nil || !ok || alt == "" || via.target.kind != targetHTTP3 || via.also != (Protocol{}) {
			return origin{}, candidate{}, false
		}
		via.alt = alt
	}
	if e.QUICOnly {
		if via.target.kind != targetHTTP3 {
			return origin{}, candidate{}, false
		}
		via.quicOnly = true
	}
	return originOf(req), via, true
}
