package outbox_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/amqpbus"
	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/kafkabus"
	"github.com/cosmic-horizons/fleet/libs/outbox"
	"github.com/cosmic-horizons/fleet/libs/outbox/relaytest"
	"github.com/cosmic-horizons/fleet/libs/sqlstore"
	"github.com/cosmic-horizons/fleet/libs/sqlstore/sqlstoretest"
	"github.com/cosmic-horizons/fleet/libs/testinfra"
)

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// jobStore is the outbox on the reference tables (testdata), written as
// the orchestrator writes job events: encoded by Encode, routed by
// JobEvents, appended in one transaction per job change, and a wake-up
// after each commit.
type jobStore struct {
	*outbox.Store
	db    *sqlstore.DB
	codec *events.Codec
	wake  chan struct{}
	mu    sync.Mutex
	seq   map[string]int64 // job id -> last seq
}

func openStore(t testing.TB, db *sqlstore.DB, wake chan struct{}) *jobStore {
	t.Helper()
	require.NoError(t, sqlstore.Migrate(context.Background(), db, os.DirFS("testdata"), ".", sqlstore.WithComponent("outbox-test")))
	codec, err := events.NewCodec()
	require.NoError(t, err)
	return &jobStore{Store: outbox.NewStore(db, outbox.Options{Tables: both}), db: db, codec: codec, wake: wake, seq: map[string]int64{}}
}

