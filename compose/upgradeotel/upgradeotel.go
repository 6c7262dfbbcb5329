// Package upgradeotel records what an upgrade.Transport did as events of
// the OpenTelemetry span in the request's context: the 426 or refused
// handshake and what it offered, the decision, each replay and its
// outcome, an Alt-Svc advertisement, a race of QUIC against TCP, and what
// the origin memory learned, used or forgot. Put it
// between otelhttp (outside, which starts the span) and the
// upgrade.Transport:
//
//	up := &upgrade.Transport{Base: base}
//	client := &http.Client{Transport: otelhttp.NewTransport(upgradeotel.NewTransport(up))}
//
// It lives in the compose module so that the upgrade module does not
// depend on OpenTelemetry.
package upgradeotel

import (
	"net/http"
	"strings"

	"github.com/h426/upgrade"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// NewTransport returns a RoundTripper that sends each request through next
// with a Trace recording into the request's span, when that span records.
func NewTransport(next http.RoundTripper) http.RoundTripper {
	return transport{next}
}

type transport struct{ next http.RoundTripper }

func (t transport) RoundTrip(req *http.Request) (*http.Response, error) {
	span := trace.SpanFromContext(req.Context())
	if !span.IsRecording() {
		return t.next.RoundTrip(req)
	}
	return t.next.RoundTrip(req.WithContext(upgrade.WithTrace(req.Context(), Trace(span))))
}

// CloseIdleConnections reaches the wrapped transport, as http.Client
// expects of a transport.
func (t transport) CloseIdleConnections() {
	if c, ok := t.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// Trace returns hooks that add events to span. Event names start with
// "upgrade."; attributes with "upgrade.".
func Trace(span trace.Span) *upgrade.Trace {
	event := func(name string, attrs ...attribute.KeyValue) {
		span.AddEvent(name, trace.WithAttributes(attrs...))
	}
	withErr := func(attrs []attribute.KeyValue, err error) []attribute.KeyValue {
		if err != nil {
			attrs = append(attrs, attribute.String("upgrade.error", err.Error()))
		}
		return attrs
	}
	memory := func(name string) func(upgrade.MemoryInfo) {
		return func(info upgrade.MemoryInfo) {
			event(name, withErr([]attribute.KeyValue{
				attribute.String("upgrade.origin", info.Origin),
				attribute.String("upgrade.protocol", info.Protocol.String()),
			}, info.Err)...)
		}
	}
	return &upgrade.Trace{
		Got426: func(info upgrade.Got426Info) {
			event("upgrade.426", withErr([]attribute.KeyValue{
				attribute.String("upgrade.offered", names(info.Offered)),
				attribute.String("upgrade.proto", info.Proto),
			}, info.Err)...)
		},
		HandshakeRefused: func(info upgrade.HandshakeRefusedInfo) {
			event("upgrade.handshake_refused", withErr([]attribute.KeyValue{
				attribute.String("upgrade.read_as", names(info.Demand)),
			}, info.Err)...)
		},
		Decided: func(info upgrade.DecisionInfo) {
			event("upgrade.decided", withErr([]attribute.KeyValue{
				attribute.String("upgrade.candidates", names(info.Candidates)),
			}, info.Reason)...)
		},
		ReplayStart: func(p upgrade.Protocol) {
			event("upgrade.replay", attribute.String("upgrade.protocol", p.String()))
		},
		ReplayDone: func(info upgrade.ReplayDoneInfo) {
			attrs := []attribute.KeyValue{attribute.String("upgrade.protocol", info.Protocol.String())}
			if info.Err == nil {
				attrs = append(attrs, attribute.String("upgrade.proto", info.Proto), attribute.Int("upgrade.status_code", info.StatusCode))
			} else {
				attrs = append(withErr(attrs, info.Err), attribute.Bool("upgrade.fallback", info.Fallback))
			}
			event("upgrade.replay_done", attrs...)
		},
		AltSvc: func(info upgrade.AltSvcInfo) {
			event("upgrade.alt_svc",
				attribute.String("upgrade.origin", info.Origin),
				attribute.String("upgrade.protocol", info.Protocol.String()),
				attribute.String("upgrade.alternative", info.Alternative),
				attribute.Int64("upgrade.max_age_seconds", int64(info.MaxAge.Seconds())),
				attribute.Bool("upgrade.cleared", info.Cleared))
		},
		Raced: func(info upgrade.RaceInfo) {
			event("upgrade.race", withErr([]attribute.KeyValue{
				attribute.String("upgrade.addr", info.Addr),
				attribute.String("upgrade.winner", info.Winner),
				attribute.Int64("upgrade.took_ms", info.Took.Milliseconds()),
			}, info.Err)...)
		},
		Learned:    memory("upgrade.learned"),
		Remembered: memory("upgrade.remembered"),
		Forgot:     memory("upgrade.forgot"),
	}
}

func names(protocols []upgrade.Protocol) string {
	s := make([]string, len(protocols))
	for i, p := range protocols {
		s[i] = p.String()
	}
	return strings.Join(s, ", ")
}
