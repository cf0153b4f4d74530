package kafkabus_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/kafkabus"
)

func TestNewBatchConsumerValidates(t *testing.T) {
	t.Parallel()
	cfg := kafkabus.DefaultConsumerConfig(kafkabus.Connection{Brokers: []string{"127.0.0.1:1"}}, "group", "topic")
	cfg.DLQ = &kafkabus.Producer{}
	ok := func(context.Context, *bus.Message) error { return nil }
	okBatch := func(context.Context, []*bus.Message) error { return nil }
	tests := []struct {
		name    string
		mutate  func(*kafkabus.ConsumerConfig)
		batch   kafkabus.BatchHandler
		wantErr string
	}{
		{name: "defaults", mutate: func(*kafkabus.ConsumerConfig) {}, batch: okBatch},
		{name: "nil batch handler", mutate: func(*kafkabus.ConsumerConfig) {}, wantErr: "nil batch handler"},
		{name: "negative size", mutate: func(c *kafkabus.ConsumerConfig) { c.BatchSize = -1 }, batch: okBatch, wantErr: "batch size"},
		{name: "negative wait", mutate: func(c *kafkabus.ConsumerConfig) { c.BatchWait = -time.Second }, batch: okBatch, wantErr: "batch wait"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := cfg
			tt.mutate(&c)
			_, err := kafkabus.NewBatchConsumer(c, tt.batch, ok, testLogger(t), nil)
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}

// TestBatchConsumerFallsBackOneByOne checks that batches arrive in offset
// order, are marked after success, and that a failing batch is replayed one
// message at a time so that only the poison message reaches the DLQ; a
// restarted consumer of the same group receives nothing again.
func TestBatchConsumerFallsBackOneByOne(t *testing.T) {
	t.Parallel()
	conn := kafkaConn(t)
	topic := newTopic(t, conn, "batch", 2)
	producer := newProducer(t, kafkabus.DefaultProducerConfig(conn))
	group := "g-" + topic
	const n = 200

	var mu sync.Mutex
	applied := map[string]int{}
	var batches [][]int64
	batch := func(_ context.Context, msgs []*bus.Message) error {
		offsets := make([]int64, len(msgs))
		for i, m := range msgs {
			offsets[i] = m.Offset
			if string(m.Value) == "poison" {
				return errors.New("batch contains a bad message")
			}
		}
		mu.Lock()
		defer mu.Unlock()
		require.True(t, slices.IsSorted(offsets))
		batches = append(batches, offsets)
		for _, m := range msgs {
			applied[string(m.Value)]++
		}
		return nil
	}
	single := func(_ context.Context, m *bus.Message) error {
		if string(m.Value) == "poison" {
			return bus.Permanent(errors.New("cannot decode"))
		}
		mu.Lock()
		defer mu.Unlock()
		applied[string(m.Value)]++
		return nil
	}
	cfg := testConsumerConfig(conn, producer, group, topic)
	cfg.BatchSize = 50
	cfg.BatchWait = 50 * time.Millisecond

	for i := range n {
		v := fmt.Sprintf("m%03d", i)
		if i == 120 {
			v = "poison"
		}
		require.NoError(t, producer.Publish(context.Background(), &bus.Message{Topic: topic, Key: fmt.Sprintf("k%d", i%7), Value: []byte(v)}))
	}

	dead := newCollector()
	startConsumer(t, testConsumerConfig(conn, producer, "g-dlq-"+topic, events.DLQTopic(topic)), func(_ context.Context, m *bus.Message) error {
		dead.add(string(m.Value), m)
		return nil
	})

	c, err := kafkabus.NewBatchConsumer(cfg, batch, single, testLogger(t), nil)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()

	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(applied) == n-1
	}, waitLong, 10*time.Millisecond)
	require.Eventually(t, func() bool { return dead.unique() == 1 }, waitLong, 10*time.Millisecond)
	cancel()
	require.NoError(t, <-done)

	mu.Lock()
	for k, v := range applied {
		require.Equal(t, 1, v, "message %s applied once", k)
	}
	require.Greater(t, len(batches), 1)
	largest := 0
	for _, b := range batches {
		largest = max(largest, len(b))
	}
	require.LessOrEqual(t, largest, 50)
	require.Greater(t, largest, 1, "messages were grouped")
	mu.Unlock()
	msgs, _ := dead.snapshot()
	require.Equal(t, "poison", string(msgs[0].Value))

	// The same group resumes after the committed offsets: nothing again.
	again := newCollector()
	restarted := startConsumer(t, cfg, func(_ context.Context, m *bus.Message) error {
		again.add(string(m.Value), m)
		return nil
	})
	require.Eventually(t, restarted.Ready, waitLong, 10*time.Millisecond)
	require.NoError(t, producer.Publish(context.Background(), &bus.Message{Topic: topic, Key: "k0", Value: []byte("last")}))
	require.Eventually(t, func() bool { return again.total() == 1 }, waitLong, 10*time.Millisecond)
	_, counts := again.snapshot()
	require.Equal(t, map[string]int{"last": 1}, counts)
}
