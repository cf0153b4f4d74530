package kafkabus_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/kafkabus"
	"github.com/cosmic-horizons/fleet/libs/kafkabus/kafkabustest"
	"github.com/cosmic-horizons/fleet/libs/telemetry"
)

func TestEnsureTopics(t *testing.T) {
	t.Parallel()
	conn := kafkaConn(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	logger := testLogger(t)
	name := kafkabustest.Name("test-ensure")
	spec := topicSpec(name, 3)
	t.Cleanup(func() { require.NoError(t, kafkabus.DeleteTopics(context.Background(), conn, name)) })

	// Verify-only changes nothing: the missing topic is reported, not created.
	report, err := kafkabus.EnsureTopics(ctx, conn.Brokers, []events.TopicSpec{spec}, logger, kafkabus.EnsureOptions{VerifyOnly: true})
	require.ErrorIs(t, err, kafkabus.ErrTopicMismatch)
	require.ErrorContains(t, err, name+" (missing)")
	require.Equal(t, []string{name}, report.Missing)
	require.Empty(t, report.Created)
	require.Contains(t, report.String(), "missing: "+name)
	report, err = kafkabus.EnsureTopics(ctx, conn.Brokers, []events.TopicSpec{spec}, logger, kafkabus.EnsureOptions{VerifyOnly: true})
	require.ErrorIs(t, err, kafkabus.ErrTopicMismatch)
	require.Equal(t, []string{name}, report.Missing, "verify-only created the topic")

	report, err = kafkabus.EnsureTopics(ctx, conn.Brokers, []events.TopicSpec{spec}, logger)
	require.NoError(t, err)
	require.Equal(t, []string{name}, report.Created)
	require.Empty(t, report.OK)

	report, err = kafkabus.EnsureTopics(ctx, conn.Brokers, []events.TopicSpec{spec}, logger)
	require.NoError(t, err)
	require.Equal(t, []string{name}, report.OK)
	require.Empty(t, report.Created)

	tests := []struct {
		name        string
		mutate      func(*events.TopicSpec)
		wantProblem []string
		wantFixable bool
	}{
		{
			name:        "more partitions wanted",
			mutate:      func(s *events.TopicSpec) { s.Partitions = 6 },
			wantProblem: []string{"partitions: have 3, want 6"},
		},
		{
			name:        "retention and compression differ",
			mutate:      func(s *events.TopicSpec) { s.Retention = 2 * time.Hour; s.Compression = "lz4" },
			wantProblem: []string{`retention.ms: have "3600000", want "7200000"`, `compression.type: have "zstd", want "lz4"`},
			wantFixable: true,
		},
		{
			name:        "replication factor differs",
			mutate:      func(s *events.TopicSpec) { s.ReplicationFactor = 3 },
			wantProblem: []string{"replication factor: have 1, want 3"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := spec
			tt.mutate(&want)
			report, err := kafkabus.EnsureTopics(ctx, conn.Brokers, []events.TopicSpec{want}, logger)
			require.ErrorIs(t, err, kafkabus.ErrTopicMismatch)
			require.Len(t, report.Mismatched, 1)
			require.Equal(t, name, report.Mismatched[0].Topic)
			require.Equal(t, tt.wantProblem, report.Mismatched[0].Problems)
			require.Equal(t, tt.wantFixable, report.Mismatched[0].Fixable)
			require.Contains(t, report.String(), "mismatch "+name)
		})
	}

	// Apply alters configs but leaves the partition count alone.
	altered := spec
	altered.Retention = 2 * time.Hour
	report, err = kafkabus.EnsureTopics(ctx, conn.Brokers, []events.TopicSpec{altered}, logger, kafkabus.EnsureOptions{Apply: true})
	require.NoError(t, err)
	require.Equal(t, []string{name}, report.Altered)
	require.Eventually(t, func() bool {
		report, err := kafkabus.EnsureTopics(ctx, conn.Brokers, []events.TopicSpec{altered}, logger)
		return err == nil && len(report.OK) == 1
	}, waitLong, 100*time.Millisecond)

	altered.Partitions = 4
	report, err = kafkabus.EnsureTopics(ctx, conn.Brokers, []events.TopicSpec{altered}, logger, kafkabus.EnsureOptions{Apply: true})
	require.ErrorIs(t, err, kafkabus.ErrTopicMismatch)
	require.Equal(t, []string{"partitions: have 3, want 4"}, report.Mismatched[0].Problems)
}

func TestPublishConsumeRoundTrip(t *testing.T) {
	t.Parallel()
	conn := kafkaConn(t)
	topic := newTopic(t, conn, "roundtrip", 4)
	reg := prometheus.NewRegistry()
	producer, err := kafkabus.NewProducer(kafkabus.DefaultProducerConfig(conn), testLogger(t), reg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, producer.Close()) })

	const n = 40
	ctx := telemetry.WithCorrelationID(context.Background(), "corr-roundtrip")
	var acked atomic.Int32
	for i := range n {
		msg := &bus.Message{
			Topic: topic,
			Key:   fmt.Sprintf("job-%d", i%5),
			Value: []byte(strconv.Itoa(i)),
			Headers: map[string]string{
				bus.HeaderEventType:   "JobSubmitted",
				bus.HeaderContentType: bus.ContentTypeAvro,
			},
		}
		if i%2 == 0 {
			require.NoError(t, producer.Publish(ctx, msg))
			acked.Add(1)
			continue
		}
		require.NoError(t, producer.PublishAsync(ctx, msg, func(err error) {
			if err == nil {
				acked.Add(1)
			}
		}))
	}
	require.Eventually(t, func() bool { return acked.Load() == n }, waitLong, 10*time.Millisecond)

	got := newCollector()
	c := startConsumerWith(t, testConsumerConfig(conn, producer, "g-"+topic, topic), reg, func(ctx context.Context, m *bus.Message) error {
		m.SetHeader("seen_correlation_id", telemetry.CorrelationID(ctx))
		got.add(string(m.Value), m)
		return nil
	})
	require.Eventually(t, func() bool { return got.unique() == n }, waitLong, 10*time.Millisecond)
	require.True(t, c.Ready())
	require.NoError(t, c.Check(context.Background()))

	msgs, counts := got.snapshot()
	partitionOf := map[string]int32{}
	for _, m := range msgs {
		require.Equal(t, topic, m.Topic)
		require.Equal(t, "JobSubmitted", m.Header(bus.HeaderEventType))
		require.Equal(t, bus.ContentTypeAvro, m.Header(bus.HeaderContentType))
		require.Equal(t, "corr-roundtrip", m.Header("seen_correlation_id"))
		require.NotZero(t, m.Timestamp)
		require.Equal(t, 1, m.Attempt)
		i, err := strconv.Atoi(string(m.Value))
		require.NoError(t, err)
		require.Equal(t, fmt.Sprintf("job-%d", i%5), m.Key)
		if p, ok := partitionOf[m.Key]; ok {
			require.Equal(t, p, m.Partition, "key %s moved partition", m.Key)
		}
		partitionOf[m.Key] = m.Partition
	}
	for id, count := range counts {
		require.Equal(t, 1, count, "message %s", id)
	}

	require.Equal(t, float64(n), metricValue(t, reg, "fleet_kafka_messages_published_total", map[string]string{"topic": topic}))
	require.Equal(t, float64(n), metricValue(t, reg, "fleet_kafka_publish_duration_seconds", map[string]string{"topic": topic}))
	require.Equal(t, float64(n), metricValue(t, reg, "fleet_kafka_messages_consumed_total", map[string]string{"topic": topic, "outcome": "ok"}))
	require.Equal(t, float64(n), metricValue(t, reg, "fleet_kafka_handler_duration_seconds", map[string]string{"topic": topic}))
	require.Zero(t, metricValue(t, reg, "fleet_kafka_publish_failures_total", map[string]string{"topic": topic}))
}

