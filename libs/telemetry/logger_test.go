package telemetry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/cosmic-horizons/fleet/libs/telemetry"
)

func decodeLines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	dec := json.NewDecoder(buf)
	for dec.More() {
		var m map[string]any
		require.NoError(t, dec.Decode(&m))
		out = append(out, m)
	}
	return out
}

func TestLoggerAddsContextIDs(t *testing.T) {
	t.Parallel()
	tp := sdktrace.NewTracerProvider()
	t.Cleanup(func() { require.NoError(t, tp.Shutdown(context.Background())) })
	spanCtx, span := tp.Tracer("test").Start(context.Background(), "op")
	defer span.End()
	sc := span.SpanContext()

	tests := []struct {
		name          string
		ctx           context.Context
		wantTrace     string
		wantSpan      string
		wantCorrelate string
	}{
		{name: "no ids", ctx: context.Background()},
		{name: "correlation only", ctx: telemetry.WithCorrelationID(context.Background(), "corr-1"), wantCorrelate: "corr-1"},
		{name: "span only", ctx: spanCtx, wantTrace: sc.TraceID().String(), wantSpan: sc.SpanID().String()},
		{
			name:          "span and correlation",
			ctx:           telemetry.WithCorrelationID(spanCtx, "corr-2"),
			wantTrace:     sc.TraceID().String(),
			wantSpan:      sc.SpanID().String(),
			wantCorrelate: "corr-2",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			logger := telemetry.NewLogger(&buf, slog.LevelInfo, "svc-a")
			logger.With("k", "v").InfoContext(tt.ctx, "hello", "n", 1)
			logger.DebugContext(tt.ctx, "below level")

			lines := decodeLines(t, &buf)
			require.Len(t, lines, 1)
			rec := lines[0]
			require.Equal(t, "hello", rec["msg"])
			require.Equal(t, "svc-a", rec["service"])
			require.Equal(t, "v", rec["k"])
			for key, want := range map[string]string{
				"trace_id":       tt.wantTrace,
				"span_id":        tt.wantSpan,
				"correlation_id": tt.wantCorrelate,
			} {
				if want == "" {
					require.NotContains(t, rec, key)
					continue
				}
				require.Equal(t, want, rec[key], key)
			}
		})
	}
}

func TestLoggerGroupKeepsContextIDs(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	logger := telemetry.NewLogger(&buf, slog.LevelDebug, "svc-b").WithGroup("req")
	logger.DebugContext(telemetry.WithCorrelationID(context.Background(), "c-9"), "grouped", "id", 7)
	lines := decodeLines(t, &buf)
	require.Len(t, lines, 1)
	group, ok := lines[0]["req"].(map[string]any)
	require.True(t, ok, "record: %v", lines[0])
	require.Equal(t, "c-9", group["correlation_id"])
	require.EqualValues(t, 7, group["id"])
}

func TestParseLevel(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    slog.Level
		wantErr bool
	}{
		{name: "empty is info", in: "", want: slog.LevelInfo},
		{name: "debug", in: "debug", want: slog.LevelDebug},
		{name: "upper case", in: "ERROR", want: slog.LevelError},
		{name: "warning alias", in: "Warning", want: slog.LevelWarn},
		{name: "offset", in: "info+2", want: slog.LevelInfo + 2},
		{name: "spaces", in: " warn ", want: slog.LevelWarn},
		{name: "garbage", in: "loud", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := telemetry.ParseLevel(tt.in)
			if tt.wantErr {
				require.Error(t, err)
				require.Contains(t, err.Error(), tt.in)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestSecretIsRedacted(t *testing.T) {
	t.Parallel()
	const raw = "hunter2-very-secret"
	s := telemetry.Secret(raw)

	var buf bytes.Buffer
	logger := telemetry.NewLogger(&buf, slog.LevelInfo, "svc")
	logger.Info("config", "password", s, "cfg", struct{ Token telemetry.Secret }{Token: s})
	require.NotContains(t, buf.String(), raw)
	require.Contains(t, buf.String(), telemetry.Redacted)

	for _, formatted := range []string{fmt.Sprint(s), fmt.Sprintf("%v %s %+v %#v", s, s, s, s)} {
		require.NotContains(t, formatted, raw)
	}
	require.Equal(t, raw, string(s))
	require.Empty(t, telemetry.Secret("").String())
}
