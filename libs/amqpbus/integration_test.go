package amqpbus_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/cosmic-horizons/fleet/libs/amqpbus"
	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/telemetry"
)

func fastRetry() bus.RetryPolicy {
	return bus.RetryPolicy{MaxAttempts: 3, InitialBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}
}

func newPublisher(t testing.TB, conn *amqpbus.Conn, cfg amqpbus.PublisherConfig, reg prometheus.Registerer) *amqpbus.Publisher {
	t.Helper()
	pub, err := amqpbus.NewPublisher(conn, cfg, testLogger(t), reg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, pub.Close()) })
	return pub
}

func TestTopologyIsIdempotent(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	first := dial(t, nil, reg)
	second := dial(t, nil, nil) // declares the same topology again
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()

	require.True(t, first.Connected())
	require.NoError(t, first.Check(ctx))
	require.NoError(t, second.Check(ctx))
	require.Equal(t, 1.0, metricValue(t, reg, "fleet_amqp_connected"))

	ch := rawChannel(t)
	for _, ex := range []string{amqpbus.ExchangeJobEvents, amqpbus.ExchangeNotifications, amqpbus.ExchangeDeadLetter} {
		require.NoError(t, ch.ExchangeDeclarePassive(ex, amqp.ExchangeTopic, true, false, false, false, nil), ex)
	}
	_, err := ch.QueueDeclarePassive(amqpbus.QueueDeadLetter, true, false, false, false, nil)
	require.NoError(t, err)

	spec := amqpbus.QueueSpec{
		Name:     uniqueName(t, "idem"),
		Durable:  true,
		Bindings: []amqpbus.Binding{{Exchange: amqpbus.ExchangeJobEvents, Pattern: amqpbus.UserPattern("nobody")}},
	}
	declareQueue(t, first, spec)
	require.NoError(t, first.DeclareQueue(ctx, spec), "declaring twice")
	require.NoError(t, second.DeclareQueue(ctx, spec), "declaring from another connection")

	changed := spec
	changed.MaxLength = 10
	require.ErrorContains(t, first.DeclareQueue(ctx, changed), "PRECONDITION_FAILED")
	require.NoError(t, first.DeclareQueue(ctx, spec), "the connection is still usable")

	require.NoError(t, second.Close())
	require.ErrorIs(t, second.Check(ctx), amqpbus.ErrClosed)
	require.False(t, second.Connected())
}

