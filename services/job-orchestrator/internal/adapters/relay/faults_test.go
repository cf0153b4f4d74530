package relay_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/amqpbus"
	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/sqlstore/sqlstoretest"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/adapters/relay"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/adapters/relay/relaytest"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/adapters/store"
)

// outageAMQP is the real publisher behind a switch that fails every publish
// while down, as a RabbitMQ outage does.
type outageAMQP struct {
	relay.AMQPPublisher
	down atomic.Bool
}

func (o *outageAMQP) Publish(ctx context.Context, exchange, key string, m *bus.Message) error {
	if o.down.Load() {
		return errors.New("rabbitmq: connection refused")
	}
	return o.AMQPPublisher.Publish(ctx, exchange, key, m)
}

// A RabbitMQ outage does not hold back Kafka: every event reaches Kafka in
// order while RabbitMQ is down; after it returns, RabbitMQ catches up, in
// order, with every lifecycle event; the relay stays ready throughout.
func TestRabbitMQOutageNeverDelaysKafka(t *testing.T) {
	t.Parallel()
	b := connect(t)
	d := sqlstoretest.Databases(t)[0]
	prefix := relaytest.RandomName(t, "relaytest-") + "-"
	relaytest.EnsureTopics(t, b.kafka, prefix)
	owner := relaytest.RandomName(t, "user-")
	q := relaytest.BindQueue(t, b.amqpURL, amqpbus.UserPattern(owner))
	db := d.Open(t)
	wake := make(chan struct{}, 1)
	s := openStore(t, db, wake)

	amqp := &outageAMQP{AMQPPublisher: b.publisher}
	amqp.down.Store(true)
	cfg := relay.DefaultConfig()
	cfg.TopicPrefix, cfg.Wake = prefix, wake
	cfg.BackoffMin, cfg.BackoffMax = 20*time.Millisecond, 200*time.Millisecond
	r, err := relay.New(cfg, s, b.producer, amqp, discard(), nil)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})

	w := newWriter()
	for i := range 6 {
		w.job(t, s, fmt.Sprintf("%s-%d", owner, i), owner)
	}
	require.Eventually(t, func() bool {
		return sqlstoretest.Count(t, db, "SELECT COUNT(*) FROM outbox WHERE published_kafka_at IS NULL") == 0
	}, 30*time.Second, 20*time.Millisecond, "every event reaches Kafka while RabbitMQ is down")
	w.verifyKafka(t, b.kafka, prefix)
	require.Zero(t, sqlstoretest.Count(t, db, "SELECT COUNT(*) FROM outbox_amqp WHERE published_at IS NOT NULL"))
	require.Positive(t, sqlstoretest.Count(t, db, "SELECT SUM(attempts) FROM outbox_amqp"))
	require.Zero(t, sqlstoretest.Count(t, db, "SELECT SUM(attempts) FROM outbox"), "Kafka never failed")
	require.NoError(t, r.Check(ctx), "a RabbitMQ outage leaves the relay ready")

	amqp.down.Store(false)
	waitDrained(t, s)
	w.verifyAMQP(t, q)
}

// permanentKafka refuses one event for good (as the broker refuses a record
// that is too large) until healed.
type permanentKafka struct {
	relay.KafkaPublisher
	refuse  atomic.Value // event id
	refused atomic.Int64
}

func (k *permanentKafka) Publish(ctx context.Context, m *bus.Message) error {
	if id, _ := k.refuse.Load().(string); id != "" && m.Header(events.HeaderEventID) == id {
		k.refused.Add(1)
		return bus.Permanent(errors.New("kafka: message was too large"))
	}
	return k.KafkaPublisher.Publish(ctx, m)
}

