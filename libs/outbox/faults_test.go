package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/amqpbus"
	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/outbox"
	"github.com/cosmic-horizons/fleet/libs/outbox/relaytest"
	"github.com/cosmic-horizons/fleet/libs/sqlstore"
	"github.com/cosmic-horizons/fleet/libs/sqlstore/sqlstoretest"
)

// faultFixture is a SQLite store with its own topics and a queue bound to
// its owner's events, for one relay test.
type faultFixture struct {
	b      brokers
	prefix string
	owner  string
	q      *relaytest.Queue
	db     *sqlstore.DB
	s      *jobStore
	wake   chan struct{}
	w      *writer
}

func newFaultFixture(t *testing.T) *faultFixture {
	t.Helper()
	f := &faultFixture{b: connect(t), wake: make(chan struct{}, 1), w: newWriter()}
	f.prefix = relaytest.RandomName(t, "relaytest-") + "-"
	relaytest.EnsureTopics(t, f.b.kafka, f.prefix)
	f.owner = relaytest.RandomName(t, "user-")
	f.q = relaytest.BindQueue(t, f.b.amqpURL, amqpbus.UserPattern(f.owner))
	f.db = sqlstoretest.Databases(t)[0].Open(t)
	f.s = openStore(t, f.db, f.wake)
	return f
}

func (f *faultFixture) config() outbox.RelayConfig {
	cfg := outbox.DefaultRelayConfig()
	cfg.TopicPrefix, cfg.Wake = f.prefix, f.wake
	return cfg
}

// outageAMQP is the real publisher behind a switch that fails every publish
// while down, as a RabbitMQ outage does.
type outageAMQP struct {
	outbox.AMQPPublisher
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
	f := newFaultFixture(t)
	amqp := &outageAMQP{AMQPPublisher: f.b.publisher}
	amqp.down.Store(true)
	cfg := f.config()
	cfg.BackoffMin, cfg.BackoffMax = 20*time.Millisecond, 200*time.Millisecond
	r := runRelay(t, cfg, f.s, f.b.producer, amqp)

	for i := range 6 {
		f.w.job(t, f.s, fmt.Sprintf("%s-%d", f.owner, i), f.owner)
	}
	require.Eventually(t, func() bool {
		return sqlstoretest.Count(t, f.db, "SELECT COUNT(*) FROM outbox WHERE published_kafka_at IS NULL") == 0
	}, 30*time.Second, 20*time.Millisecond, "every event reaches Kafka while RabbitMQ is down")
	f.w.verifyKafka(t, f.b.kafka, f.prefix)
	require.Zero(t, sqlstoretest.Count(t, f.db, "SELECT COUNT(*) FROM outbox_amqp WHERE published_at IS NOT NULL"))
	require.Positive(t, sqlstoretest.Count(t, f.db, "SELECT SUM(attempts) FROM outbox_amqp"))
	require.Zero(t, sqlstoretest.Count(t, f.db, "SELECT SUM(attempts) FROM outbox"), "Kafka never failed")
	require.NoError(t, r.Check(context.Background()), "a RabbitMQ outage leaves the relay ready")

	amqp.down.Store(false)
	waitDrained(t, f.s)
	f.w.verifyAMQP(t, f.q)
}

