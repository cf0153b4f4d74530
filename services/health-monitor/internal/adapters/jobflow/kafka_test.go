package jobflow_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/kafkabus"
	"github.com/cosmic-horizons/fleet/libs/kafkabus/kafkabustest"
	"github.com/cosmic-horizons/fleet/libs/testinfra"
	"github.com/cosmic-horizons/fleet/services/health-monitor/internal/adapters/jobflow"
	"github.com/cosmic-horizons/fleet/services/health-monitor/internal/domain"
)

type observed struct {
	mu  sync.Mutex
	got []domain.JobTransition
}

func (o *observed) Observe(t domain.JobTransition) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.got = append(o.got, t)
}

func (o *observed) transitions() []domain.JobTransition {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]domain.JobTransition(nil), o.got...)
}

// While Kafka cannot be reached (here: no producer for dead letters yet) the
// consumer keeps trying; once it can, it joins and feeds transitions.
func TestConsumerRetriesUntilKafkaAnswers(t *testing.T) {
	brokers := testinfra.KafkaBrokers(t)
	conn := kafkabus.Connection{Brokers: brokers}
	topic := kafkabustest.Name("job-lifecycle-jobflow")
	kafkabustest.TopicsWithDLQ(t, brokers, 2, topic)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	producer, err := kafkabus.NewProducer(kafkabus.DefaultProducerConfig(conn), slog.New(slog.DiscardHandler), nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = producer.Close() })
	var attempts atomic.Int32
	source := func() (*kafkabus.Producer, error) {
		if attempts.Add(1) <= 2 {
			return nil, errors.New("kafka unreachable")
		}
		return producer, nil
	}
	codec, err := events.NewCodec()
	require.NoError(t, err)
	obs := &observed{}
	c := jobflow.NewConsumer(jobflow.Config{Connection: conn, Topic: topic, Group: topic + "-group",
		Retry: bus.RetryPolicy{MaxAttempts: 1, InitialBackoff: 20 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}},
		source, codec, obs, slog.New(slog.DiscardHandler), nil)
	require.False(t, c.Consuming())

	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(runCtx) }()
	require.Eventually(t, c.Consuming, time.Minute, 50*time.Millisecond)
	require.EqualValues(t, 3, attempts.Load(), "two failed attempts, then the consumer")

	ev, err := events.NewEvent(events.JobFailed{JobID: "j-1", UserID: "u", ErrorCode: "TIMEOUT",
		FromStatus: events.JobStatusRunning, ToStatus: events.JobStatusFailed}, events.Meta{Producer: "job-orchestrator", UserID: "u", Sequence: 4})
	require.NoError(t, err)
	msg, err := codec.Message(ev)
	require.NoError(t, err)
	msg.Topic = topic // a prefixed copy of job-lifecycle decodes all the same
	require.NoError(t, producer.Publish(ctx, msg))
	require.Eventually(t, func() bool { return len(obs.transitions()) == 1 }, 30*time.Second, 20*time.Millisecond)
	got := obs.transitions()[0]
	require.Equal(t, domain.JobTransition{JobID: "j-1", To: domain.JobFailed, At: ev.OccurredAt, ErrorCode: "TIMEOUT"}, got)

	stop()
	require.NoError(t, <-done)
	require.False(t, c.Consuming(), "not consuming after Run returned")
}
