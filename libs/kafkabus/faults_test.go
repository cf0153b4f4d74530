package kafkabus_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/kafkabus"
	"github.com/cosmic-horizons/fleet/libs/kafkabus/kafkabustest"
)

// A dependency that is down for a while (here: the first 40 attempts at m2,
// about two seconds of backoff) holds the partition: m2 is retried until it
// succeeds, nothing is dead-lettered and the order of the key holds.
func TestTransientFailureIsRetriedUntilItClears(t *testing.T) {
	t.Parallel()
	conn := kafkaConn(t)
	topic := newTopic(t, conn, "transient", 1)
	producer := newProducer(t, kafkabus.DefaultProducerConfig(conn))
	cfg := testConsumerConfig(conn, producer, "g-"+topic, topic)
	cfg.Retry = bus.DefaultRetryPolicy() // no bound
	cfg.Retry.InitialBackoff, cfg.Retry.MaxBackoff = 10*time.Millisecond, 100*time.Millisecond
	reg := prometheus.NewRegistry()

	var mu sync.Mutex
	var handled []string
	failures := 0
	startConsumerWith(t, cfg, reg, func(_ context.Context, m *bus.Message) error {
		mu.Lock()
		defer mu.Unlock()
		if string(m.Value) == "m2" && failures < 40 {
			failures++
			return errors.New("database is unreachable")
		}
		handled = append(handled, string(m.Value))
		return nil
	})
	dead := newCollector()
	startConsumer(t, testConsumerConfig(conn, producer, "g-dlq-"+topic, events.DLQTopic(topic)), func(_ context.Context, m *bus.Message) error {
		dead.add(string(m.Value), m)
		return nil
	})
	for i := range 5 {
		require.NoError(t, producer.Publish(context.Background(), &bus.Message{Topic: topic, Key: "job-1", Value: fmt.Appendf(nil, "m%d", i)}))
	}
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(handled) == 5
	}, waitLong, 10*time.Millisecond)
	mu.Lock()
	require.Equal(t, []string{"m0", "m1", "m2", "m3", "m4"}, handled)
	require.Equal(t, 40, failures)
	mu.Unlock()
	require.Equal(t, 40.0, metricValue(t, reg, "fleet_kafka_handler_retries_total", map[string]string{"topic": topic}))
	require.Zero(t, metricValue(t, reg, "fleet_kafka_consumer_stalled", map[string]string{"topic": topic, "partition": "0"}), "no longer stalled")
	time.Sleep(time.Second)
	require.Zero(t, dead.total(), "a transient failure is never dead-lettered")
}

// A consumer whose topic has no dead-letter topic does not start: it could
// never set a poison message aside.
func TestMissingDeadLetterTopicIsAStartupError(t *testing.T) {
	t.Parallel()
	conn := kafkaConn(t)
	topic := kafkabustest.Name("test-nodlq")
	kafkabustest.Topics(t, conn.Brokers, 1, topic)
	producer := newProducer(t, kafkabus.DefaultProducerConfig(conn))
	c, err := kafkabus.NewConsumer(testConsumerConfig(conn, producer, "g-"+topic, topic), func(context.Context, *bus.Message) error { return nil }, testLogger(t), nil)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	err = c.Run(ctx)
	require.ErrorIs(t, err, kafkabus.ErrDLQTopicMissing)
	require.ErrorContains(t, err, events.DLQTopic(topic))
}

// A poison message whose dead-letter copy is too large for the producer
// (its headers grew by the dlq.* ones) is trimmed to fit: the value is kept,
// the headers that do not name the event are dropped and the fact recorded.
func TestTooLargeDeadLetterIsTrimmedToFit(t *testing.T) {
	t.Parallel()
	conn := kafkaConn(t)
	topic := newTopic(t, conn, "bigdlq", 1)
	producer := newProducer(t, kafkabus.DefaultProducerConfig(conn))
	small := kafkabus.DefaultProducerConfig(conn)
	small.MaxMessageBytes = 6 << 10
	dlqProducer := newProducer(t, small)
	startConsumer(t, testConsumerConfig(conn, dlqProducer, "g-"+topic, topic), func(context.Context, *bus.Message) error {
		return bus.Permanent(errors.New("does not decode: " + strings.Repeat("x", 4<<10)))
	})
	dead := newCollector()
	startConsumer(t, testConsumerConfig(conn, producer, "g-dlq-"+topic, events.DLQTopic(topic)), func(_ context.Context, m *bus.Message) error {
		dead.add(string(m.Value), m)
		return nil
	})
	value := strings.Repeat("v", 1<<10)
	require.NoError(t, producer.Publish(context.Background(), &bus.Message{Topic: topic, Key: "job-9", Value: []byte(value),
		Headers: map[string]string{events.HeaderEventID: "e-1", bus.HeaderEventType: "job.failed", "x-bulky": strings.Repeat("h", 3<<10)}}))
	require.Eventually(t, func() bool { return dead.unique() == 1 }, waitLong, 10*time.Millisecond)
	msgs, _ := dead.snapshot()
	dl := msgs[0]
	require.Equal(t, value, string(dl.Value), "the value is kept")
	require.Equal(t, "job-9", dl.Key)
	require.Equal(t, "e-1", dl.Header(events.HeaderEventID))
	require.Equal(t, "job.failed", dl.Header(bus.HeaderEventType))
	require.Empty(t, dl.Header("x-bulky"))
	require.Contains(t, dl.Header(bus.HeaderDLQTrimmed), "original headers dropped")
	require.Contains(t, dl.Header(bus.HeaderDLQError), "[truncated]")
	require.Equal(t, topic, dl.Header(bus.HeaderDLQTopic))
}