func TestRoutingPatterns(t *testing.T) {
	t.Parallel()
	conn := dial(t, nil, nil)
	pub := newPublisher(t, conn, amqpbus.PublisherConfig{}, nil)
	ch := rawChannel(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()

	suffix := randomSuffix(t)
	alice, bob := "alice.smith-"+suffix, "bob-"+suffix
	job1, job2, job3 := "j1-"+suffix, "j2-"+suffix, "j3-"+suffix
	events := []struct{ user, job, typ string }{
		{alice, job1, "job.running"},
		{alice, job2, "job.queued"},
		{bob, job3, "job.failed"},
		{alice, job1, "job.completed"},
	}

	queues := map[string]string{
		"one job":    amqpbus.JobPattern(job1),
		"one user":   amqpbus.UserPattern(alice),
		"event type": amqpbus.EventTypePattern("job.failed"),
		"every job":  amqpbus.AllJobsPattern,
	}
	names := map[string]string{}
	for label, pattern := range queues {
		name := uniqueName(t, "route")
		names[label] = name
		declareQueue(t, conn, amqpbus.QueueSpec{
			Name:     name,
			Bindings: []amqpbus.Binding{{Exchange: amqpbus.ExchangeJobEvents, Pattern: pattern}},
		})
	}

	for i, e := range events {
		msg := &bus.Message{Value: []byte(e.job), Headers: map[string]string{amqpbus.HeaderEventID: id(i)}}
		require.NoError(t, pub.Publish(ctx, amqpbus.ExchangeJobEvents, amqpbus.JobRoutingKey(e.user, e.job, e.typ), msg))
	}

	// Not a job event: no job pattern matches it.
	canary := &bus.Message{Value: []byte("canary"), Headers: map[string]string{amqpbus.HeaderEventID: id(4)}}
	require.NoError(t, pub.Publish(ctx, amqpbus.ExchangeJobEvents, "health.canary.route-test", canary))

	// A confirm means the message is in every matching queue already.
	ours := map[string]bool{id(0): true, id(1): true, id(2): true, id(3): true, id(4): true}
	tests := []struct {
		name string
		want []string
	}{
		{name: "one job", want: []string{id(0), id(3)}},
		{name: "one user", want: []string{id(0), id(1), id(3)}},
		{name: "event type", want: []string{id(2)}},
		{name: "every job", want: []string{id(0), id(1), id(2), id(3)}},
	}
	for _, tt := range tests {
		var got []string
		for _, d := range drain(t, ch, names[tt.name]) {
			if ours[d.MessageId] { // other publishers may share the broker
				got = append(got, d.MessageId)
			}
		}
		require.Equal(t, tt.want, got, tt.name)
	}
}

func TestPublishConsumeRoundTrip(t *testing.T) {
	t.Parallel()
	conn := dial(t, nil, nil)
	pub := newPublisher(t, conn, amqpbus.PublisherConfig{}, nil)
	queue := uniqueName(t, "roundtrip")
	job := "job-" + randomSuffix(t)
	declareQueue(t, conn, amqpbus.QueueSpec{
		Name:     queue,
		Durable:  true,
		Bindings: []amqpbus.Binding{{Exchange: amqpbus.ExchangeJobEvents, Pattern: amqpbus.JobPattern(job)}},
	})

	received := make(chan *bus.Message, 1)
	cons, err := amqpbus.NewConsumer(conn, amqpbus.ConsumerConfig{Queue: queue, Retry: fastRetry()},
		func(_ context.Context, msg *bus.Message) error {
			received <- msg
			return nil
		}, testLogger(t), nil)
	require.NoError(t, err)
	runConsumer(t, cons)

	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	key := amqpbus.JobRoutingKey("carol", job, "job.submitted")
	before := time.Now().Add(-time.Second)
	require.NoError(t, pub.Publish(ctx, amqpbus.ExchangeJobEvents, key, &bus.Message{
		Value: []byte("payload"),
		Headers: map[string]string{
			amqpbus.HeaderEventID: "evt-1",
			bus.HeaderEventType:   "job.submitted",
			bus.HeaderContentType: "application/json",
			"custom":              "value",
		},
	}))

	select {
	case msg := <-received:
		require.Equal(t, amqpbus.ExchangeJobEvents, msg.Topic)
		require.Equal(t, key, msg.Key)
		require.Equal(t, []byte("payload"), msg.Value)
		require.Equal(t, "evt-1", msg.Header(amqpbus.HeaderEventID))
		require.Equal(t, "evt-1", msg.Header(amqpbus.HeaderMessageID))
		require.Equal(t, "job.submitted", msg.Header(bus.HeaderEventType))
		require.Equal(t, "application/json", msg.Header(bus.HeaderContentType))
		require.Equal(t, "value", msg.Header("custom"))
		require.Equal(t, 1, msg.Attempt)
		require.WithinRange(t, msg.Timestamp, before, time.Now().Add(time.Second))
	case <-ctx.Done():
		t.Fatal("message not received")
	}
}

func TestTraceContextCrossesTheBroker(t *testing.T) {
	t.Parallel()
	recorder := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder))
	t.Cleanup(func() { require.NoError(t, tp.Shutdown(context.Background())) })

	conn := dial(t, nil, nil)
	pub := newPublisher(t, conn, amqpbus.PublisherConfig{TracerProvider: tp}, nil)
	queue := uniqueName(t, "trace")
	declareQueue(t, conn, amqpbus.QueueSpec{Name: queue, AutoDelete: true, Exclusive: true})

	type seen struct {
		span        trace.SpanContext
		correlation string
	}
	received := make(chan seen, 1)
	cons, err := amqpbus.NewConsumer(conn, amqpbus.ConsumerConfig{Queue: queue, Retry: fastRetry(), TracerProvider: tp},
		func(ctx context.Context, _ *bus.Message) error {
			received <- seen{span: trace.SpanContextFromContext(ctx), correlation: telemetry.CorrelationID(ctx)}
			return nil
		}, testLogger(t), nil)
	require.NoError(t, err)
	runConsumer(t, cons)

	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	ctx = telemetry.WithCorrelationID(ctx, "corr-42")
	ctx, parent := tp.Tracer("test").Start(ctx, "submit job")
	require.NoError(t, pub.Publish(ctx, "", queue, &bus.Message{Value: []byte("x")}))
	parent.End()

	var got seen
	select {
	case got = <-received:
	case <-ctx.Done():
		t.Fatal("message not received")
	}
	require.Equal(t, parent.SpanContext().TraceID(), got.span.TraceID())
	require.Equal(t, "corr-42", got.correlation)

	var send, process sdktrace.ReadOnlySpan
	require.Eventually(t, func() bool {
		for _, s := range recorder.Ended() {
			switch s.SpanKind() {
			case trace.SpanKindProducer:
				send = s
			case trace.SpanKindConsumer:
				process = s
			}
		}
		return send != nil && process != nil
	}, 5*time.Second, 10*time.Millisecond)
	require.Equal(t, parent.SpanContext().SpanID(), send.Parent().SpanID())
	require.Equal(t, send.SpanContext().SpanID(), process.Parent().SpanID())
	require.Equal(t, got.span.SpanID(), process.SpanContext().SpanID())
}

