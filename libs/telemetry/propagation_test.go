package telemetry_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/baggage"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/cosmic-horizons/fleet/libs/telemetry"
)

func TestInjectExtractRoundTrip(t *testing.T) {
	t.Parallel()
	tp := sdktrace.NewTracerProvider()
	t.Cleanup(func() { require.NoError(t, tp.Shutdown(context.Background())) })
	spanCtx, span := tp.Tracer("test").Start(context.Background(), "produce")
	defer span.End()
	member, err := baggage.NewMember("tenant", "tacc")
	require.NoError(t, err)
	bag, err := baggage.New(member)
	require.NoError(t, err)

	tests := []struct {
		name            string
		ctx             context.Context
		wantTraceparent bool
		wantCorrelation string
	}{
		{name: "span and correlation", ctx: telemetry.WithCorrelationID(spanCtx, "corr-42"), wantTraceparent: true, wantCorrelation: "corr-42"},
		{name: "span only", ctx: spanCtx, wantTraceparent: true},
		{name: "correlation only", ctx: telemetry.WithCorrelationID(context.Background(), "corr-7"), wantCorrelation: "corr-7"},
		{name: "nothing", ctx: context.Background()},
		{name: "baggage travels", ctx: baggage.ContextWithBaggage(spanCtx, bag), wantTraceparent: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			headers := map[string]string{"event_type": "job.submitted"}
			telemetry.Inject(tt.ctx, headers)
			require.Equal(t, "job.submitted", headers["event_type"])

			_, hasTP := headers[telemetry.HeaderTraceparent]
			require.Equal(t, tt.wantTraceparent, hasTP)
			if tt.wantCorrelation == "" {
				require.NotContains(t, headers, telemetry.HeaderCorrelationID)
			} else {
				require.Equal(t, tt.wantCorrelation, headers[telemetry.HeaderCorrelationID])
			}

			got := telemetry.Extract(context.Background(), headers)
			want := trace.SpanContextFromContext(tt.ctx)
			gotSC := trace.SpanContextFromContext(got)
			require.Equal(t, want.IsValid(), gotSC.IsValid())
			if want.IsValid() {
				require.Equal(t, want.TraceID(), gotSC.TraceID())
				require.Equal(t, want.SpanID(), gotSC.SpanID())
				require.Equal(t, want.TraceFlags(), gotSC.TraceFlags())
				require.True(t, gotSC.IsRemote())
			}
			require.Equal(t, tt.wantCorrelation, telemetry.CorrelationID(got))
			require.Equal(t, baggage.FromContext(tt.ctx).Member("tenant").Value(),
				baggage.FromContext(got).Member("tenant").Value())
		})
	}
}

func TestExtractIsCaseInsensitive(t *testing.T) {
	t.Parallel()
	headers := map[string]string{
		"Traceparent":    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"Correlation_ID": "corr-upper",
	}
	ctx := telemetry.Extract(context.Background(), headers)
	sc := trace.SpanContextFromContext(ctx)
	require.True(t, sc.IsValid())
	require.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", sc.TraceID().String())
	require.Equal(t, "corr-upper", telemetry.CorrelationID(ctx))
}

func TestExtractIgnoresMalformedTraceparent(t *testing.T) {
	t.Parallel()
	ctx := telemetry.Extract(context.Background(), map[string]string{telemetry.HeaderTraceparent: "not-a-traceparent"})
	require.False(t, trace.SpanContextFromContext(ctx).IsValid())
	require.Empty(t, telemetry.CorrelationID(ctx))
}

func TestInjectNilHeadersDoesNotPanic(t *testing.T) {
	t.Parallel()
	require.NotPanics(t, func() {
		telemetry.Inject(telemetry.WithCorrelationID(context.Background(), "x"), nil)
	})
}

func TestHeaderCarrierKeys(t *testing.T) {
	t.Parallel()
	c := telemetry.HeaderCarrier{}
	c.Set("a", "1")
	c.Set("b", "2")
	require.ElementsMatch(t, []string{"a", "b"}, c.Keys())
	require.Equal(t, "1", c.Get("A"))
	require.Empty(t, c.Get("missing"))
}
