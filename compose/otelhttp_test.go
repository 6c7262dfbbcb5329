package compose_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/h426/upgrade"
	"github.com/h426/upgrade/compose/upgradeotel"
	"github.com/h426/upgrade/internal/testserver"
	"github.com/h426/upgrade/upgradetest"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// otelhttp outside, upgrade.Transport inside: one client span per request
// the caller makes, whatever the upgrade did underneath; the span's context
// reaches the server on the refused request and on its replay alike; and
// upgrade.Trace hooks turned into span events show the upgrade on the
// request that met the 426 and the remembered protocol on the others.
func TestOtelhttpOutsideUpgrade(t *testing.T) {
	s := startServer(t, strictH2)
	recorder := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder))
	t.Cleanup(func() { tp.Shutdown(context.Background()) })

	up := &upgrade.Transport{Base: legacyBase(s)}
	t.Cleanup(func() { up.Close() })
	client := &http.Client{Transport: otelhttp.NewTransport(
		upgradeotel.NewTransport(up),
		otelhttp.WithTracerProvider(tp),
		otelhttp.WithPropagators(propagation.TraceContext{}),
	)}

	for i := range 3 {
		resp, err := client.Get(s.URL + "/r")
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if got := readAll(t, resp); resp.StatusCode != 200 || resp.Proto != "HTTP/2.0" || got != "ok\n" {
			t.Errorf("request %d: %d over %s, body %q; want 200 over HTTP/2.0", i, resp.StatusCode, resp.Proto, got)
		}
	}

	spans := recorder.Ended()
	if len(spans) != 3 || len(recorder.Started()) != 3 {
		t.Fatalf("%d spans started, %d ended; want one per request: 3 and 3", len(recorder.Started()), len(spans))
	}
	wantEvents := [][]string{
		{"upgrade.426", "upgrade.decided", "upgrade.replay", "upgrade.learned", "upgrade.replay_done"},
		{"upgrade.remembered"},
		{"upgrade.remembered"},
	}
	for i, span := range spans {
		attrs := attributes(span)
		if span.SpanKind() != trace.SpanKindClient || span.Name() != "HTTP GET" {
			t.Errorf("span %d: %s %q, want a client span \"HTTP GET\"", i, span.SpanKind(), span.Name())
		}
		if got := attrs["http.response.status_code"]; got != attribute.IntValue(200) {
			t.Errorf("span %d: http.response.status_code %v, want 200", i, got.String())
		}
		if got := attrs["network.protocol.version"]; got != attribute.StringValue("2.0") {
			t.Errorf("span %d: network.protocol.version %q, want %q (the response the caller got)", i, got.String(), "2.0")
		}
		if got := eventNames(span); !slices.Equal(got, wantEvents[i]) {
			t.Errorf("span %d: events %v, want %v", i, got, wantEvents[i])
		}
	}
	if ev := spans[0].Events(); len(ev) == 5 {
		got426, done := eventAttributes(ev[0]), eventAttributes(ev[4])
		if got426["upgrade.offered"] != attribute.StringValue("HTTP/2") || got426["upgrade.proto"] != attribute.StringValue("HTTP/1.1") {
			t.Errorf("upgrade.426 event: %v", ev[0].Attributes)
		}
		if done["upgrade.proto"] != attribute.StringValue("HTTP/2.0") || done["upgrade.status_code"] != attribute.IntValue(200) {
			t.Errorf("upgrade.replay_done event: %v", ev[4].Attributes)
		}
	}

	// The server saw each span's context: the 426 and its replay carry the
	// first span's, each remembered request its own.
	seen := s.Requests()
	if len(seen) != 4 || s.Refused() != 1 {
		t.Fatalf("server saw %d requests, %d refused; want 4, 1", len(seen), s.Refused())
	}
	owner := []int{0, 0, 1, 2} // the span each server request belongs to
	for i, r := range seen {
		sc := spans[owner[i]].SpanContext()
		want := fmt.Sprintf("00-%s-%s-01", sc.TraceID(), sc.SpanID())
		if got := r.Header.Get("Traceparent"); got != want {
			t.Errorf("server request %d (%s): traceparent %q, want span %d's %q", i, r.Proto, got, owner[i], want)
		}
	}
}

