package outbox_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/outbox"
	"github.com/cosmic-horizons/fleet/libs/sqlstore"
	"github.com/cosmic-horizons/fleet/libs/sqlstore/sqlstoretest"
)

// heldKafka acknowledges every message at once except those keyed held,
// which wait until release is closed; it records what it acknowledged.
type heldKafka struct {
	held    string
	release chan struct{}
	mu      sync.Mutex
	acked   []string
}

func (k *heldKafka) Publish(ctx context.Context, m *bus.Message) error {
	if m.Key == k.held {
		select {
		case <-k.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.acked = append(k.acked, m.Headers["event_id"])
	return nil
}

func (k *heldKafka) got() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]string(nil), k.acked...)
}

// TestRelayKafkaOnlyStalledKeyHoldsBackNoOther: on a Kafka-only outbox
// (no RabbitMQ leg, no AMQP publisher) a key whose publish hangs (its
// partition has no leader) delays only itself: the other keys' events are
// published and marked meanwhile, and the held key's follow in order once
// its broker answers.
func TestRelayKafkaOnlyStalledKeyHoldsBackNoOther(t *testing.T) {
	t.Parallel()
	sqlstoretest.Run(t, func(t *testing.T, db *sqlstore.DB) {
		f := newFixture(t, db, outbox.Tables{Outbox: "outbox", Key: "job_id"})
		// The relay runs on real time, and so does the store it drains.
		s := outbox.NewStore(db, outbox.Options{Tables: outbox.Tables{Outbox: "outbox", Key: "job_id"}})
		f.s = s
		f.append(t, "slow", row("slow", "1", ""), row("slow", "2", ""))
		f.append(t, "a", row("a", "1", ""), row("a", "2", ""))
		f.append(t, "b", row("b", "1", ""))

		kafka := &heldKafka{held: "slow", release: make(chan struct{})}
		cfg := outbox.DefaultRelayConfig()
		cfg.PollInterval, cfg.MarkInterval = 10*time.Millisecond, time.Millisecond
		reg := prometheus.NewRegistry()
		r, err := outbox.NewRelay(cfg, s, kafka, nil, slog.New(slog.DiscardHandler), reg)
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = r.Run(ctx) }()
		defer func() { cancel(); <-done }()

		backlog := func() int64 {
			n, err := s.OutboxBacklog(context.Background())
			require.NoError(t, err)
			return n
		}
		require.Eventually(t, func() bool { return backlog() == 2 }, 10*time.Second, 10*time.Millisecond,
			"the other keys are published and marked while slow waits")
		require.ElementsMatch(t, []string{"a/1", "a/2", "b/1"}, kafka.got())
		close(kafka.release)
		require.Eventually(t, func() bool { return backlog() == 0 }, 10*time.Second, 10*time.Millisecond)
		got := kafka.got()
		require.Equal(t, []string{"slow/1", "slow/2"}, got[3:], "the held key in order")
		require.Equal(t, 5.0, counterSum(t, reg, "fleet_outbox_published_total"))
	})
}

// counterSum sums the samples of the counter name in reg.
func counterSum(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == name {
			sum := 0.0
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
			return sum
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}
