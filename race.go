package upgrade

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
)

// The race of QUIC against TCP, as Chromium and curl run it:
// when a TCP protocol stands behind HTTP/3, a new QUIC connection has
// HTTP3FallbackDelay to itself; then the TCP connection that protocol
// would use is dialed beside it, and the first connection up carries the
// request. The race is between connections, decided before any byte of
// the request left, so the request is sent once:
//
//   - QUIC first: the TCP connection is closed unused;
//   - TCP first: the QUIC dial is stopped and fails with errQUICSlow, a
//     connectError, so the fallback runs and HTTP/3 is marked broken; the
//     TCP connection waits in its transport's handOff, where the
//     fallback's dial takes it.

// errQUICSlow: a TCP connection for the protocol behind HTTP/3 was up
// before the QUIC handshake was done; the request goes over TCP, and
// HTTP/3 is marked broken for the address.
var errQUICSlow = errors.New("upgrade: QUIC handshake slower than TCP; TCP goes instead")

// contenderKey carries, in the context of an HTTP/3 replay, the target of
// the next candidate: the TCP protocol that races it. A remembered route
// carries none; Base stands behind it, and asBase races for Base.
type contenderKey struct{}

func raceWith(ctx context.Context, tgt target) context.Context {
	return context.WithValue(ctx, contenderKey{}, tgt)
}

// asBase stands for Base in a race: the caller's protocols over TLS, from
// a transport cloned from the template, with its dialer and TLS settings.
// Base's own dialer cannot be handed a connection, so a request whose
// remembered HTTP/3 route lost the race goes over asBase's transport.
var asBase = target{kind: targetTLS}

// racers is the Transport as the HTTP/3 transport sees it. An interface,
// not a func value: kinds builds the HTTP/3 transport, and a static
// reference back to kinds would be an initialization cycle.
type racers interface {
	tcpContender(ctx context.Context) *tcpTransport
}

// tcpContender returns the transport whose TCP connection races a QUIC
// dial made with ctx, or nil if there is none.
func (t *Transport) tcpContender(ctx context.Context) *tcpTransport {
	tgt, ok := ctx.Value(contenderKey{}).(target)
	if !ok {
		tgt = asBase
	}
	rt, err := t.inner.get(tgt, func() http.RoundTripper { return kinds[tgt.kind].build(t, tgt) })
	if tcp, ok := rt.(*tcpTransport); err == nil && ok && tcp.dialTLS != nil {
		return tcp
	}
	return nil
}

// tcpUp marks a QUIC dial's failure after which the TCP contender's
// connection is up and waits in its transport's handOff.
type tcpUp struct{ err error }

func (e *tcpUp) Error() string { return e.err.Error() }
func (e *tcpUp) Unwrap() error { return e.err }

// tcpIsUp reports whether err left a TCP connection waiting for the
// request.
func tcpIsUp(err error) bool {
	var up *tcpUp
	return errors.As(err, &up)
}

type quicResult struct {
	conn *quic.Conn
	err  error
}

// dialRacing dials QUIC to addr with dialQUIC and, unless it is done
// within the delay, races it against the TCP contender. Without a TCP
// protocol behind (a 426 that offered HTTP/3 alone: info.quicOnly) or with
// no delay, QUIC dials alone, with the whole HTTP3HandshakeTimeout. The
// race ends with ctx, the dial's, or info.caller, the context of the
// request that caused the dial (nil if none): once the request is gone,
// nobody would take a TCP connection, and QUIC goes on alone, as quic-go
// dials on.
func (h *http3Transport) dialRacing(ctx context.Context, info dialInfo, addr string, dialQUIC func(context.Context) (*quic.Conn, error)) (*quic.Conn, error) {
	if h.fallbackDelay <= 0 || h.racers == nil || info.quicOnly {
		return dialQUIC(ctx)
	}
	caller := info.caller
	start := time.Now()
	quicCtx, stopQUIC := context.WithCancel(ctx)
	defer stopQUIC()
	quicDone := make(chan quicResult, 1)
	go func() {
		conn, err := dialQUIC(quicCtx)
		quicDone <- quicResult{conn, err}
	}()
	race, endRace := context.WithCancel(ctx)
	defer endRace()
	if caller != nil {
		defer context.AfterFunc(caller, endRace)()
	}
	delay := time.NewTimer(h.fallbackDelay)
	defer delay.Stop()
	select {
	case q := <-quicDone:
		return q.conn, q.err
	case <-delay.C:
	}
	var tcp *tcpTransport
	if race.Err() == nil {
		tcp = h.racers.tcpContender(ctx)
	}
	if tcp == nil {
		q := <-quicDone
		return q.conn, q.err
	}
	// The TCP contender dials, and parks under, the address net/http will
	// ask its dialer for, which is not always quic-go's pool key.
	if info.tcpAddr != "" {
		addr = info.tcpAddr
	}
	pre := startPredial(race, tcp.dialTLS, addr)
	raced := h.raceReport(ctx, addr, start)
	select {
	case <-race.Done():
		pre.abandon()
		q := <-quicDone
		return raced(q.conn, q.err, false)
	case q := <-quicDone:
		if q.err == nil || race.Err() != nil {
			pre.abandon()
			return raced(q.conn, q.err, false)
		}
		// QUIC failed before TCP was up: TCP, under way, proceeds.
		conn, err := pre.wait(race)
		if err != nil {
			return raced(nil, q.err, false)
		}
		tcp.ahead.put(addr, conn)
		return raced(nil, &tcpUp{q.err}, true)
	case <-pre.done:
		if pre.err != nil {
			// The TCP contender would fail the same way: QUIC keeps its
			// whole bound.
			q := <-quicDone
			return raced(q.conn, q.err, false)
		}
		if race.Err() != nil {
			pre.conn.Close() // the request is gone: QUIC goes on alone
			q := <-quicDone
			return raced(q.conn, q.err, false)
		}
		stopQUIC()
		q := <-quicDone
		switch {
		case q.err == nil:
			// QUIC was done at the same moment: the preferred one goes.
			pre.conn.Close()
			return raced(q.conn, nil, false)
		case race.Err() != nil:
			pre.conn.Close() // no fallback will come for it
			return raced(nil, errQUICSlow, false)
		}
		tcp.ahead.put(addr, pre.conn)
		return raced(nil, &tcpUp{errQUICSlow}, true)
	}
}

