package testutil

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/kafkabus"
	"github.com/cosmic-horizons/fleet/libs/testinfra"
)

// KafkaConn returns the stack's Kafka connection, or marks the test unavailable.
func KafkaConn(t testing.TB) kafkabus.Connection {
	t.Helper()
	if os.Getenv("KAFKA_BROKERS") == "" {
		testinfra.Unavailable(t, "KAFKA_BROKERS")
	}
	conn := kafkabus.ConnectionFromEnv()
	conn.ClientID = "notification-consumer-test"
	return conn
}

// LifecycleTopic creates a fresh copy of job-lifecycle (and its dead-letter
// topic) for one test and deletes both at the end.
func LifecycleTopic(t testing.TB, conn kafkabus.Connection) string {
	t.Helper()
	name := fmt.Sprintf("nc-test-lifecycle-%d", time.Now().UnixNano())
	specs := []events.TopicSpec{
		{Name: name, Key: events.KeyJobID, Partitions: 3, Retention: time.Hour, Compression: "producer", ReplicationFactor: 1, MinInsyncReplicas: 1},
		{Name: events.DLQTopic(name), Key: events.KeyJobID, Partitions: 1, Retention: time.Hour, Compression: "producer", ReplicationFactor: 1, MinInsyncReplicas: 1},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := kafkabus.EnsureTopics(ctx, conn.Brokers, specs, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = kafkabus.DeleteTopics(ctx, conn, name, events.DLQTopic(name))
	})
	return name
}

// Producer returns a producer closed at the end of the test.
func Producer(t testing.TB, conn kafkabus.Connection) *kafkabus.Producer {
	t.Helper()
	p, err := kafkabus.NewProducer(kafkabus.DefaultProducerConfig(conn), slog.New(slog.DiscardHandler), nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// Publish encodes payload as an event and publishes it to topic.
func Publish(t testing.TB, p *kafkabus.Producer, codec *events.Codec, topic string, payload events.Payload, seq int64) events.Event {
	t.Helper()
	ev, err := events.NewEvent(payload, events.Meta{Producer: "job-orchestrator", UserID: "orchestrator", Sequence: seq})
	require.NoError(t, err)
	msg, err := codec.Message(ev)
	require.NoError(t, err)
	msg.Topic = topic
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, p.Publish(ctx, msg))
	return ev
}

// Watcher collects the events published to a topic after it started.
type Watcher struct {
	mu     sync.Mutex
	events []events.Event
}

// WatchTopic reads topic from its current end in every partition until the
// test ends, decoding events with codec.
func WatchTopic(t testing.TB, conn kafkabus.Connection, codec *events.Codec, topic string) *Watcher {
	t.Helper()
	cfg, err := kafkabus.ClientConfig(conn)
	require.NoError(t, err)
	cfg.Consumer.IsolationLevel = sarama.ReadCommitted
	client, err := sarama.NewClient(conn.Brokers, cfg)
	require.NoError(t, err)
	consumer, err := sarama.NewConsumerFromClient(client)
	require.NoError(t, err)
	partitions, err := client.Partitions(topic)
	require.NoError(t, err)
	w := &Watcher{}
	var wg sync.WaitGroup
	var pcs []sarama.PartitionConsumer
	for _, p := range partitions {
		off, err := client.GetOffset(topic, p, sarama.OffsetNewest)
		require.NoError(t, err)
		pc, err := consumer.ConsumePartition(topic, p, off)
		require.NoError(t, err)
		pcs = append(pcs, pc)
		wg.Go(func() {
			for m := range pc.Messages() {
				ev, err := codec.Decode(events.TopicNotifications, m.Value)
				if err != nil {
					continue
				}
				w.mu.Lock()
				w.events = append(w.events, ev)
				w.mu.Unlock()
			}
		})
	}
	t.Cleanup(func() {
		for _, pc := range pcs {
			pc.AsyncClose()
		}
		wg.Wait()
		_ = consumer.Close()
		_ = client.Close()
	})
	return w
}

// Events returns the events seen so far that keep returns true for.
func (w *Watcher) Events(keep func(events.Event) bool) []events.Event {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []events.Event
	for _, ev := range w.events {
		if keep(ev) {
			out = append(out, ev)
		}
	}
	return out
}

// ForRecipient keeps the notification events of one user.
func ForRecipient(userID string) func(events.Event) bool {
	return func(ev events.Event) bool {
		switch p := ev.Payload.(type) {
		case events.NotificationSent:
			return p.RecipientUserID == userID
		case events.NotificationFailed:
			return p.RecipientUserID == userID
		}
		return false
	}
}

// UniqueID returns a unique identifier with prefix.
func UniqueID(prefix string) string {
	return strings.ToLower(fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano()))
}