func TestPublishAfterClose(t *testing.T) {
	t.Parallel()
	conn := kafkaConn(t)
	p, err := kafkabus.NewProducer(kafkabus.DefaultProducerConfig(conn), testLogger(t), nil)
	require.NoError(t, err)
	require.NoError(t, p.Close())
	require.NoError(t, p.Close(), "Close is idempotent")
	err = p.Publish(context.Background(), &bus.Message{Topic: "any", Value: []byte("x")})
	require.ErrorIs(t, err, kafkabus.ErrProducerClosed)
}

func TestPerKeyOrdering(t *testing.T) {
	t.Parallel()
	conn := kafkaConn(t)
	topic := newTopic(t, conn, "ordering", 6)
	producer := newProducer(t, kafkabus.DefaultProducerConfig(conn))

	const producers, keysPer, seqs = 8, 50, 20
	const total = producers * keysPer * seqs

	var mu sync.Mutex
	next := map[string]int{}
	var handled atomic.Int32
	var orderErr atomic.Value
	startConsumer(t, testConsumerConfig(conn, producer, "g-"+topic, topic), func(_ context.Context, m *bus.Message) error {
		seq, err := strconv.Atoi(string(m.Value))
		if err != nil {
			return bus.Permanent(err)
		}
		mu.Lock()
		defer mu.Unlock()
		if want := next[m.Key]; seq != want {
			orderErr.CompareAndSwap(nil, fmt.Sprintf("key %s: got sequence %d, want %d", m.Key, seq, want))
		}
		next[m.Key] = seq + 1
		handled.Add(1)
		return nil
	})

	var wg sync.WaitGroup
	var failed atomic.Int32
	for g := range producers {
		wg.Go(func() {
			for seq := range seqs {
				for k := range keysPer {
					wg.Add(1)
					msg := &bus.Message{Topic: topic, Key: fmt.Sprintf("p%d-k%d", g, k), Value: []byte(strconv.Itoa(seq))}
					err := producer.PublishAsync(context.Background(), msg, func(err error) {
						if err != nil {
							failed.Add(1)
						}
						wg.Done()
					})
					if err != nil {
						failed.Add(1)
						wg.Done()
					}
				}
			}
		})
	}
	wg.Wait()
	require.Zero(t, failed.Load())

	require.Eventually(t, func() bool { return handled.Load() >= total }, waitLong, 20*time.Millisecond)
	require.Nil(t, orderErr.Load())
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, next, producers*keysPer)
	for key, n := range next {
		require.Equal(t, seqs, n, "key %s", key)
	}
	require.EqualValues(t, total, handled.Load())
}

