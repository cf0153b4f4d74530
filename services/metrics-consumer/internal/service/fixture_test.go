package service_test

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/kafkabus"
	"github.com/cosmic-horizons/fleet/libs/kafkabus/kafkabustest"
	"github.com/cosmic-horizons/fleet/libs/sqlstore"
	"github.com/cosmic-horizons/fleet/libs/sqlstore/sqlstoretest"
	"github.com/cosmic-horizons/fleet/libs/testinfra"
	"github.com/cosmic-horizons/fleet/services/metrics-consumer/internal/adapters"
	"github.com/cosmic-horizons/fleet/services/metrics-consumer/internal/domain"
)

const (
	pkgDir   = "../../cmd/metrics-consumer"
	waitLong = 90 * time.Second
	// authSecret is the HS256 secret the service verifies callers' JWTs with.
	authSecret = "metrics-consumer-test-secret-0123456789"
)

// fixture is a private pair of lifecycle and metrics topics (with their
// dead-letter topics), a consumer group and a SQLite store for one test.
type fixture struct {
	conn               kafkabus.Connection
	lifecycle, metrics string
	group, databaseURL string
	codec              *events.Codec
	producer           *kafkabus.Producer
	mu                 sync.Mutex
	published          map[string]bool // event ids
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	conn := kafkabus.Connection{Brokers: testinfra.KafkaBrokers(t), ClientID: "metrics-consumer-test"}
	f := &fixture{
		conn: conn, lifecycle: kafkabustest.Name("test-mc-lifecycle"), metrics: kafkabustest.Name("test-mc-metrics"),
		group: kafkabustest.Name("test-mc"), databaseURL: "sqlite://" + filepath.Join(t.TempDir(), "metrics.db"),
		published: map[string]bool{},
	}
	kafkabustest.TopicsWithDLQ(t, conn.Brokers, 4, f.lifecycle, f.metrics)
	var err error
	f.codec, err = events.NewCodec()
	require.NoError(t, err)
	f.producer, err = kafkabus.NewProducer(kafkabus.DefaultProducerConfig(conn), slog.New(slog.DiscardHandler), nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = f.producer.Close() })
	return f
}

// env is the service environment reading the fixture's topics and store.
func (f *fixture) env() map[string]string {
	return map[string]string{
		"KAFKA_BROKERS":     strings.Join(f.conn.Brokers, ","),
		"METRICS_TOPICS":    events.TopicJobLifecycle + "=" + f.lifecycle + "," + events.TopicJobMetrics + "=" + f.metrics,
		"METRICS_GROUP":     f.group,
		"DATABASE_URL":      f.databaseURL,
		"LOG_LEVEL":         "info",
		"AUTH_HS256_SECRET": authSecret,
	}
}

func (f *fixture) envList() []string {
	var out []string
	for k, v := range f.env() {
		out = append(out, k+"="+v)
	}
	return out
}

// message encodes ev for the fixture's topics.
func (f *fixture) message(t testing.TB, ev events.Event) *bus.Message {
	m, err := f.codec.Message(ev)
	require.NoError(t, err)
	switch m.Topic {
	case events.TopicJobLifecycle:
		m.Topic = f.lifecycle
	case events.TopicJobMetrics:
		m.Topic = f.metrics
	}
	return m
}

// publish sends msgs and waits for every acknowledgement.
func (f *fixture) publish(t testing.TB, msgs []*bus.Message) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, len(msgs))
	for _, m := range msgs {
		wg.Add(1)
		require.NoError(t, f.producer.PublishAsync(context.Background(), m, func(err error) {
			if err != nil {
				errs <- err
			}
			wg.Done()
		}))
		f.mu.Lock()
		if id := m.Header(events.HeaderEventID); id != "" {
			f.published[id] = true
		}
		f.mu.Unlock()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
}

func (f *fixture) publishEvents(t testing.TB, evs []events.Event) {
	t.Helper()
	msgs := make([]*bus.Message, len(evs))
	for i, ev := range evs {
		msgs[i] = f.message(t, ev)
	}
	f.publish(t, msgs)
}

// uniqueEvents is the number of distinct event ids published.
func (f *fixture) uniqueEvents() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return int64(len(f.published))
}

func (f *fixture) openDB(t testing.TB) *sqlstore.DB {
	t.Helper()
	return sqlstoretest.OpenURL(t, f.databaseURL)
}

// processed counts the events the store applied.
func processed(t testing.TB, db *sqlstore.DB) int64 {
	t.Helper()
	return sqlstoretest.Count(t, db, "SELECT count(*) FROM inbox_processed")
}

// waitProcessed waits until the store applied n events.
func waitProcessed(t testing.TB, db *sqlstore.DB, n int64) {
	t.Helper()
	require.Eventually(t, func() bool {
		var c int64
		err := db.Writer().QueryRow("SELECT count(*) FROM inbox_processed").Scan(&c)
		return err == nil && c == n
	}, waitLong, 50*time.Millisecond, "store did not reach %d processed events", n)
}

func dump(t testing.TB, db *sqlstore.DB) []*domain.Job {
	t.Helper()
	jobs, err := adapters.NewJobRepository(db).Jobs(context.Background())
	require.NoError(t, err)
	return jobs
}

// fold computes the job records of evs directly with the domain.
func fold(evs []events.Event) map[string]*domain.Job {
	out := map[string]*domain.Job{}
	for _, ev := range evs {
		id := domain.JobID(ev)
		if out[id] == nil {
			out[id] = domain.NewJob(id)
		}
		out[id].Apply(ev)
	}
	return out
}

func slogDiscard() *slog.Logger { return slog.New(slog.DiscardHandler) }

func fmtSscan(s string, v *float64) (int, error) { return fmt.Sscan(s, v) }