// One event that can never be published is parked after one attempt: the
// later events of its job wait, every other job's events flow, the relay
// stays ready, the row is listed with its error and, once retried, published
// in order.
func TestUnpublishableRowIsParkedAndHoldsBackOnlyItsJob(t *testing.T) {
	t.Parallel()
	b := connect(t)
	d := sqlstoretest.Databases(t)[0]
	prefix := relaytest.RandomName(t, "relaytest-") + "-"
	relaytest.EnsureTopics(t, b.kafka, prefix)
	owner := relaytest.RandomName(t, "user-")
	q := relaytest.BindQueue(t, b.amqpURL, amqpbus.UserPattern(owner))
	db := d.Open(t)
	wake := make(chan struct{}, 1)
	s := openStore(t, db, wake)
	w := newWriter()
	for i := range 5 {
		w.job(t, s, fmt.Sprintf("%s-%d", owner, i), owner)
	}
	stuckJob := fmt.Sprintf("%s-%d", owner, 2)
	poison := w.order[stuckJob][2] // the job's second lifecycle event
	kafka := &permanentKafka{KafkaPublisher: b.producer}
	kafka.refuse.Store(poison)

	cfg := relay.DefaultConfig()
	cfg.TopicPrefix, cfg.Wake = prefix, wake
	r, err := relay.New(cfg, s, kafka, b.publisher, discard(), nil)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})

	// Everything but the stuck job's tail reaches Kafka.
	stuckTail := len(w.order[stuckJob]) - 2
	require.Eventually(t, func() bool {
		return sqlstoretest.Count(t, db, "SELECT COUNT(*) FROM outbox WHERE published_kafka_at IS NULL") == int64(stuckTail)
	}, 30*time.Second, 20*time.Millisecond)
	time.Sleep(200 * time.Millisecond)
	require.EqualValues(t, 1, kafka.refused.Load(), "a permanent failure is not retried")
	require.NoError(t, r.Check(ctx), "one stuck row leaves the relay ready")
	parked, err := s.ListParked(ctx)
	require.NoError(t, err)
	require.Len(t, parked, 1)
	require.Equal(t, poison, parked[0].EventID)
	require.Equal(t, store.LegKafka, parked[0].Leg)
	require.Contains(t, parked[0].LastError, "too large")

	kafka.refuse.Store("")
	n, err := s.RetryParked(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 1, n)
	select {
	case wake <- struct{}{}:
	default:
	}
	waitDrained(t, s)
	w.verifyKafka(t, b.kafka, prefix)
	w.verifyAMQP(t, q)
}

// slowKafka delays every publish of one job.
type slowKafka struct {
	relay.KafkaPublisher
	slowJob string
	delay   time.Duration
}

func (k *slowKafka) Publish(ctx context.Context, m *bus.Message) error {
	if m.Key == k.slowJob {
		time.Sleep(k.delay)
	}
	return k.KafkaPublisher.Publish(ctx, m)
}

// A slow job does not hold back the others: while one job's events take
// 300 ms each, the other jobs' events are published and marked sent, and
// rows are marked as their acknowledgements arrive, not at the end of a
// pass.
func TestSlowJobHoldsBackNoOtherJob(t *testing.T) {
	t.Parallel()
	b := connect(t)
	d := sqlstoretest.Databases(t)[0]
	prefix := relaytest.RandomName(t, "relaytest-") + "-"
	relaytest.EnsureTopics(t, b.kafka, prefix)
	owner := relaytest.RandomName(t, "user-")
	relaytest.BindQueue(t, b.amqpURL, amqpbus.UserPattern(owner))
	db := d.Open(t)
	s := openStore(t, db, nil)
	w := newWriter()
	slow := owner + "-slow"
	w.job(t, s, slow, owner)
	cfg := relay.DefaultConfig()
	cfg.TopicPrefix, cfg.PollInterval = prefix, 10*time.Millisecond
	r, err := relay.New(cfg, s, &slowKafka{KafkaPublisher: b.producer, slowJob: slow, delay: 300 * time.Millisecond}, b.publisher, discard(), nil)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})

	var wg sync.WaitGroup
	for i := range 5 {
		wg.Go(func() { w.job(t, s, fmt.Sprintf("%s-%d", owner, i), owner) })
	}
	wg.Wait()
	// The slow job needs 9 x 300 ms; the others are sent long before.
	require.Eventually(t, func() bool {
		return sqlstoretest.Count(t, db, db.Rebind("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL AND job_id <> ?"), slow) == 0
	}, 2*time.Second, 10*time.Millisecond, "the other jobs' events are sent while the slow job publishes")
	require.Positive(t, sqlstoretest.Count(t, db, db.Rebind("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL AND job_id = ?"), slow),
		"the slow job is still publishing")
	require.Eventually(t, func() bool {
		sent := sqlstoretest.Count(t, db, db.Rebind("SELECT COUNT(*) FROM outbox WHERE sent_at IS NOT NULL AND job_id = ?"), slow)
		pending := sqlstoretest.Count(t, db, db.Rebind("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL AND job_id = ?"), slow)
		return sent > 0 && pending > 0
	}, 3*time.Second, 10*time.Millisecond, "the slow job's acknowledged events are marked while it still publishes")
	waitDrained(t, s)
	w.verifyKafka(t, b.kafka, prefix)
}
