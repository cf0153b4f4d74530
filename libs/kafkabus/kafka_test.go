package kafkabus_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/kafkabus"
	"github.com/cosmic-horizons/fleet/libs/kafkabus/kafkabustest"
	"github.com/cosmic-horizons/fleet/libs/testinfra"
)

// waitLong bounds every require.Eventually of the integration tests.
const waitLong = 30 * time.Second

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func kafkaConn(t testing.TB) kafkabus.Connection {
	t.Helper()
	return kafkabus.Connection{Brokers: testinfra.KafkaBrokers(t), ClientID: "kafkabus-test"}
}

func topicSpec(name string, partitions int32) events.TopicSpec {
	return events.TopicSpec{
		Name: name, Partitions: partitions, Retention: time.Hour, Compression: "zstd",
		ReplicationFactor: 1, MinInsyncReplicas: 1,
	}
}

// newTopic creates a topic with a random name and its dead-letter topic,
// both deleted when the test ends.
func newTopic(t testing.TB, conn kafkabus.Connection, prefix string, partitions int32) string {
	t.Helper()
	name := kafkabustest.Name("test-" + prefix)
	kafkabustest.TopicsWithDLQ(t, conn.Brokers, partitions, name)
	return name
}

func newProducer(t testing.TB, cfg kafkabus.ProducerConfig) *kafkabus.Producer {
	t.Helper()
	p, err := kafkabus.NewProducer(cfg, testLogger(t), nil)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, p.Close()) })
	return p
}

// testConsumerConfig is tuned for fast rebalances in tests.
func testConsumerConfig(conn kafkabus.Connection, dlq *kafkabus.Producer, group string, topics ...string) kafkabus.ConsumerConfig {
	cfg := kafkabus.DefaultConsumerConfig(conn, group, topics...)
	cfg.DLQ = dlq
	cfg.Retry = bus.RetryPolicy{MaxAttempts: 3, InitialBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}
	cfg.SessionTimeout = 6 * time.Second
	cfg.HeartbeatInterval = 300 * time.Millisecond
	cfg.RebalanceTimeout = 10 * time.Second
	cfg.CommitInterval = 200 * time.Millisecond
	return cfg
}

// runningConsumer is a Consumer whose Run goroutine the test controls.
type runningConsumer struct {
	*kafkabus.Consumer
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

// stop cancels Run and requires it to return nil.
func (r *runningConsumer) stop(t testing.TB) {
	t.Helper()
	r.once.Do(func() {
		r.cancel()
		select {
		case err := <-r.done:
			require.NoError(t, err)
		case <-time.After(waitLong):
			t.Fatal("consumer did not stop")
		}
	})
}

func startConsumer(t testing.TB, cfg kafkabus.ConsumerConfig, h bus.Handler) *runningConsumer {
	t.Helper()
	return startConsumerWith(t, cfg, nil, h)
}

func startConsumerWith(t testing.TB, cfg kafkabus.ConsumerConfig, reg prometheus.Registerer, h bus.Handler) *runningConsumer {
	t.Helper()
	c, err := kafkabus.NewConsumer(cfg, h, testLogger(t), reg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningConsumer{Consumer: c, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- c.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// collector records handled messages by id (the message key unless told otherwise).
type collector struct {
	mu   sync.Mutex
	msgs []*bus.Message
	byID map[string]int
}

func newCollector() *collector { return &collector{byID: make(map[string]int)} }

func (c *collector) add(id string, m *bus.Message) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.msgs = append(c.msgs, m)
	c.byID[id]++
}

func (c *collector) unique() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.byID)
}

func (c *collector) total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.msgs)
}

func (c *collector) snapshot() ([]*bus.Message, map[string]int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	counts := make(map[string]int, len(c.byID))
	for k, v := range c.byID {
		counts[k] = v
	}
	return append([]*bus.Message(nil), c.msgs...), counts
}

// metricValue returns the counter or gauge value, or the histogram sample
// count, of the series of name whose labels include labels; 0 when absent.
func metricValue(t testing.TB, g prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := g.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue series
				}
			}
			switch {
			case m.Counter != nil:
				return m.GetCounter().GetValue()
			case m.Gauge != nil:
				return m.GetGauge().GetValue()
			case m.Histogram != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return 0
}
