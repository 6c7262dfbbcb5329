package upgrade

import (
	"io"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// innerSet holds the inner transports, one per target, shared by every
// origin and built on first use. A transport exists per kind of target met,
// a handful at most, so lookups scan a copy-on-write list without a lock:
// after the first requests, it only grows when a new target is met.
type innerSet struct {
	list atomic.Pointer[[]innerTransport] // never written in place

	mu     sync.Mutex // guards closed and the replacement of list
	closed bool
	built  atomic.Int32 // transports built, for tests
}

type innerTransport struct {
	target target
	rt     http.RoundTripper // as built: what Close and CloseIdleConnections reach
	// send is what requests go through: rt, or the transport a
	// tcpTransport wraps, so a remembered request makes one call, not two.
	send http.RoundTripper
}

// roundTrip sends out over it for c: HTTP/3 to c's alternative, if any,
// with no TCP protocol behind it when c is quicOnly.
func (it *innerTransport) roundTrip(out *http.Request, c *candidate) (*http.Response, error) {
	if h3, ok := it.send.(*http3Transport); ok {
		return h3.roundTripVia(out, c.alt, c.quicOnly)
	}
	return it.send.RoundTrip(out)
}

func (s *innerSet) find(tgt target) *innerTransport {
	if list := s.list.Load(); list != nil {
		for i := range *list {
			if (*list)[i].target == tgt {
				return &(*list)[i]
			}
		}
	}
	return nil
}

// get returns the transport for tgt, building it with build on first use.
func (s *innerSet) get(tgt target, build func() http.RoundTripper) (http.RoundTripper, error) {
	it, err := s.entry(tgt, build)
	if err != nil {
		return nil, err
	}
	return it.rt, nil
}

func (s *innerSet) entry(tgt target, build func() http.RoundTripper) (*innerTransport, error) {
	if it := s.find(tgt); it != nil {
		return it, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if it := s.find(tgt); it != nil {
		return it, nil
	}
	var list []innerTransport
	if old := s.list.Load(); old != nil {
		list = slices.Clone(*old)
	}
	rt := build()
	send := rt
	if tcp, ok := rt.(*tcpTransport); ok {
		send = tcp.RoundTripper
	}
	list = append(list, innerTransport{tgt, rt, send})
	s.list.Store(&list)
	s.built.Add(1)
	return &list[len(list)-1], nil
}

// all returns the transports built so far.
func (s *innerSet) all() []http.RoundTripper {
	list := s.list.Load()
	if list == nil {
		return nil
	}
	rts := make([]http.RoundTripper, len(*list))
	for i, it := range *list {
		rts[i] = it.rt
	}
	return rts
}

// close empties the set for good and releases what it held.
func (s *innerSet) close() []error {
	s.mu.Lock()
	s.closed = true
	list := s.list.Swap(nil)
	s.mu.Unlock()
	if list == nil {
		return nil
	}
	var errs []error
	for _, it := range *list {
		closeIdle(it.rt)
		if c, ok := it.rt.(io.Closer); ok {
			errs = append(errs, c.Close())
		}
	}
	return errs
}

// template is the transport upgraded ones are cloned from, so they inherit
// the caller's dialer, proxy, timeouts and TLS settings: Template, else
// Base. Another RoundTripper's settings cannot be known, and guessing them
// could lose the caller's roots, proxy or dialer, so decide and recall
// refuse it (ErrBaseNotTransport) before anything is built: template is
// nil then.
func (t *Transport) template() *http.Transport {
	if t.Template != nil {
		return t.Template
	}
	tr, _ := t.base().(*http.Transport)
	return tr
}

// proxied reports whether a proxy would carry req. A failing Proxy func
// counts as proxied: the safe answer for offers that cannot use one.
func (t *Transport) proxied(req *http.Request) bool {
	template := t.template()
	if template == nil || template.Proxy == nil {
		return false
	}
	proxy := template.Proxy
	u, err := proxy(req)
	return u != nil || err != nil
}

// proxiedOrigin reports whether a proxy may carry a request to o, for a
// decision made once per origin: false only when the template has no
// Proxy, or has net/http's ProxyFromEnvironment, whose answer depends on
// the URL's scheme and host alone (its environment is read once), and it
// names no proxy for o. Any other Proxy func is asked per request.
func (t *Transport) proxiedOrigin(o origin) bool {
	template := t.template()
	if template == nil || template.Proxy == nil {
		return false
	}
	if !sameFunc(template.Proxy, http.ProxyFromEnvironment) {
		return true
	}
	u, err := http.ProxyFromEnvironment(&http.Request{URL: &url.URL{Scheme: o.scheme(), Host: o.host}})
	return u != nil || err != nil
}

// closeIdle calls CloseIdleConnections on rt when it has one.
func closeIdle(rt http.RoundTripper) {
	if c, ok := rt.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// ownDialer reports whether the template dials through a dialer of its own
// that HTTP/3 would go around, and the caller has not allowed that
// (DirectHTTP3). net/http's zero dialer and http.DefaultTransport's own
// (which its clones share) are no one's routing decision.
func (t *Transport) ownDialer() bool {
	template := t.template()
	if t.DirectHTTP3 || template == nil {
		return false
	}
	//lint:ignore SA1019 a Dial of Base's is its routing as much as a DialContext
	if template.Dial != nil || baseTLSDialer(template) != nil {
		return true
	}
	return template.DialContext != nil && !sameFunc(template.DialContext, defaultDialContext)
}

// defaultDialContext is http.DefaultTransport's dialer, as its clones have it.
var defaultDialContext = func() dialFunc {
	if tr, ok := http.DefaultTransport.(*http.Transport); ok {
		return tr.DialContext
	}
	return nil
}()

// sameFunc reports whether a and b are the same func value: the same
// closure, not only the same code (every net.Dialer's DialContext method
// value shares its code, whatever the dialer's Resolver or Control). Go
// has no comparison of func values, so this compares the pointers the
// values hold.
func sameFunc[F dialFunc | func(*http.Request) (*url.URL, error)](a, b F) bool {
	pa, pb := *(*unsafe.Pointer)(unsafe.Pointer(&a)), *(*unsafe.Pointer)(unsafe.Pointer(&b))
	return pa != nil && pa == pb
}

// tcpTransport is an inner transport whose connections are counted, so that
// Close can release the connections busy when it ran once their responses
// are done. net/http has no hook for that moment, and a wrapper on every
// response body would cost each request an allocation, so Close looks
// again at growing intervals until none is open.
type tcpTransport struct {
	http.RoundTripper // *http.Transport, or *inbandTransport
	open              *openConns

	// dialTLS is the transport's own TLS dial, for a connection that
	// races QUIC (race.go); nil for in-band TLS. ahead keeps the ones that
	// won, for the transport's next dial to take.
	dialTLS dialFunc
	ahead   handOff
}

// drainFor bounds how long a closed transport keeps looking: a response
// body the caller never closes holds its connection, as it would in
// net/http, and needs no timer forever.
const drainFor = 10 * time.Minute

func (t *tcpTransport) CloseIdleConnections() {
	t.ahead.closeWaiting()
	closeIdle(t.RoundTripper)
}

// Close closes the idle connections now and the busy ones once idle.
func (t *tcpTransport) Close() error {
	t.open.close()
	t.ahead.close()
	t.CloseIdleConnections()
	t.drain(time.Now().Add(drainFor), 10*time.Millisecond)
	return nil
}

func (t *tcpTransport) drain(until time.Time, every time.Duration) {
	if t.open.n.Load() == 0 || time.Now().After(until) {
		return
	}
	time.AfterFunc(every, func() {
		t.CloseIdleConnections()
		t.drain(until, min(2*every, time.Second))
	})
}
