package kafkabus_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/kafkabus"
	"github.com/cosmic-horizons/fleet/libs/kafkabus/kafkabustest"
)

// An old consumer (job-lifecycle v1 only) meets the events of a newer
// producer (v2: JobCompleted gains two fields with defaults). The producer
// registers v2 on the schema topic before its first event; the consumer finds
// it there by the fingerprint, resolves it to v1 and handles every event.
// Nothing is dead-lettered.
func TestOldConsumerHandlesNewerSchemaThroughTheRegistry(t *testing.T) {
	t.Parallel()
	conn := kafkaConn(t)
	topic := newTopic(t, conn, "evolution", 3)
	schemaTopic := kafkabustest.Name("test-schemas")
	kafkabustest.Topics(t, conn.Brokers, 1, schemaTopic)

	writerV2, err := events.NewCodecWithConfig(events.CodecConfig{Schemas: os.DirFS("../events/testdata/evolution")})
	require.NoError(t, err)
	pcfg := kafkabus.DefaultProducerConfig(conn)
	pcfg.Schemas, pcfg.SchemaTopic = writerV2, schemaTopic
	producer := newProducer(t, pcfg)

	registry := kafkabus.NewSchemaRegistry(conn, schemaTopic, testLogger(t))
	t.Cleanup(func() { require.NoError(t, registry.Close()) })
	readerV1, err := events.NewCodecWithConfig(events.CodecConfig{Source: registry})
	require.NoError(t, err)

	var mu sync.Mutex
	handled := map[string]events.Event{}
	dlqProducer := newProducer(t, kafkabus.DefaultProducerConfig(conn))
	startConsumer(t, testConsumerConfig(conn, dlqProducer, "g-"+topic, topic), func(_ context.Context, m *bus.Message) error {
		m.Topic = events.TopicJobLifecycle // the test topic carries job-lifecycle events
		ev, err := readerV1.FromMessage(m)
		if err != nil {
			return err
		}
		mu.Lock()
		handled[ev.EventID] = ev
		mu.Unlock()
		return nil
	})
	dead := newCollector()
	startConsumer(t, testConsumerConfig(conn, dlqProducer, "g-dlq-"+topic, events.DLQTopic(topic)), func(_ context.Context, m *bus.Message) error {
		dead.add(fmt.Sprint(m.Offset), m)
		return nil
	})

	const n = 20
	sent := map[string]events.Event{}
	for i := range n {
		ev, err := events.NewEvent(events.JobCompleted{
			JobID: fmt.Sprintf("job-%d", i), UserID: "u-ada", RunTimeMS: int64(i), QueueWaitMS: 5, OutputLocation: "/scratch/out",
			FromStatus: events.JobStatusRunning, ToStatus: events.JobStatusCompleted,
		}, events.Meta{Producer: "job-orchestrator", UserID: "u-ada", Sequence: 4})
		require.NoError(t, err)
		msg, err := writerV2.Message(ev)
		require.NoError(t, err)
		msg.Topic = topic
		require.NoError(t, producer.Publish(context.Background(), msg))
		ev.SchemaVersion = 2
		sent[ev.EventID] = ev
	}

	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(handled) == n
	}, waitLong, 20*time.Millisecond)
	mu.Lock()
	for id, want := range sent {
		got := handled[id]
		want.OccurredAt = got.OccurredAt // microsecond precision on the wire
		require.Equal(t, want, got)
		require.WithinDuration(t, sent[id].OccurredAt, got.OccurredAt, time.Microsecond)
	}
	mu.Unlock()
	// The DLQ consumer has read to the end: nothing there.
	time.Sleep(time.Second)
	require.Zero(t, dead.total(), "nothing is dead-lettered")

	// The registry holds the v2 schema once, keyed by its fingerprint.
	fp := func() uint64 {
		for _, s := range writerV2.Schemas() {
			if s.Version == 2 {
				return s.Fingerprint
			}
		}
		return 0
	}()
	s, err := registry.LookupSchema(fp)
	require.NoError(t, err)
	require.Equal(t, events.TopicJobLifecycle, s.Topic)
	require.Equal(t, 2, s.Version)
	_, err = registry.LookupSchema(0xdeadbeef)
	require.ErrorIs(t, err, events.ErrSchemaNotFound)
}

// A registry whose brokers do not answer reports a transient error, which a
// consumer retries instead of dead-lettering.
func TestSchemaRegistryUnreachableIsTransient(t *testing.T) {
	t.Parallel()
	registry := kafkabus.NewSchemaRegistry(kafkabus.Connection{Brokers: []string{"127.0.0.1:1"}}, events.TopicSchemas, testLogger(t))
	t.Cleanup(func() { require.NoError(t, registry.Close()) })
	_, err := registry.LookupSchema(1)
	require.Error(t, err)
	require.NotErrorIs(t, err, events.ErrSchemaNotFound)

	codec, err := events.NewCodecWithConfig(events.CodecConfig{Source: registry})
	require.NoError(t, err)
	b, err := codec.Encode(mustEvent(t))
	require.NoError(t, err)
	b[2] ^= 0xff // a fingerprint no codec embeds
	_, err = codec.FromMessage(&bus.Message{Topic: events.TopicJobLifecycle, Value: b})
	require.ErrorIs(t, err, events.ErrSchemaUnavailable)
	require.False(t, bus.IsPermanent(err))
}

func mustEvent(t *testing.T) events.Event {
	t.Helper()
	ev, err := events.NewEvent(events.JobQueued{JobID: "j", UserID: "u", Scheduler: "local", SchedulerJobID: "1",
		FromStatus: events.JobStatusSubmitted, ToStatus: events.JobStatusQueued}, events.Meta{Producer: "job-orchestrator", UserID: "u"})
	require.NoError(t, err)
	return ev
}
