package upgrade

import (
	"context"
	"log/slog"
)

// SlogTrace returns a Trace that logs each step of an upgrade to logger,
// for programs that want upgrades in their logs without writing hooks:
//
//	ctx = upgrade.WithTrace(ctx, upgrade.SlogTrace(slog.Default()))
//
// A 426 or a refused handshake, the decision, each replay, an Alt-Svc, a
// race of QUIC against TCP and what the origin memory learned or forgot
// are logged at Info; a request sent
// straight over a remembered protocol, the common case, at Debug. Records
// carry the protocols and origins as attributes; messages start with
// "upgrade:". WithTrace composes it with any other trace on the context.
func SlogTrace(logger *slog.Logger) *Trace {
	info := func(msg string, attrs ...slog.Attr) {
		logger.LogAttrs(context.Background(), slog.LevelInfo, msg, attrs...)
	}
	return &Trace{
		Got426: func(i Got426Info) {
			attrs := []slog.Attr{slog.String("offered", protocolNames(i.Offered)), slog.String("proto", i.Proto)}
			if i.Err != nil {
				attrs = append(attrs, slog.Any("err", i.Err))
			}
			info("upgrade: 426 Upgrade Required", attrs...)
		},
		HandshakeRefused: func(i HandshakeRefusedInfo) {
			info("upgrade: TLS handshake refused", slog.Any("err", i.Err), slog.String("read_as", protocolNames(i.Demand)))
		},
		Decided: func(i DecisionInfo) {
			attrs := []slog.Attr{slog.String("candidates", protocolNames(i.Candidates))}
			for _, s := range i.Skipped {
				attrs = append(attrs, slog.String("skipped", s.Protocol.String()+": "+s.Reason.Error()))
			}
			if i.Reason != nil {
				attrs = append(attrs, slog.Any("reason", i.Reason))
			}
			info("upgrade: decided", attrs...)
		},
		ReplayStart: func(p Protocol) {
			info("upgrade: replaying", slog.String("protocol", p.String()))
		},
		ReplayDone: func(i ReplayDoneInfo) {
			attrs := []slog.Attr{slog.String("protocol", i.Protocol.String())}
			if i.Err != nil {
				attrs = append(attrs, slog.Any("err", i.Err), slog.Bool("fallback", i.Fallback))
			} else {
				attrs = append(attrs, slog.Int("status", i.StatusCode), slog.String("proto", i.Proto))
			}
			info("upgrade: replay done", attrs...)
		},
		AltSvc: func(i AltSvcInfo) {
			attrs := []slog.Attr{slog.String("origin", i.Origin), slog.String("protocol", i.Protocol.String())}
			switch {
			case i.Cleared:
				attrs = append(attrs, slog.Bool("cleared", true))
			case i.Alternative != "":
				attrs = append(attrs, slog.String("alternative", i.Alternative), slog.Duration("max_age", i.MaxAge))
			default:
				attrs = append(attrs, slog.Duration("max_age", i.MaxAge))
			}
			info("upgrade: Alt-Svc", attrs...)
		},
		Raced: func(i RaceInfo) {
			attrs := []slog.Attr{slog.String("addr", i.Addr), slog.String("winner", i.Winner), slog.Duration("took", i.Took)}
			if i.Err != nil {
				attrs = append(attrs, slog.Any("err", i.Err))
			}
			info("upgrade: QUIC raced TCP", attrs...)
		},
		Learned: func(i MemoryInfo) {
			info("upgrade: learned", slog.String("origin", i.Origin), slog.String("protocol", i.Protocol.String()))
		},
		Remembered: func(i MemoryInfo) {
			logger.LogAttrs(context.Background(), slog.LevelDebug, "upgrade: remembered",
				slog.String("origin", i.Origin), slog.String("protocol", i.Protocol.String()))
		},
		Forgot: func(i MemoryInfo) {
			attrs := []slog.Attr{slog.String("origin", i.Origin), slog.String("protocol", i.Protocol.String())}
			if i.Err != nil {
				attrs = append(attrs, slog.Any("err", i.Err))
			}
			info("upgrade: forgot", attrs...)
		},
	}
}

// protocolNames is protocols as an Upgrade header lists them.
func protocolNames(protocols []Protocol) string {
	var names string
	for i, p := range protocols {
		if i > 0 {
			names += ", "
		}
		names += p.String()
	}
	return names
}