func TestConsumerResumesFromCommittedOffset(t *testing.T) {
	t.Parallel()
	conn := kafkaConn(t)
	topic := newTopic(t, conn, "resume", 3)
	producer := newProducer(t, kafkabus.DefaultProducerConfig(conn))
	const n = 1500
	publishN(t, producer, topic, 0, n)

	group := "g-" + topic
	got := newCollector()
	handler := func(_ context.Context, m *bus.Message) error {
		got.add(string(m.Value), m)
		time.Sleep(100 * time.Microsecond)
		return nil
	}
	first := startConsumer(t, testConsumerConfig(conn, producer, group, topic), handler)
	require.Eventually(t, func() bool { return got.total() >= n/3 }, waitLong, time.Millisecond)
	first.stop(t)
	stoppedAt := got.total()
	require.Less(t, stoppedAt, n, "the first consumer should stop mid-stream")

	second := startConsumer(t, testConsumerConfig(conn, producer, group, topic), handler)
	require.Eventually(t, func() bool { return got.unique() == n }, waitLong, 10*time.Millisecond)
	second.stop(t)

	_, counts := got.snapshot()
	require.Len(t, counts, n)
	for id, count := range counts {
		require.Equal(t, 1, count, "message %s handled more than once", id)
	}
	t.Logf("first run handled %d messages, second run %d", stoppedAt, got.total()-stoppedAt)
}

// publishN publishes values from..to-1 keyed by value modulo 97 and waits for all acks.
func publishN(t testing.TB, p *kafkabus.Producer, topic string, from, to int) {
	t.Helper()
	require.NoError(t, tryPublishN(p, topic, from, to))
}