// permanentKafka refuses one event for good (as the broker refuses a record
// that is too large) until healed.
type permanentKafka struct {
	outbox.KafkaPublisher
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
	f := newFaultFixture(t)
	for i := range 5 {
		f.w.job(t, f.s, fmt.Sprintf("%s-%d", f.owner, i), f.owner)
	}
	stuckJob := fmt.Sprintf("%s-%d", f.owner, 2)
	poison := f.w.order[stuckJob][2] // the job's second lifecycle event
	kafka := &permanentKafka{KafkaPublisher: f.b.producer}
	kafka.refuse.Store(poison)
	r := runRelay(t, f.config(), f.s, kafka, f.b.publisher)
	ctx := context.Background()

	// Everything but the stuck job's tail reaches Kafka.
	stuckTail := len(f.w.order[stuckJob]) - 2
	require.Eventually(t, func() bool {
		return sqlstoretest.Count(t, f.db, "SELECT COUNT(*) FROM outbox WHERE published_kafka_at IS NULL") == int64(stuckTail)
	}, 30*time.Second, 20*time.Millisecond)
	time.Sleep(200 * time.Millisecond)
	require.EqualValues(t, 1, kafka.refused.Load(), "a permanent failure is not retried")
	require.NoError(t, r.Check(ctx), "one stuck row leaves the relay ready")
	parked, err := f.s.ListParked(ctx)
	require.NoError(t, err)
	require.Len(t, parked, 1)
	require.Equal(t, poison, parked[0].EventID)
	require.Equal(t, outbox.LegKafka, parked[0].Leg)
	require.Contains(t, parked[0].LastError, "too large")

	kafka.refuse.Store("")
	n, err := f.s.RetryParked(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 1, n)
	select {
	case f.wake <- struct{}{}:
	default:
	}
	waitDrained(t, f.s)
	f.w.verifyKafka(t, f.b.kafka, f.prefix)
	f.w.verifyAMQP(t, f.q)
}

// slowKafka delays every publish of one job.
type slowKafka struct {
	outbox.KafkaPublisher
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
	f := newFaultFixture(t)
	slow := f.owner + "-slow"
	f.w.job(t, f.s, slow, f.owner)
	cfg := f.config()
	cfg.Wake, cfg.PollInterval = nil, 10*time.Millisecond
	runRelay(t, cfg, f.s, &slowKafka{KafkaPublisher: f.b.producer, slowJob: slow, delay: 300 * time.Millisecond}, f.b.publisher)

	var wg sync.WaitGroup
	for i := range 5 {
		wg.Go(func() { f.w.job(t, f.s, fmt.Sprintf("%s-%d", f.owner, i), f.owner) })
	}
	wg.Wait()
	count := func(query string) int64 { return sqlstoretest.Count(t, f.db, query, slow) }
	// The slow job needs 9 x 300 ms; the others are sent long before.
	require.Eventually(t, func() bool {
		return count("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL AND job_id <> ?") == 0
	}, 2*time.Second, 10*time.Millisecond, "the other jobs' events are sent while the slow job publishes")
	require.Positive(t, count("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL AND job_id = ?"), "the slow job is still publishing")
	require.Eventually(t, func() bool {
		return count("SELECT COUNT(*) FROM outbox WHERE sent_at IS NOT NULL AND job_id = ?") > 0 &&
			count("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL AND job_id = ?") > 0
	}, 3*time.Second, 10*time.Millisecond, "the slow job's acknowledged events are marked while it still publishes")
	waitDrained(t, f.s)
	f.w.verifyKafka(t, f.b.kafka, f.prefix)
}

// gateKafka holds every publish of one job until the gate opens.
type gateKafka struct {
	outbox.KafkaPublisher
	job  string
	gate chan struct{}
}