// commit appends the events of one change of job id in one transaction.
func (s *jobStore) commit(t testing.TB, id, owner string, evs []events.Event) {
	t.Helper()
	ctx := context.Background()
	rows, err := outbox.Encode(ctx, s.codec, outbox.JobEvents(owner, id), evs...)
	require.NoError(t, err)
	s.mu.Lock()
	after := s.seq[id]
	s.seq[id] += int64(len(rows))
	s.mu.Unlock()
	require.NoError(t, s.db.InTx(ctx, func(tx *sql.Tx) error {
		return s.Append(ctx, tx, outbox.Batch{Key: id, After: after, Rows: rows})
	}))
	if s.wake != nil {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// writer creates jobs with a few transitions and remembers, per job, the
// event ids in the order they were written.
type writer struct {
	mu    sync.Mutex
	order map[string][]string // job id -> event ids
	topic map[string]string   // event id -> topic
	amqp  map[string][]string // job id -> lifecycle event ids
	all   map[string]struct{} // every event id
}

func newWriter() *writer {
	return &writer{order: map[string][]string{}, topic: map[string]string{}, amqp: map[string][]string{}, all: map[string]struct{}{}}
}

func (w *writer) records(t testing.TB, id, owner string, seq int64) []events.Event {
	meta := events.Meta{Producer: "job-orchestrator", UserID: owner, CorrelationID: id, Sequence: seq}
	var p events.Payload
	if seq == 1 {
		p = events.JobSubmitted{JobID: id, UserID: owner, JobName: "n", Agent: "AlphaCal", TaccSystem: events.TaccSystemOther,
			Priority: events.JobPriorityNormal, ToStatus: events.JobStatusSubmitted,
			ResourceRequest: events.ResourceRequest{Nodes: 1, CoresPerNode: 1, WalltimeSeconds: 60}}
	} else {
		p = events.JobQueued{JobID: id, UserID: owner, Scheduler: "local", SchedulerJobID: fmt.Sprint(seq),
			FromStatus: events.JobStatusSubmitted, ToStatus: events.JobStatusQueued}
	}
	lc, err := events.NewEvent(p, meta)
	require.NoError(t, err)
	audit, err := events.NewEvent(events.AuditActionRecorded{AuditID: "a-" + lc.EventID, Action: events.AuditActionUpdate,
		ActorUserID: owner, ActorRole: "user", ResourceType: "job", ResourceID: id, Outcome: events.AuditOutcomeSuccess},
		events.Meta{Producer: "job-orchestrator", UserID: owner, CorrelationID: id, CausationID: lc.EventID})
	require.NoError(t, err)
	evs := []events.Event{lc, audit}
	if seq == 4 {
		me, err := events.NewEvent(events.JobMetricsRecorded{JobID: id, TaccSystem: events.TaccSystemOther, UserID: owner, Agent: "AlphaCal", Final: true}, meta)
		require.NoError(t, err)
		evs = append(evs, me)
	}
	return evs
}

func (w *writer) remember(jobID string, evs []events.Event) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, ev := range evs {
		id := ev.EventID
		w.order[jobID] = append(w.order[jobID], id)
		w.topic[id] = ev.Topic()
		w.all[id] = struct{}{}
		if ev.Topic() == events.TopicJobLifecycle {
			w.amqp[jobID] = append(w.amqp[jobID], id)
		}
	}
}

// job writes one job: its creation and three transitions (4 commits, 9 events).
func (w *writer) job(t testing.TB, s *jobStore, id, owner string) {
	for seq := int64(1); seq <= 4; seq++ {
		evs := w.records(t, id, owner, seq)
		s.commit(t, id, owner, evs)
		w.remember(id, evs)
	}
}

// verifyKafka checks that every written event is on Kafka exactly once and
// that each job's events of one topic are in the order written.
func (w *writer) verifyKafka(t *testing.T, brokers []string, prefix string) {
	t.Helper()
	seen := map[string]int{}
	perJob := map[string][]string{}
	for _, topic := range []string{events.TopicJobLifecycle, events.TopicAuditTrail, events.TopicJobMetrics} {
		for _, m := range relaytest.ReadTopic(t, brokers, prefix+topic) {
			id := m.Header(events.HeaderEventID)
			seen[id]++
			perJob[topic+"/"+m.Key] = append(perJob[topic+"/"+m.Key], id)
		}
	}
	for id := range w.all {
		require.Equal(t, 1, seen[id], "event %s (%s) published once", id, w.topic[id])
	}
	require.Len(t, seen, len(w.all), "nothing else published")
	for job, ids := range w.order {
		for _, topic := range []string{events.TopicJobLifecycle, events.TopicAuditTrail, events.TopicJobMetrics} {
			var want []string
			for _, id := range ids {
				if w.topic[id] == topic {
					want = append(want, id)
				}
			}
			require.Equal(t, want, perJob[topic+"/"+job], "order of job %s on %s", job, topic)
		}
	}
}

func (w *writer) verifyAMQP(t *testing.T, q *relaytest.Queue) {
	t.Helper()
	want := 0
	for _, ids := range w.amqp {
		want += len(ids)
	}
	require.Eventually(t, func() bool { return len(q.Messages()) >= want }, 30*time.Second, 20*time.Millisecond)
	perJob := map[string][]string{}
	seen := map[string]int{}
	byID := map[string]string{}
	for job, ids := range w.amqp {
		for _, id := range ids {
			byID[id] = job
		}
	}
	for _, m := range q.Messages() {
		id := m.Header(events.HeaderEventID)
		seen[id]++
		perJob[byID[id]] = append(perJob[byID[id]], id)
	}
	for job, ids := range w.amqp {
		require.Equal(t, ids, perJob[job], "RabbitMQ order of job %s", job)
		for _, id := range ids {
			require.Equal(t, 1, seen[id])
		}
	}
}

type brokers struct {
	kafka     []string
	amqpURL   string
	producer  *kafkabus.Producer
	publisher *amqpbus.Publisher
}

func connect(t testing.TB) brokers {
	t.Helper()
	b := brokers{kafka: testinfra.KafkaBrokers(t), amqpURL: testinfra.AMQPURL(t)}
	var err error
	b.producer, err = kafkabus.NewProducer(kafkabus.DefaultProducerConfig(kafkabus.Connection{Brokers: b.kafka}), discard(), nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.producer.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := amqpbus.Dial(ctx, amqpbus.DefaultConfig(b.amqpURL), discard(), nil)
	require.NoError(t, err)
	b.publisher, err = amqpbus.NewPublisher(conn, amqpbus.DefaultPublisherConfig(), discard(), nil)
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = b.publisher.Close()
		_ = conn.Close()
	})
	return b
}

func startRelay(t testing.TB, cfg outbox.RelayConfig, s *jobStore, b brokers) *outbox.Relay {
	t.Helper()
	return runRelay(t, cfg, s, b.producer, b.publisher)
}

// runRelay starts a relay over the given publishers and stops it when t ends.
func runRelay(t testing.TB, cfg outbox.RelayConfig, s outbox.RelayStore, kafka outbox.KafkaPublisher, amqp outbox.AMQPPublisher) *outbox.Relay {
	t.Helper()
	r, err := outbox.NewRelay(cfg, s, kafka, amqp, discard(), nil)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	return r
}

func waitDrained(t testing.TB, s *jobStore) {
	t.Helper()
	require.Eventually(t, func() bool {
		n, err := s.OutboxBacklog(context.Background())
		return err == nil && n == 0
	}, 60*time.Second, 20*time.Millisecond)
}