// tryPublishN is publishN for goroutines other than the test's.
func tryPublishN(p *kafkabus.Producer, topic string, from, to int) error {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		errs = append(errs, err)
	}
	for i := from; i < to; i++ {
		wg.Add(1)
		msg := &bus.Message{Topic: topic, Key: "k" + strconv.Itoa(i%97), Value: []byte(strconv.Itoa(i))}
		err := p.PublishAsync(context.Background(), msg, func(err error) {
			if err != nil {
				fail(err)
			}
			wg.Done()
		})
		if err != nil {
			fail(err)
			wg.Done()
		}
	}
	wg.Wait()
	return errors.Join(errs...)
}

func TestPoisonMessageGoesToDLQ(t *testing.T) {
	t.Parallel()
	conn := kafkaConn(t)
	topic := newTopic(t, conn, "poison", 1)
	producer := newProducer(t, kafkabus.DefaultProducerConfig(conn))
	group := "g-" + topic

	var mu sync.Mutex
	handled := []string{}
	attemptsOfFlaky := 0
	startConsumer(t, testConsumerConfig(conn, producer, group, topic), func(_ context.Context, m *bus.Message) error {
		mu.Lock()
		defer mu.Unlock()
		switch string(m.Value) {
		case "m3":
			return bus.Permanent(errors.New("decode: bad magic byte"))
		case "m5":
			attemptsOfFlaky++
			if m.Attempt == 1 {
				return errors.New("database busy")
			}
		}
		handled = append(handled, string(m.Value))
		return nil
	})

	dead := newCollector()
	startConsumer(t, testConsumerConfig(conn, producer, "g-dlq-"+topic, events.DLQTopic(topic)), func(_ context.Context, m *bus.Message) error {
		dead.add(string(m.Value), m)
		return nil
	})

	for i := range 10 {
		require.NoError(t, producer.Publish(context.Background(), &bus.Message{
			Topic: topic, Key: "job-7", Value: []byte(fmt.Sprintf("m%d", i)),
			Headers: map[string]string{bus.HeaderEventType: "JobStateChanged"},
		}))
	}

	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(handled) == 9
	}, waitLong, 10*time.Millisecond)
	require.Eventually(t, func() bool { return dead.unique() == 1 }, waitLong, 10*time.Millisecond)

	mu.Lock()
	require.Equal(t, []string{"m0", "m1", "m2", "m4", "m5", "m6", "m7", "m8", "m9"}, handled)
	require.Equal(t, 2, attemptsOfFlaky, "the transient failure is retried once")
	mu.Unlock()

	msgs, _ := dead.snapshot()
	require.Len(t, msgs, 1)
	dl := msgs[0]
	require.Equal(t, "m3", string(dl.Value))
	require.Equal(t, "job-7", dl.Key)
	require.Equal(t, "JobStateChanged", dl.Header(bus.HeaderEventType))
	require.Contains(t, dl.Header(bus.HeaderDLQError), "decode: bad magic byte")
	require.Equal(t, topic, dl.Header(bus.HeaderDLQTopic))
	require.Equal(t, "0", dl.Header(bus.HeaderDLQPartition))
	require.Equal(t, "3", dl.Header(bus.HeaderDLQOffset))
	require.Equal(t, "1", dl.Header(bus.HeaderDLQAttempts))
	require.Equal(t, group, dl.Header(bus.HeaderDLQGroup))
	failedAt, err := time.Parse(time.RFC3339Nano, dl.Header(bus.HeaderDLQFailedAt))
	require.NoError(t, err)
	require.WithinDuration(t, time.Now(), failedAt, time.Minute)
}

