// Package relaytest reads back what the relay published, for integration
// tests: every record of a Kafka topic, and the messages of a RabbitMQ queue
// bound to the job.events exchange.
package relaytest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/cosmic-horizons/fleet/libs/amqpbus"
	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/kafkabus"
)

// RandomName returns prefix followed by 12 random hex digits.
func RandomName(t testing.TB, prefix string) string {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("random name: %v", err)
	}
	return prefix + hex.EncodeToString(b)
}

// EnsureTopics creates the job-lifecycle, job-metrics and audit-trail topics
// under prefix (catalogue settings, replication 1) and deletes them when t ends.
func EnsureTopics(t testing.TB, brokers []string, prefix string) {
	t.Helper()
	specs, err := events.Catalogue(events.DefaultCatalogueConfig())
	if err != nil {
		t.Fatalf("topic catalogue: %v", err)
	}
	var mine []events.TopicSpec
	var names []string
	for _, s := range specs {
		switch s.Name {
		case events.TopicJobLifecycle, events.TopicJobMetrics, events.TopicAuditTrail:
			s.Name = prefix + s.Name
			mine = append(mine, s)
			names = append(names, s.Name)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := kafkabus.EnsureTopics(ctx, brokers, mine, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatalf("ensure topics %v: %v", names, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = kafkabus.DeleteTopics(ctx, kafkabus.Connection{Brokers: brokers}, names...)
	})
}

// ReadTopic returns every record of topic present now, partition by
// partition, each partition in offset order.
func ReadTopic(t testing.TB, brokers []string, topic string) []*bus.Message {
	t.Helper()
	cfg, err := kafkabus.ClientConfig(kafkabus.Connection{Brokers: brokers})
	if err != nil {
		t.Fatalf("kafka config: %v", err)
	}
	client, err := sarama.NewClient(brokers, cfg)
	if err != nil {
		t.Fatalf("kafka client: %v", err)
	}
	defer client.Close()
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		t.Fatalf("kafka consumer: %v", err)
	}
	defer consumer.Close()
	parts, err := client.Partitions(topic)
	if err != nil {
		t.Fatalf("partitions of %s: %v", topic, err)
	}
	var out []*bus.Message
	for _, p := range parts {
		oldest, err := client.GetOffset(topic, p, sarama.OffsetOldest)
		if err != nil {
			t.Fatalf("oldest offset %s/%d: %v", topic, p, err)
		}
		newest, err := client.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			t.Fatalf("newest offset %s/%d: %v", topic, p, err)
		}
		if newest <= oldest {
			continue
		}
		pc, err := consumer.ConsumePartition(topic, p, oldest)
		if err != nil {
			t.Fatalf("consume %s/%d: %v", topic, p, err)
		}
		timeout := time.After(30 * time.Second)
		for next := oldest; next < newest; {
			select {
			case m := <-pc.Messages():
				next = m.Offset + 1
				h := make(map[string]string, len(m.Headers))
				for _, rh := range m.Headers {
					h[string(rh.Key)] = string(rh.Value)
				}
				out = append(out, &bus.Message{Topic: m.Topic, Key: string(m.Key), Value: m.Value, Headers: h,
					Partition: m.Partition, Offset: m.Offset, Timestamp: m.Timestamp})
			case <-timeout:
				pc.Close()
				t.Fatalf("reading %s/%d: timed out at offset %d of %d", topic, p, next, newest)
			}
		}
		pc.Close()
	}
	return out
}

// Queue collects the messages of a RabbitMQ queue.
type Queue struct {
	mu   sync.Mutex
	msgs []*bus.Message
}

// Messages returns what arrived so far, in arrival order.
func (q *Queue) Messages() []*bus.Message {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]*bus.Message(nil), q.msgs...)
}

// BindQueue declares an exclusive, auto-deleted queue bound to the job.events
// exchange with each pattern and collects its messages until t ends.
func BindQueue(t testing.TB, url string, patterns ...string) *Queue {
	t.Helper()
	logger := slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := amqpbus.Dial(ctx, amqpbus.DefaultConfig(url), logger, nil)
	if err != nil {
		t.Fatalf("dial RabbitMQ: %v", err)
	}
	name := RandomName(t, "relaytest.")
	spec := amqpbus.QueueSpec{Name: name, AutoDelete: true, Exclusive: true, NoDeadLetter: true}
	for _, p := range patterns {
		spec.Bindings = append(spec.Bindings, amqpbus.Binding{Exchange: amqpbus.ExchangeJobEvents, Pattern: p})
	}
	if err := conn.DeclareQueue(ctx, spec); err != nil {
		t.Fatalf("declare queue: %v", err)
	}
	q := &Queue{}
	consumer, err := amqpbus.NewConsumer(conn, amqpbus.DefaultConsumerConfig(name), func(_ context.Context, m *bus.Message) error {
		q.mu.Lock()
		defer q.mu.Unlock()
		q.msgs = append(q.msgs, m)
		return nil
	}, logger, nil)
	if err != nil {
		t.Fatalf("consumer: %v", err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = consumer.Run(runCtx)
	}()
	t.Cleanup(func() {
		stop()
		<-done
		_ = conn.Close()
	})
	return q
}

// EventIDs returns the event_id header of each message.
func EventIDs(msgs []*bus.Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.Header(events.HeaderEventID)
	}
	return out
}

// String describes a message briefly, for failure output.
func String(m *bus.Message) string {
	return fmt.Sprintf("%s[%d@%d] key=%s type=%s id=%s", m.Topic, m.Partition, m.Offset, m.Key,
		m.Header(bus.HeaderEventType), m.Header(events.HeaderEventID))
}
