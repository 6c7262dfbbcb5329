package upgrade

import (
	"context"
	"crypto/tls"
	"net/http"
	"reflect"
	"sync/atomic"
	"time"
)

// Trace holds hooks called while a [Transport] handles a 426, in the style
// of net/http/httptrace. Any hook may be nil. Hooks run on the goroutine
// calling RoundTrip and must not retain the slices or headers they are given.
type Trace struct {
	// Got426 is called when a response has status 426 Upgrade Required.
	Got426 func(Got426Info)
	// HandshakeRefused is called instead when Base's TLS handshake was
	// refused with an alert that states a demand: protocol_version to a
	// client capped below TLS 1.3, no_application_protocol to one that
	// offered only http/1.1. Decided and the replay hooks follow as after
	// a 426.
	HandshakeRefused func(HandshakeRefusedInfo)
	// Decided is called once per 426 with the protocols that will be tried,
	// in order, and why the other offers were left out. When nothing will
	// be tried, Reason says why and the 426 is returned to the caller.
	Decided func(DecisionInfo)
	// ReplayStart is called before the request is sent again over p.
	ReplayStart func(p Protocol)
	// ReplayDone is called when that attempt ends.
	ReplayDone func(ReplayDoneInfo)

	// AltSvc is called when an Alt-Svc header taught the origin HTTP/3, or
	// its "clear" made it forget.
	AltSvc func(AltSvcInfo)
	// Raced is called when a new QUIC connection's handshake was not done
	// within HTTP3FallbackDelay, so a TCP connection was dialed beside it,
	// once the race is decided. It runs on the goroutine that dials.
	Raced func(RaceInfo)

	// Learned is called when a replay's success is remembered for the origin.
	Learned func(MemoryInfo)
	// Remembered is called when a request goes straight over the protocol
	// remembered for its origin, without meeting the 426 first.
	Remembered func(MemoryInfo)
	// Forgot is called when what was remembered no longer holds: the
	// protocol failed before a connection (Err says how) or met a 426.
	Forgot func(MemoryInfo)

	// The Inband hooks report the steps of an in-band TLS upgrade (RFC 2817)
	// of a new connection to an http:// origin. They run on the goroutine
	// that dials, which may outlive the request, and must not retain the
	// header they are given.

	// InbandWroteRequest is called when "OPTIONS * HTTP/1.1" asking for TLS
	// has been written in clear to addr, with its Host and Upgrade values.
	InbandWroteRequest func(addr, host, upgrade string)
	// InbandGotResponse is called with the answer read in clear. Only a 101
	// with no body, naming TLS, and nothing after it goes on.
	InbandGotResponse func(status int, header http.Header)
	// InbandHandshakeDone is called when the TLS handshake on that socket ends.
	InbandHandshakeDone func(tls.ConnectionState, error)
	// InbandGotOptions is called with the status of the response to the
	// OPTIONS, read inside TLS. Only a 2xx lets the connection carry requests.
	InbandGotOptions func(status int)
}

// MemoryInfo is about what is remembered for an origin.
type MemoryInfo struct {
	Origin   string // scheme://host:port
	Protocol Protocol
	Err      error
}

// RaceInfo describes a race of a QUIC handshake against a TCP connection.
type RaceInfo struct {
	Addr   string        // the origin's host:port
	Delay  time.Duration // how long QUIC went alone
	Took   time.Duration // from the QUIC dial's start to the decision
	Winner string        // "QUIC" or "TCP"; empty when neither carries the request
	Err    error         // QUIC's failure, when it did not win
}

// AltSvcInfo describes what an Alt-Svc header taught.
type AltSvcInfo struct {
	Origin   string // scheme://host:port
	Protocol Protocol
	// Alternative is where the protocol is reached, host:port, when it is
	// not the origin's own host and port.
	Alternative string
	MaxAge      time.Duration // how long it is remembered; 0 when Cleared
	Cleared     bool          // "clear": the origin forgot it
}

// Got426Info describes a 426 response.
type Got426Info struct {
	Offered []Protocol  // the Upgrade header, parsed, in the server's order
	Err     error       // a *ParseError when the header is malformed
	Proto   string      // the protocol the 426 came over, such as "HTTP/1.1"
	TLS     uint16      // the TLS version it came over; 0 in clear
	Header  http.Header // the 426's header, for display: the Upgrade header is Offered
}

// HandshakeRefusedInfo describes a refused TLS handshake read as a demand.
type HandshakeRefusedInfo struct {
	Err    error      // Base's error, wrapping a tls.AlertError
	Demand []Protocol // what the alert was read as: TLS/1.3 or HTTP/2
}

// DecisionInfo says what the transport does with a 426.
type DecisionInfo struct {
	Candidates []Protocol // to be tried in this order; empty when Reason is set
	Skipped    []Skipped  // offers left out
	Reason     error      // why nothing will be tried, nil otherwise
}

// Skipped is an offer that will not be tried and why, such as ErrDowngrade.
type Skipped struct {
	Protocol Protocol
	Reason   error
}

// ReplayDoneInfo reports one replay attempt.
type ReplayDoneInfo struct {
	Protocol   Protocol
	Err        error  // nil when a response came back
	StatusCode int    // the response's status; a 426 here is returned as it is
	Proto      string // the response's protocol, such as "HTTP/2.0"
	TLS        uint16 // the response's TLS version; 0 in clear
	// Fallback is set when Err happened before the request left, so the next
	// candidate will be tried.
	Fallback bool
}

type traceKey struct{}

// WithTrace returns a context whose requests report to trace. A trace
// already in ctx goes on being called: each hook set in both runs trace's
// first, as httptrace.WithClientTrace does. A nil trace returns ctx.
func WithTrace(ctx context.Context, trace *Trace) context.Context {
	if trace == nil {
		return ctx
	}
	if old := ContextTrace(ctx); old != nil {
		trace = trace.compose(old)
	}
	if !traced.Load() {
		traced.Store(true) // written once, as every request reads it
	}
	return context.WithValue(ctx, traceKey{}, trace)
}

// traced is set once WithTrace has made a context with a trace: until
// then no context can hold one (traceKey is unexported), and a request
// need not walk its context's chain to learn that it has none.
var traced atomic.Bool

// ContextTrace returns the Trace of ctx, or nil.
func ContextTrace(ctx context.Context) *Trace {
	trace, _ := ctx.Value(traceKey{}).(*Trace)
	return trace
}

// noTrace stands for a request without a trace; it is never written to.
var noTrace = &Trace{}

// traceFrom returns the request's trace, or an empty one so callers need not
// check for nil. Hooks are called as "if trace.Hook != nil { trace.Hook(…) }",
// so that a request without a hook builds no argument for it.
func traceFrom(ctx context.Context) *Trace {
	if !traced.Load() {
		return noTrace
	}
	if trace := ContextTrace(ctx); trace != nil {
		return trace
	}
	return noTrace
}

// compose returns a copy of t whose hooks also call old's, after t's.
func (t *Trace) compose(old *Trace) *Trace {
	composed := *t
	mine := reflect.ValueOf(&composed).Elem()
	theirs := reflect.ValueOf(old).Elem()
	for i := range mine.NumField() {
		hook, oldHook := mine.Field(i), theirs.Field(i)
		if oldHook.IsNil() {
			continue
		}
		if hook.IsNil() {
			hook.Set(oldHook)
			continue
		}
		first := hook.Interface()
		both := reflect.MakeFunc(hook.Type(), func(args []reflect.Value) []reflect.Value {
			reflect.ValueOf(first).Call(args)
			return oldHook.Call(args)
		})
		hook.Set(both)
	}
	return &composed
}