func attributes(span sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	m := make(map[attribute.Key]attribute.Value)
	for _, kv := range span.Attributes() {
		m[kv.Key] = kv.Value
	}
	return m
}

func eventAttributes(ev sdktrace.Event) map[attribute.Key]attribute.Value {
	m := make(map[attribute.Key]attribute.Value)
	for _, kv := range ev.Attributes {
		m[kv.Key] = kv.Value
	}
	return m
}

func eventNames(span sdktrace.ReadOnlySpan) []string {
	var names []string
	for _, ev := range span.Events() {
		names = append(names, ev.Name)
	}
	return names
}

// An Alt-Svc learned on one request is an event of its span; the next
// request goes over HTTP/3 and says it was remembered.
func TestOtelhttpAltSvcEvent(t *testing.T) {
	srv := upgradetest.NewAltSvcServer(nil)
	t.Cleanup(srv.Close)
	recorder := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder))
	t.Cleanup(func() { tp.Shutdown(context.Background()) })
	up := &upgrade.Transport{Base: srv.Client().Transport}
	t.Cleanup(func() { up.Close() })
	client := &http.Client{Transport: otelhttp.NewTransport(upgradeotel.NewTransport(up), otelhttp.WithTracerProvider(tp))}

	var protos []string
	for range 2 {
		resp, err := client.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
		protos = append(protos, resp.Proto)
	}
	spans := recorder.Ended()
	if len(spans) != 2 || !slices.Equal(protos, []string{"HTTP/1.1", "HTTP/3.0"}) {
		t.Fatalf("%d spans, requests over %v; want 2, HTTP/1.1 then HTTP/3.0", len(spans), protos)
	}
	if got := eventNames(spans[0]); !slices.Equal(got, []string{"upgrade.alt_svc"}) {
		t.Fatalf("first span's events %v, want the Alt-Svc", got)
	}
	if attrs := eventAttributes(spans[0].Events()[0]); attrs["upgrade.protocol"] != attribute.StringValue("h3") ||
		attrs["upgrade.max_age_seconds"] != attribute.Int64Value(2592000) {
		t.Errorf("upgrade.alt_svc event: %v", spans[0].Events()[0].Attributes)
	}
	if got := eventNames(spans[1]); !slices.Equal(got, []string{"upgrade.remembered"}) {
		t.Errorf("second span's events %v, want the remembered route", got)
	}
}

// Where nothing answers QUIC, the race that TCP wins is an event of the
// span, with the QUIC error.
func TestOtelhttpRaceEvent(t *testing.T) {
	s := startServer(t, testserver.Config{TLS: true, DropUDP: true, Upgrade: []string{"HTTP/3, HTTP/2"}, Require: testserver.RequireHTTP2})
	recorder := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder))
	t.Cleanup(func() { tp.Shutdown(context.Background()) })
	up := &upgrade.Transport{Base: legacyBase(s), HTTP3FallbackDelay: 50 * time.Millisecond}
	t.Cleanup(func() { up.Close() })
	client := &http.Client{Transport: otelhttp.NewTransport(upgradeotel.NewTransport(up), otelhttp.WithTracerProvider(tp))}

	resp, err := client.Get(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	if readAll(t, resp); resp.Proto != "HTTP/2.0" {
		t.Fatalf("response over %s, want HTTP/2.0", resp.Proto)
	}
	spans := recorder.Ended()
	if len(spans) != 1 {
		t.Fatalf("%d spans, want 1", len(spans))
	}
	for _, ev := range spans[0].Events() {
		if ev.Name == "upgrade.race" {
			if attrs := eventAttributes(ev); attrs["upgrade.winner"] != attribute.StringValue("TCP") || attrs["upgrade.error"].AsString() == "" {
				t.Errorf("upgrade.race event: %v", ev.Attributes)
			}
			return
		}
	}
	t.Errorf("events %v lack upgrade.race", eventNames(spans[0]))
}