func TestTraceContextPropagates(t *testing.T) {
	t.Parallel()
	conn := kafkaConn(t)
	topic := newTopic(t, conn, "trace", 2)
	recorder := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder))
	t.Cleanup(func() { require.NoError(t, tp.Shutdown(context.Background())) })

	pcfg := kafkabus.DefaultProducerConfig(conn)
	pcfg.TracerProvider = tp
	producer := newProducer(t, pcfg)

	type seen struct {
		sc          trace.SpanContext
		correlation string
	}
	got := make(chan seen, 1)
	ccfg := testConsumerConfig(conn, producer, "g-"+topic, topic)
	ccfg.TracerProvider = tp
	startConsumer(t, ccfg, func(ctx context.Context, _ *bus.Message) error {
		got <- seen{sc: trace.SpanContextFromContext(ctx), correlation: telemetry.CorrelationID(ctx)}
		return nil
	})

	ctx, root := tp.Tracer("test").Start(context.Background(), "submit job")
	ctx = telemetry.WithCorrelationID(ctx, "corr-trace-1")
	require.NoError(t, producer.Publish(ctx, &bus.Message{Topic: topic, Key: "job-1", Value: []byte("x")}))
	root.End()

	var s seen
	select {
	case s = <-got:
	case <-time.After(waitLong):
		t.Fatal("message not handled")
	}
	require.True(t, s.sc.IsValid())
	require.Equal(t, root.SpanContext().TraceID(), s.sc.TraceID())
	require.NotEqual(t, root.SpanContext().SpanID(), s.sc.SpanID(), "the handler runs in its own consumer span")
	require.Equal(t, "corr-trace-1", s.correlation)

	require.Eventually(t, func() bool {
		for _, span := range recorder.Ended() {
			if span.SpanKind() == trace.SpanKindConsumer && span.Name() == "process "+topic {
				return span.SpanContext().TraceID() == root.SpanContext().TraceID()
			}
		}
		return false
	}, waitLong, 10*time.Millisecond)
	var kinds []trace.SpanKind
	for _, span := range recorder.Ended() {
		kinds = append(kinds, span.SpanKind())
	}
	require.Contains(t, kinds, trace.SpanKindProducer)
}

func TestRebalanceLosesNothing(t *testing.T) {
	t.Parallel()
	conn := kafkaConn(t)
	topic := newTopic(t, conn, "rebalance", 6)
	producer := newProducer(t, kafkabus.DefaultProducerConfig(conn))
	group := "g-" + topic

	got := newCollector()
	var byA, byB atomic.Int32
	handler := func(counter *atomic.Int32) bus.Handler {
		return func(_ context.Context, m *bus.Message) error {
			time.Sleep(200 * time.Microsecond)
			got.add(string(m.Value), m)
			counter.Add(1)
			return nil
		}
	}

	// Messages flow the whole time: a publisher runs until told to stop.
	stopPublishing := make(chan struct{})
	type result struct {
		n   int
		err error
	}
	published := make(chan result, 1)
	go func() {
		i := 0
		var err error
		defer func() { published <- result{n: i, err: err} }()
		ticker := time.NewTicker(time.Millisecond)
		defer ticker.Stop()
		for {
			select {
			case <-stopPublishing:
				return
			case <-ticker.C:
			}
			if err = tryPublishN(producer, topic, i, i+5); err != nil {
				return
			}
			i += 5
		}
	}()

	a := startConsumer(t, testConsumerConfig(conn, producer, group, topic), handler(&byA))
	require.Eventually(t, func() bool { return byA.Load() >= 300 }, waitLong, time.Millisecond)
	b := startConsumer(t, testConsumerConfig(conn, producer, group, topic), handler(&byB))
	require.Eventually(t, func() bool { return byB.Load() >= 300 }, waitLong, 5*time.Millisecond)
	close(stopPublishing)
	res := <-published
	require.NoError(t, res.err)
	total := res.n

	require.Eventually(t, func() bool { return got.unique() == total }, waitLong, 10*time.Millisecond)
	b.stop(t)
	a.stop(t)

	_, counts := got.snapshot()
	require.Len(t, counts, total)
	dups := 0
	for _, c := range counts {
		dups += c - 1
	}
	t.Logf("published %d, handled by A %d, by B %d, duplicates %d", total, byA.Load(), byB.Load(), dups)
	require.Zero(t, dups, "a clean rebalance commits every handled message")
}