func TestPoisonMessageIsDeadLettered(t *testing.T) {
	t.Parallel()
	conn := dial(t, nil, nil)
	pub := newPublisher(t, conn, amqpbus.PublisherConfig{}, nil)
	job := "poison-" + randomSuffix(t)
	queue := uniqueName(t, "poison")
	declareQueue(t, conn, amqpbus.QueueSpec{
		Name:     queue,
		Durable:  true,
		Bindings: []amqpbus.Binding{{Exchange: amqpbus.ExchangeJobEvents, Pattern: amqpbus.JobPattern(job)}},
	})
	// Dead letters keep their routing key, so a private queue on dlx sees
	// exactly this test's dead letters (the shared dlq gets them too).
	deadLetters := uniqueName(t, "poison-dead")
	declareQueue(t, conn, amqpbus.QueueSpec{
		Name:         deadLetters,
		AutoDelete:   true,
		Exclusive:    true,
		NoDeadLetter: true,
		Bindings:     []amqpbus.Binding{{Exchange: amqpbus.ExchangeDeadLetter, Pattern: amqpbus.JobPattern(job)}},
	})

	var calls atomic.Int32
	cons, err := amqpbus.NewConsumer(conn, amqpbus.ConsumerConfig{Queue: queue, Retry: fastRetry()},
		func(context.Context, *bus.Message) error {
			calls.Add(1)
			return bus.Permanent(errors.New("payload does not decode"))
		}, testLogger(t), nil)
	require.NoError(t, err)
	runConsumer(t, cons)

	dead := make(chan *bus.Message, 1)
	dlqReader, err := amqpbus.NewConsumer(conn, amqpbus.ConsumerConfig{Queue: deadLetters, Retry: fastRetry()},
		func(_ context.Context, msg *bus.Message) error {
			dead <- msg
			return nil
		}, testLogger(t), nil)
	require.NoError(t, err)
	runConsumer(t, dlqReader)

	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	key := amqpbus.JobRoutingKey("dave", job, "job.failed")
	require.NoError(t, pub.Publish(ctx, amqpbus.ExchangeJobEvents, key, &bus.Message{
		Value:   []byte("garbage"),
		Headers: map[string]string{amqpbus.HeaderEventID: "evt-poison", bus.HeaderEventType: "job.failed"},
	}))

	select {
	case msg := <-dead:
		require.Equal(t, []byte("garbage"), msg.Value)
		require.Equal(t, key, msg.Key)
		require.Equal(t, "evt-poison", msg.Header(amqpbus.HeaderMessageID))
		require.Equal(t, "job.failed", msg.Header(bus.HeaderEventType))
		require.Equal(t, "rejected", msg.Header(amqpbus.HeaderDeathReason))
		require.Equal(t, queue, msg.Header(amqpbus.HeaderDeathQueue))
		require.Equal(t, amqpbus.ExchangeJobEvents, msg.Header(amqpbus.HeaderDeathExchange))
		require.Equal(t, "1", msg.Header(amqpbus.HeaderDeathCount))
	case <-ctx.Done():
		t.Fatal("poison message not dead-lettered")
	}
	require.Equal(t, int32(1), calls.Load(), "a permanent error is not retried")
}

