package upgrade

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"reflect"
	"testing"

	"github.com/h426/upgrade/internal/testserver"
)

// WithTrace keeps a trace already in the context: both are called, the
// newer first, as httptrace.WithClientTrace does; hooks set on only one
// side are called once.
func TestWithTraceComposes(t *testing.T) {
	var calls []string
	outer := &Trace{
		Got426:             func(Got426Info) { calls = append(calls, "outer Got426") },
		ReplayStart:        func(Protocol) { calls = append(calls, "outer ReplayStart") },
		InbandWroteRequest: func(addr, host, upgrade string) { calls = append(calls, "outer InbandWroteRequest "+upgrade) },
	}
	inner := &Trace{
		Got426:              func(Got426Info) { calls = append(calls, "inner Got426") },
		Decided:             func(DecisionInfo) { calls = append(calls, "inner Decided") },
		InbandHandshakeDone: func(tls.ConnectionState, error) { calls = append(calls, "inner InbandHandshakeDone") },
	}
	ctx := WithTrace(WithTrace(context.Background(), outer), inner)
	trace := ContextTrace(ctx)
	trace.Got426(Got426Info{})
	trace.Decided(DecisionInfo{})
	trace.ReplayStart(Protocol{Name: "h2"})
	trace.InbandWroteRequest("a", "h", "TLS/1.2")
	trace.InbandHandshakeDone(tls.ConnectionState{}, nil)
	if trace.Learned != nil {
		t.Error("a hook set on neither side is set")
	}
	want := "[inner Got426 outer Got426 inner Decided outer ReplayStart outer InbandWroteRequest TLS/1.2 inner InbandHandshakeDone]"
	if got := fmt.Sprint(calls); got != want {
		t.Errorf("called %s\nwant   %s", got, want)
	}
	if ContextTrace(context.Background()) != nil {
		t.Error("ContextTrace of a bare context is not nil")
	}
	if got := WithTrace(ctx, nil); got != ctx {
		t.Error("WithTrace(ctx, nil) changed the context")
	}
	// Neither trace was changed by composing them.
	if outer.Decided != nil || inner.ReplayStart != nil {
		t.Error("composing wrote to a caller's Trace")
	}
}

// Every hook of Trace is a func, so compose covers it.
func TestTraceFieldsAreHooks(t *testing.T) {
	typ := reflect.TypeFor[Trace]()
	for i := range typ.NumField() {
		if f := typ.Field(i); f.Type.Kind() != reflect.Func {
			t.Errorf("Trace.%s is a %s, not a hook", f.Name, f.Type)
		}
	}
}

// Two traces on one request both see a real upgrade.
func TestWithTraceComposedOnARequest(t *testing.T) {
	forEachPair(t, func(t *testing.T, p upgradePair) {
		s := startServer(t, p.server)
		tr := newTransport(t, legacyBase(t, s.CertPool()))
		var mine, theirs int
		ctx := WithTrace(testContext(t), &Trace{ReplayDone: func(ReplayDoneInfo) { theirs++ }})
		ctx = WithTrace(ctx, &Trace{ReplayDone: func(ReplayDoneInfo) { mine++ }})
		resp, err := tr.RoundTrip(newRequest(t, ctx, "GET", s.URL, nil))
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
		if resp.StatusCode != http.StatusOK || resp.Proto != p.wantProto || mine != 1 || theirs != 1 {
			t.Errorf("%d over %s; hooks called %d and %d times, want 200 over %s, 1 and 1", resp.StatusCode, resp.Proto, mine, theirs, p.wantProto)
		}
	})
}

// Got426 carries the 426's header, so a tool can show it as it came.
func TestGot426Header(t *testing.T) {
	s := startServer(t, testserver.Config{TLS: true, Require: testserver.RequireHTTP2, Upgrade: []string{"HTTP/2"}})
	tr := newTransport(t, legacyBase(t, s.CertPool()))
	var got http.Header
	ctx := WithTrace(testContext(t), &Trace{Got426: func(info Got426Info) { got = info.Header.Clone() }})
	resp, err := tr.RoundTrip(newRequest(t, ctx, "GET", s.URL, nil))
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	if got.Get("Upgrade") != "HTTP/2" || got.Get("Connection") != "Upgrade" {
		t.Errorf("Got426 saw header %v, want Upgrade: HTTP/2 and Connection: Upgrade", got)
	}
}
