package bus_test

import (
	"context"
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/cosmic-horizons/fleet/libs/bus"
)

func TestDeadLetter(t *testing.T) {
	t.Parallel()
	bad := bus.Permanent(errors.New("does not decode"))
	tests := []struct {
		name         string
		handlerErr   error
		publishErr   error
		cancelled    bool
		wantSettled  bool
		wantPublish  int
		wantDeadLtrd bool
	}{
		{name: "handled: nothing published", wantSettled: true},
		{name: "failed: published and settled", handlerErr: bad, wantPublish: 1, wantSettled: true, wantDeadLtrd: true},
		{name: "publish fails: unsettled", handlerErr: bad, publishErr: errors.New("kafka down"), wantPublish: 1},
		{name: "context ended: unsettled, nothing published", handlerErr: bad, cancelled: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.cancelled {
				cancel()
			}
			published := 0
			h := bus.DeadLetter(func(_ context.Context, msg *bus.Message, cause error) error {
				published++
				require.ErrorIs(t, cause, tt.handlerErr)
				return tt.publishErr
			})(func(context.Context, *bus.Message) error { return tt.handlerErr })
			err := h(ctx, &bus.Message{Topic: "t"})
			require.Equal(t, tt.wantSettled, bus.Settled(err))
			require.Equal(t, tt.wantDeadLtrd, bus.IsDeadLettered(err))
			require.Equal(t, tt.wantPublish, published)
			if tt.handlerErr != nil {
				require.ErrorIs(t, err, tt.handlerErr)
			}
		})
	}
}

func TestOutcomesDurationAndTracing(t *testing.T) {
	t.Parallel()
	consumed := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "consumed"}, []string{"topic", "outcome"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "duration"}, []string{"topic"})
	spans := tracetest.NewSpanRecorder()
	tracer := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans)).Tracer("test")
	topic := func(m *bus.Message) string { return m.Topic }
	results := map[string]error{"a": nil, "b": bus.DeadLettered(errors.New("poison")), "c": errors.New("session ended")}
	h := bus.Chain(func(_ context.Context, m *bus.Message) error { return results[m.Key] },
		bus.Tracing(tracer, func(m *bus.Message) string { return "process " + m.Topic }, func(*bus.Message) []attribute.KeyValue { return nil }),
		bus.Outcomes(consumed, topic, bus.OutcomeLabels{OK: "ok", DeadLettered: "dlq", Failed: "error"}),
		bus.Duration(duration, topic),
	)
	for _, key := range []string{"a", "b", "c", "a"} {
		_ = h(context.Background(), &bus.Message{Topic: "t", Key: key, Headers: map[string]string{
			"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}})
	}
	require.Equal(t, 2.0, testutil.ToFloat64(consumed.WithLabelValues("t", "ok")))
	require.Equal(t, 1.0, testutil.ToFloat64(consumed.WithLabelValues("t", "dlq")))
	require.Equal(t, 1.0, testutil.ToFloat64(consumed.WithLabelValues("t", "error")))
	require.Equal(t, 1, testutil.CollectAndCount(duration))
	ended := spans.Ended()
	require.Len(t, ended, 4)
	for i, want := range []codes.Code{codes.Unset, codes.Error, codes.Error, codes.Unset} {
		require.Equal(t, "process t", ended[i].Name())
		require.Equal(t, want, ended[i].Status().Code, "span %d", i)
		require.Equal(t, "0af7651916cd43dd8448eb211c80319c", ended[i].SpanContext().TraceID().String(), "child of the message's trace")
	}
}