func TestTransientFailureIsRetriedThenAckedOnce(t *testing.T) {
	t.Parallel()
	conn := dial(t, nil, nil)
	pub := newPublisher(t, conn, amqpbus.PublisherConfig{}, nil)
	queue := uniqueName(t, "transient")
	declareQueue(t, conn, amqpbus.QueueSpec{Name: queue, Durable: true})

	var calls atomic.Int32
	done := make(chan int, 1)
	cons, err := amqpbus.NewConsumer(conn, amqpbus.ConsumerConfig{Queue: queue, Retry: fastRetry()},
		func(_ context.Context, msg *bus.Message) error {
			if calls.Add(1) < 3 {
				return errors.New("database busy")
			}
			done <- msg.Attempt
			return nil
		}, testLogger(t), nil)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	runCtx, stop := context.WithCancel(ctx)
	runErr := make(chan error, 1)
	go func() { runErr <- cons.Run(runCtx) }()

	require.NoError(t, pub.Publish(ctx, "", queue, &bus.Message{Value: []byte("retry me")}))
	select {
	case attempt := <-done:
		require.Equal(t, 3, attempt)
	case <-ctx.Done():
		t.Fatal("message not handled")
	}
	stop()
	require.NoError(t, <-runErr)

	// The consumer's channel is closed: an unacked delivery would be back in the queue.
	q, err := rawChannel(t).QueueDeclarePassive(queue, true, false, false, false, nil)
	require.NoError(t, err)
	require.Zero(t, q.Messages, "acked exactly once, nothing requeued")
	require.Equal(t, int32(3), calls.Load())
}

func TestMandatoryPublish(t *testing.T) {
	t.Parallel()
	conn := dial(t, nil, nil)
	pub := newPublisher(t, conn, amqpbus.PublisherConfig{Mandatory: true}, nil)
	ch := rawChannel(t)
	exchange := uniqueName(t, "mandatory")
	require.NoError(t, ch.ExchangeDeclare(exchange, amqp.ExchangeTopic, false, true, false, false, nil))
	t.Cleanup(func() { _ = ch.ExchangeDelete(exchange, false, false) })
	queue := uniqueName(t, "mandatory")
	declareQueue(t, conn, amqpbus.QueueSpec{
		Name:     queue,
		Bindings: []amqpbus.Binding{{Exchange: exchange, Pattern: "routed"}},
	})
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()

	tests := []struct {
		name    string
		key     string
		wantErr error
	}{
		{name: "routed", key: "routed"},
		{name: "unroutable", key: "nowhere", wantErr: amqpbus.ErrUnroutable},
		{name: "routed after a return", key: "routed"},
	}
	for _, tt := range tests {
		err := pub.Publish(ctx, exchange, tt.key, &bus.Message{Value: []byte(tt.name)})
		if tt.wantErr != nil {
			require.ErrorIs(t, err, tt.wantErr, tt.name)
			continue
		}
		require.NoError(t, err, tt.name)
	}
	require.Len(t, drain(t, ch, queue), 2)

	err := pub.Publish(ctx, "no-such-exchange-"+randomSuffix(t), "k", &bus.Message{Value: []byte("x")})
	require.ErrorContains(t, err, "NOT_FOUND")
	require.NoError(t, pub.Publish(ctx, exchange, "routed", &bus.Message{}), "a new channel is opened after a channel error")
}

func TestConcurrentPublishes(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	conn := dial(t, nil, reg)
	pub := newPublisher(t, conn, amqpbus.PublisherConfig{}, reg)
	queue := uniqueName(t, "concurrent")
	declareQueue(t, conn, amqpbus.QueueSpec{Name: queue})
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()

	const goroutines, each = 8, 50
	var wg sync.WaitGroup
	errs := make(chan error, goroutines*each)
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				errs <- pub.Publish(ctx, "", queue, &bus.Message{Headers: map[string]string{amqpbus.HeaderEventID: id(g*each + i)}})
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	ids := map[string]bool{}
	for _, d := range drain(t, rawChannel(t), queue) {
		ids[d.MessageId] = true
	}
	require.Len(t, ids, goroutines*each)
	require.Equal(t, float64(goroutines*each), metricValue(t, reg, "fleet_amqp_messages_published_total"))
}