// raceReport returns what dialRacing returns through once a TCP contender
// started: it tells the request's trace who won.
func (h *http3Transport) raceReport(ctx context.Context, addr string, start time.Time) func(*quic.Conn, error, bool) (*quic.Conn, error) {
	trace := traceFrom(ctx)
	return func(conn *quic.Conn, err error, tcpWon bool) (*quic.Conn, error) {
		if trace.Raced != nil {
			info := RaceInfo{Addr: addr, Delay: h.fallbackDelay, Took: time.Since(start), Err: err}
			switch {
			case tcpWon:
				info.Winner = "TCP"
			case err == nil:
				info.Winner = "QUIC"
			}
			trace.Raced(info)
		}
		return conn, err
	}
}

// predial is a TCP contender's dial under way.
type predial struct {
	cancel context.CancelFunc
	done   chan struct{} // closed once conn and err are set

	mu        sync.Mutex // guards conn and abandoned while the dial runs
	abandoned bool       // QUIC won or the request went: close what comes
	conn      net.Conn
	err       error
}

func startPredial(ctx context.Context, dial dialFunc, addr string) *predial {
	ctx, cancel := context.WithCancel(ctx)
	p := &predial{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		conn, err := dial(ctx, "tcp", addr)
		cancel() // the connection, once up, outlives the dial's context
		p.mu.Lock()
		defer p.mu.Unlock()
		if err == nil && p.abandoned {
			conn.Close()
			conn, err = nil, context.Canceled
		}
		p.conn, p.err = conn, err
	}()
	return p
}

// wait returns the dial's connection, or the request's end.
func (p *predial) wait(ctx context.Context) (net.Conn, error) {
	select {
	case <-p.done:
		return p.conn, p.err
	case <-ctx.Done():
		p.abandon()
		return nil, ctx.Err()
	}
}

// abandon stops the dial; a connection it made, or makes, is closed.
func (p *predial) abandon() {
	p.cancel()
	p.mu.Lock()
	p.abandoned = true
	conn := p.conn
	p.conn = nil
	p.mu.Unlock()
	if conn != nil {
		conn.Close()
	}
}

// handOffFor is how long a connection that won a race waits for a dial to
// take it. The fallback dials as soon as the QUIC dial returns; a
// connection not taken by then lost its request (to an idle connection,
// or the caller gave up) and is closed.
const handOffFor = 5 * time.Second

// handOff keeps the TCP connections that won a race, by address, for the
// next dials of their transport. The zero value is empty and ready.
type handOff struct {
	mu      sync.Mutex // guards waiting and closed
	waiting map[string][]*waitingConn
	closed  bool // the transport closed: close connections as they come
}

type waitingConn struct {
	conn  net.Conn
	timer *time.Timer // closes conn if no dial took it in time
}

// put leaves conn for the next dial to addr.
func (h *handOff) put(addr string, conn net.Conn) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		conn.Close()
		return
	}
	if h.waiting == nil {
		h.waiting = make(map[string][]*waitingConn)
	}
	w := &waitingConn{conn: conn}
	w.timer = time.AfterFunc(handOffFor, func() { h.expire(addr, w) })
	h.waiting[addr] = append(h.waiting[addr], w)
}

// take returns a connection left for addr, or nil.
func (h *handOff) take(addr string) net.Conn {
	h.mu.Lock()
	defer h.mu.Unlock()
	ws := h.waiting[addr]
	if len(ws) == 0 {
		return nil
	}
	w := ws[0]
	if len(ws) == 1 {
		delete(h.waiting, addr)
	} else {
		h.waiting[addr] = ws[1:]
	}
	w.timer.Stop()
	return w.conn
}

func (h *handOff) expire(addr string, w *waitingConn) {
	h.mu.Lock()
	ws := h.waiting[addr]
	for i, other := range ws {
		if other == w {
			h.waiting[addr] = append(ws[:i:i], ws[i+1:]...)
			if len(h.waiting[addr]) == 0 {
				delete(h.waiting, addr)
			}
			h.mu.Unlock()
			w.conn.Close()
			return
		}
	}
	h.mu.Unlock() // taken meanwhile
}

// closeWaiting closes every waiting connection.
func (h *handOff) closeWaiting() {
	h.mu.Lock()
	waiting := h.waiting
	h.waiting = nil
	h.mu.Unlock()
	for _, ws := range waiting {
		for _, w := range ws {
			w.timer.Stop()
			w.conn.Close()
		}
	}
}

// close closes every waiting connection, and those put later at once.
func (h *handOff) close() {
	h.mu.Lock()
	h.closed = true
	h.mu.Unlock()
	h.closeWaiting()
}

// taking wraps dial so that it takes a waiting connection first.
func (h *handOff) taking(dial dialFunc) dialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if conn := h.take(addr); conn != nil {
			return conn, nil
		}
		return dial(ctx, network, addr)
	}
}