func TestRelayPublishesEveryEventOnceInJobOrder(t *testing.T) {
	t.Parallel()
	b := connect(t)
	for _, d := range sqlstoretest.Databases(t) {
		t.Run(d.Name, func(t *testing.T) {
			t.Parallel()
			prefix := relaytest.RandomName(t, "relaytest-") + "-"
			relaytest.EnsureTopics(t, b.kafka, prefix)
			owner := relaytest.RandomName(t, "user-")
			q := relaytest.BindQueue(t, b.amqpURL, amqpbus.UserPattern(owner))

			db := d.Open(t)
			wake := make(chan struct{}, 1)
			s := openStore(t, db, wake)
			w := newWriter()
			for i := range 3 {
				w.job(t, s, fmt.Sprintf("%s-before-%d", owner, i), owner)
			}
			cfg := outbox.DefaultRelayConfig()
			cfg.TopicPrefix, cfg.Wake, cfg.BatchJobs = prefix, wake, 2
			startRelay(t, cfg, s, b)
			for i := range 3 {
				w.job(t, s, fmt.Sprintf("%s-during-%d", owner, i), owner)
			}
			waitDrained(t, s)

			w.verifyKafka(t, b.kafka, prefix)
			w.verifyAMQP(t, q)
			total := int64(len(w.all))
			require.Equal(t, total, sqlstoretest.Count(t, db, "SELECT COUNT(*) FROM outbox WHERE sent_at IS NOT NULL AND published_kafka_at IS NOT NULL AND claimed_by IS NULL"))
			require.EqualValues(t, 6*4, sqlstoretest.Count(t, db, "SELECT COUNT(*) FROM outbox_amqp WHERE published_at IS NOT NULL"))
			require.Zero(t, sqlstoretest.Count(t, db, "SELECT COUNT(*) FROM outbox WHERE attempts > 0"))
		})
	}
}

func TestTwoRelaysOnOnePostgreSQL(t *testing.T) {
	t.Parallel()
	b := connect(t)
	var pg sqlstoretest.NamedDB
	for _, d := range sqlstoretest.Databases(t) {
		if d.Dialect == sqlstore.DialectPostgres {
			pg = d
		}
	}
	url := pg.URL(t)
	prefix := relaytest.RandomName(t, "relaytest-") + "-"
	relaytest.EnsureTopics(t, b.kafka, prefix)
	owner := relaytest.RandomName(t, "user-")
	q := relaytest.BindQueue(t, b.amqpURL, amqpbus.UserPattern(owner))

	// Two replicas: each its own pool, store and relay.
	var stores []*jobStore
	for i := range 2 {
		wake := make(chan struct{}, 1)
		s := openStore(t, sqlstoretest.OpenURL(t, url), wake)
		stores = append(stores, s)
		cfg := outbox.DefaultRelayConfig()
		cfg.ID = fmt.Sprintf("replica-%d", i)
		cfg.TopicPrefix, cfg.Wake, cfg.BatchJobs, cfg.Concurrency, cfg.PollInterval = prefix, wake, 3, 2, 10*time.Millisecond
		startRelay(t, cfg, s, b)
	}
	w := newWriter()
	var wg sync.WaitGroup
	for i := range 24 {
		wg.Go(func() { w.job(t, stores[i%2], fmt.Sprintf("%s-%02d", owner, i), owner) })
	}
	wg.Wait()
	waitDrained(t, stores[0])
	w.verifyKafka(t, b.kafka, prefix)
	w.verifyAMQP(t, q)
}

// flakyKafka fails every third publish, then delegates to ordered recording.
type flakyKafka struct {
	mu    sync.Mutex
	n     int
	got   []string
	calls int
}

var errBroker = errors.New("broker unavailable")

func (k *flakyKafka) Publish(_ context.Context, m *bus.Message) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.calls++
	if k.calls%3 == 0 {
		return errBroker
	}
	k.got = append(k.got, m.Header(events.HeaderEventID))
	return nil
}

// TestRelayRetriesInOrder: broker errors never reorder a job's events nor
// drop one; the failed event is retried before the ones after it.
func TestRelayRetriesInOrder(t *testing.T) {
	t.Parallel()
	db := sqlstoretest.Databases(t)[0].Open(t)
	s := openStore(t, db, nil)
	w := newWriter()
	w.job(t, s, "job-1", "alice")
	k := &flakyKafka{}
	cfg := outbox.DefaultRelayConfig()
	cfg.BackoffMin, cfg.BackoffMax = time.Millisecond, 5*time.Millisecond
	r, err := outbox.NewRelay(cfg, s, k, nil, discard(), nil)
	require.NoError(t, err)
	ctx := context.Background()
	passes := 0
	for {
		n, err := s.OutboxBacklog(ctx)
		require.NoError(t, err)
		if n == 0 {
			break
		}
		if r.Pass(ctx).Jobs == 0 {
			time.Sleep(time.Millisecond) // the job's backoff after a failure
		}
		passes++
		require.Less(t, passes, 1000)
	}
	require.Equal(t, w.order["job-1"], k.got)
	require.Greater(t, sqlstoretest.Count(t, db, "SELECT SUM(attempts) FROM outbox"), int64(0))
}