func (k *gateKafka) Publish(ctx context.Context, m *bus.Message) error {
	if m.Key == k.job {
		select {
		case <-k.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return k.KafkaPublisher.Publish(ctx, m)
}

// fleet_outbox_unmarked counts the events handed to a broker and not yet
// marked sent, what a crash would publish again: one while a job's publish
// hangs and the other jobs' events are marked, none once all are marked.
func TestUnmarkedGaugeCountsWhatACrashRepublishes(t *testing.T) {
	t.Parallel()
	f := newFaultFixture(t)
	held := f.owner + "-held"
	f.w.job(t, f.s, held, f.owner)
	for i := range 3 {
		f.w.job(t, f.s, fmt.Sprintf("%s-%d", f.owner, i), f.owner)
	}
	reg := prometheus.NewRegistry()
	cfg := f.config()
	cfg.Wake, cfg.PollInterval = nil, 10*time.Millisecond
	k := &gateKafka{KafkaPublisher: f.b.producer, job: held, gate: make(chan struct{})}
	r, err := outbox.NewRelay(cfg, f.s, k, f.b.publisher, discard(), reg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() { cancel(); require.NoError(t, <-done) })

	unmarked := func(dest string) float64 {
		mfs, err := reg.Gather()
		require.NoError(t, err)
		for _, mf := range mfs {
			if mf.GetName() != "fleet_outbox_unmarked" {
				continue
			}
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "destination" && l.GetValue() == dest {
						return m.GetGauge().GetValue()
					}
				}
			}
		}
		return -1
	}
	count := func(query string) int64 { return sqlstoretest.Count(t, f.db, query, held) }
	require.Eventually(t, func() bool {
		return count("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL AND job_id <> ?") == 0
	}, 10*time.Second, 10*time.Millisecond, "the other jobs' events are sent")
	require.Equal(t, float64(1), unmarked("kafka"), "the held job's one event is handed over and not marked")
	close(k.gate)
	waitDrained(t, f.s)
	require.Eventually(t, func() bool { return unmarked("kafka") == 0 && unmarked("rabbitmq") == 0 },
		5*time.Second, 10*time.Millisecond, "every published event is marked")
}

// outageOutbox is the real store behind a switch that fails every claim and
// every mark while down, as a database outage does.
type outageOutbox struct {
	*jobStore
	down atomic.Bool
}

var errDatabaseDown = errors.New("database: connection refused")

func (o *outageOutbox) ClaimOutbox(ctx context.Context, leg outbox.Leg, owner string, maxJobs int, lease time.Duration) ([]outbox.PendingEvent, error) {
	if o.down.Load() {
		return nil, errDatabaseDown
	}
	return o.Store.ClaimOutbox(ctx, leg, owner, maxJobs, lease)
}

func (o *outageOutbox) CompleteOutbox(ctx context.Context, leg outbox.Leg, owner string, results []outbox.Result) (int, error) {
	if o.down.Load() {
		return 0, errDatabaseDown
	}
	return o.Store.CompleteOutbox(ctx, leg, owner, results)
}

// downAfterFirstPublish publishes, and takes the database down after the
// first publish: the broker gets the events, their marks cannot be written.
type downAfterFirstPublish struct {
	outbox.KafkaPublisher
	outbox    *outageOutbox
	published atomic.Int64
}

func (k *downAfterFirstPublish) Publish(ctx context.Context, m *bus.Message) error {
	err := k.KafkaPublisher.Publish(ctx, m)
	if err == nil && k.published.Add(1) == 1 {
		k.outbox.down.Store(true)
	}
	return err
}

// A database outage that outlasts the relay's lease, falling between the
// publishes and their marks, publishes nothing twice: the relay keeps its
// marks and writes them once the database answers, before it claims again.
func TestDatabaseOutagePublishesNothingTwice(t *testing.T) {
	t.Parallel()
	f := newFaultFixture(t)
	for i := range 4 {
		f.w.job(t, f.s, fmt.Sprintf("%s-%d", f.owner, i), f.owner)
	}
	outbox := &outageOutbox{jobStore: f.s}
	kafka := &downAfterFirstPublish{KafkaPublisher: f.b.producer, outbox: outbox}
	cfg := f.config()
	cfg.Lease, cfg.LeaseMargin = time.Second, 200*time.Millisecond
	cfg.BackoffMin, cfg.BackoffMax = 20*time.Millisecond, 200*time.Millisecond
	runRelay(t, cfg, outbox, kafka, f.b.publisher)

	require.Eventually(t, outbox.down.Load, 30*time.Second, 10*time.Millisecond, "the first event is published")
	time.Sleep(3 * cfg.Lease) // every claim expires while the database is down
	outbox.down.Store(false)
	waitDrained(t, f.s)
	f.w.verifyKafka(t, f.b.kafka, f.prefix)
	f.w.verifyAMQP(t, f.q)
}
