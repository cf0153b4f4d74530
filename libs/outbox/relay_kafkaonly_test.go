package outbox_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/outbox"
	"github.com/cosmic-horizons/fleet/libs/sqlstore"
	"github.com/cosmic-horizons/fleet/libs/sqlstore/sqlstoretest"
)

// nopKafka acknowledges every message at once.
type nopKafka struct{}

func (nopKafka) Publish(context.Context, *bus.Message) error { return nil }

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

		acks := &ackRecorder{KafkaPublisher: nopKafka{}, acked: map[string]time.Time{}, key: map[string]string{}}
		kafka := &gateKafka{KafkaPublisher: acks, job: "slow", gate: make(chan struct{})}
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
		for _, id := range []string{"a/1", "a/2", "b/1"} {
			_, ok := acks.ackedAt(id)
			require.True(t, ok, id)
		}
		_, ok := acks.ackedAt("slow/1")
		require.False(t, ok)
		close(kafka.gate)
		require.Eventually(t, func() bool { return backlog() == 0 }, 10*time.Second, 10*time.Millisecond)
		first, _ := acks.ackedAt("slow/1")
		second, ok := acks.ackedAt("slow/2")
		require.True(t, ok)
		require.False(t, second.Before(first), "the held key in order")
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
