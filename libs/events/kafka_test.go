package events_test

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/kafkabus"
	"github.com/cosmic-horizons/fleet/libs/telemetry"
	"github.com/cosmic-horizons/fleet/libs/testinfra"
)

// TestEveryEventTypeRoundTripsThroughKafka publishes one event of every type
// to its catalogue topic on the real broker and reads it back through a
// consumer group: the decoded event equals the published one, and the
// headers carry the event id, type, correlation id and trace context.
func TestEveryEventTypeRoundTripsThroughKafka(t *testing.T) {
	conn := kafkabus.Connection{Brokers: testinfra.KafkaBrokers(t), ClientID: "events-test"}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))

	specs, err := events.Catalogue(events.DefaultCatalogueConfig())
	require.NoError(t, err)
	_, err = kafkabus.EnsureTopics(ctx, conn.Brokers, specs, logger)
	require.NoError(t, err)

	codec := newCodec(t, events.CodecConfig{})
	producer, err := kafkabus.NewProducer(kafkabus.ProducerConfig{Connection: conn, Schemas: codec}, logger, prometheus.NewRegistry())
	require.NoError(t, err)
	defer producer.Close()

	sent := map[string]events.Event{}
	for _, p := range samplePayloads() {
		ev := sampleEvent(t, p)
		sent[ev.EventID] = ev
	}

	var (
		mu       sync.Mutex
		received = map[string]*bus.Message{}
		decoded  = map[string]events.Event{}
	)
	topics := []string{events.TopicJobLifecycle, events.TopicJobMetrics, events.TopicNotifications, events.TopicAuditTrail, events.TopicSystemHealth}
	cfg := kafkabus.DefaultConsumerConfig(conn, "events-test-"+strconv.FormatInt(time.Now().UnixNano(), 36), topics...)
	cfg.DLQ = producer
	cfg.InitialOffset = kafkabus.OffsetNewest
	consumer, err := kafkabus.NewConsumer(cfg, func(_ context.Context, m *bus.Message) error {
		id := m.Header(events.HeaderEventID)
		if _, ours := sent[id]; !ours {
			return nil // another test's event on the shared topic
		}
		ev, err := codec.FromMessage(m)
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		received[id], decoded[id] = m, ev
		return nil
	}, logger, prometheus.NewRegistry())
	require.NoError(t, err)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- consumer.Run(runCtx) }()
	defer func() { stop(); require.NoError(t, <-done) }()
	require.Eventually(t, consumer.Ready, 30*time.Second, 20*time.Millisecond, "consumer group never got its partitions")

	tp := sdktrace.NewTracerProvider()
	defer func() { _ = tp.Shutdown(context.Background()) }()
	pubCtx, span := tp.Tracer("events-test").Start(telemetry.WithCorrelationID(ctx, "corr-1"), "publish all")
	traceID := span.SpanContext().TraceID().String()
	for _, ev := range sent {
		msg, err := codec.Message(ev)
		require.NoError(t, err)
		require.NoError(t, producer.Publish(pubCtx, msg), ev.EventType)
	}
	span.End()

	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(decoded) == len(sent)
	}, 60*time.Second, 20*time.Millisecond, "not every event came back")

	mu.Lock()
	defer mu.Unlock()
	for id, want := range sent {
		t.Run(want.EventType, func(t *testing.T) {
			require.Equal(t, want, decoded[id])
			m := received[id]
			require.Equal(t, want.Topic(), m.Topic)
			require.Equal(t, want.Key(), m.Key)
			require.Equal(t, want.EventType, m.Header(bus.HeaderEventType))
			require.Equal(t, events.ContentType, m.Header(bus.HeaderContentType))
			require.Equal(t, "corr-1", m.Header(telemetry.HeaderCorrelationID))
			require.Contains(t, m.Header(telemetry.HeaderTraceparent), traceID)
		})
	}
}
