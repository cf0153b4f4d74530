package telemetry

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"go.opentelemetry.io/otel/trace"
)

// Log attribute keys added to every record whose context carries them.
const (
	LogKeyTraceID       = "trace_id"
	LogKeySpanID        = "span_id"
	LogKeyCorrelationID = "correlation_id"
	LogKeyService       = "service"
)

// NewLogger returns a JSON logger writing to w at level and above. Every
// record carries the service name, and records logged with a context (the
// ...Context methods) carry trace_id and span_id of the span in that context
// and its correlation_id, when present.
func NewLogger(w io.Writer, level slog.Level, service string) *slog.Logger {
	h := slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level})
	return slog.New(NewContextHandler(h)).With(slog.String(LogKeyService, service))
}

// ContextHandler wraps a slog.Handler and adds trace and correlation ids
// from the record's context. Under a WithGroup the ids are nested in that
// group like any other attribute of the record.
type ContextHandler struct {
	next slog.Handler
}

// NewContextHandler wraps next so that records carry ids from their context.
func NewContextHandler(next slog.Handler) *ContextHandler {
	return &ContextHandler{next: next}
}

// Enabled reports whether next handles records at level.
func (h *ContextHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.next.Enabled(ctx, level)
}

// Handle adds the ids found in ctx to r and passes it on.
func (h *ContextHandler) Handle(ctx context.Context, r slog.Record) error {
	if ctx != nil {
		if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
			r.AddAttrs(
				slog.String(LogKeyTraceID, sc.TraceID().String()),
				slog.String(LogKeySpanID, sc.SpanID().String()),
			)
		}
		if id := CorrelationID(ctx); id != "" {
			r.AddAttrs(slog.String(LogKeyCorrelationID, id))
		}
	}
	return h.next.Handle(ctx, r)
}

// WithAttrs returns a handler whose records carry attrs.
func (h *ContextHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &ContextHandler{next: h.next.WithAttrs(attrs)}
}

// WithGroup returns a handler that nests later attributes under name.
func (h *ContextHandler) WithGroup(name string) slog.Handler {
	return &ContextHandler{next: h.next.WithGroup(name)}
}

// ParseLevel parses a LOG_LEVEL value: debug, info, warn (or warning) and
// error in any case, slog's offset forms such as "info+2", or "" for info.
func ParseLevel(s string) (slog.Level, error) {
	s = strings.TrimSpace(s)
	switch strings.ToLower(s) {
	case "":
		return slog.LevelInfo, nil
	case "warning":
		return slog.LevelWarn, nil
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("parse log level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

// Secret is a string that never appears in logs or formatted output: its
// slog value and its String form are a fixed placeholder. Convert it back
// with string(s) where the value itself is needed.
type Secret string

// Redacted is what a Secret shows instead of its value.
const Redacted = "[REDACTED]"

// LogValue implements slog.LogValuer.
func (s Secret) LogValue() slog.Value {
	return slog.StringValue(s.String())
}

// String implements fmt.Stringer without revealing the value.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return Redacted
}

// GoString implements fmt.GoStringer without revealing the value.
func (s Secret) GoString() string {
	return fmt.Sprintf("telemetry.Secret(%q)", s.String())
}

// MarshalText implements encoding.TextMarshaler without revealing the value,
// so a Secret inside a JSON-encoded struct stays hidden.
func (s Secret) MarshalText() ([]byte, error) {
	return []byte(s.String()), nil
}
