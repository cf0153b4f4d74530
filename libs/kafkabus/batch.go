package kafkabus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/cosmic-horizons/fleet/libs/bus"
)

// Defaults of the batch settings of ConsumerConfig.
const (
	DefaultBatchSize = 500
	DefaultBatchWait = 20 * time.Millisecond
)

// BatchHandler handles consecutive messages of one partition, in offset
// order, as one unit. It returns nil once the effect of every message is
// durable; the consumer then marks them all. On an error none of them may
// have a lasting effect (one transaction), because the consumer hands each
// of them again, one by one, to the message handler.
type BatchHandler func(ctx context.Context, msgs []*bus.Message) error

type batchMetrics struct {
	size     prometheus.Histogram
	duration prometheus.Histogram
	failures prometheus.Counter
}

func newBatchMetrics(reg prometheus.Registerer) (*batchMetrics, error) {
	var m batchMetrics
	var err error
	if m.size, err = bus.RegisterMetric(reg, prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "fleet_kafka_batch_messages",
		Help:    "Messages per batch handed to a batch handler.",
		Buckets: prometheus.ExponentialBuckets(1, 4, 8),
	})); err != nil {
		return nil, err
	}
	if m.duration, err = bus.RegisterMetric(reg, prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "fleet_kafka_batch_duration_seconds",
		Help:    "Time spent in the batch handler per batch.",
		Buckets: bus.LatencyBuckets,
	})); err != nil {
		return nil, err
	}
	if m.failures, err = bus.RegisterMetric(reg, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "fleet_kafka_batch_failures_total",
		Help: "Batches whose handler failed; their messages were handled one by one instead.",
	})); err != nil {
		return nil, err
	}
	return &m, nil
}

// NewBatchConsumer prepares a consumer group runner that hands each
// partition's messages to batch in batches of up to cfg.BatchSize, collected
// for at most cfg.BatchWait after the first one, and marks their offsets only
// after batch returned nil. When batch fails, the messages go one by one
// through handler, wrapped as in NewConsumer (recover, retries, timeout,
// dead-letter topic for the one that keeps failing). batch runs under
// cfg.HandlerTimeout; a panic in it counts as a failure.
func NewBatchConsumer(cfg ConsumerConfig, batch BatchHandler, handler bus.Handler, logger *slog.Logger, reg prometheus.Registerer) (*Consumer, error) {
	if batch == nil {
		return nil, errors.New("kafka consumer: nil batch handler")
	}
	c, err := NewConsumer(cfg, handler, logger, reg)
	if err != nil {
		return nil, err
	}
	if c.cfg.BatchSize < 1 || c.cfg.BatchWait <= 0 {
		return nil, fmt.Errorf("kafka consumer: batch size %d and batch wait %s must be positive", c.cfg.BatchSize, c.cfg.BatchWait)
	}
	if c.batchMetrics, err = newBatchMetrics(reg); err != nil {
		return nil, fmt.Errorf("kafka consumer: %w", err)
	}
	c.batch = batch
	return c, nil
}

// consumeBatches is ConsumeClaim for a batch consumer. It returns when the
// session ends; messages collected but not handled stay unmarked.
func (c *Consumer) consumeBatches(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim, lag prometheus.Gauge) {
	ctx := sess.Context()
	pending := make([]*sarama.ConsumerMessage, 0, c.cfg.BatchSize)
	timer := time.NewTimer(c.cfg.BatchWait)
	timer.Stop()
	defer timer.Stop()
	var deadline <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case m, ok := <-claim.Messages():
			if !ok || ctx.Err() != nil {
				return
			}
			pending = append(pending, m)
			if len(pending) == 1 {
				timer.Reset(c.cfg.BatchWait)
				deadline = timer.C
			}
			if len(pending) < c.cfg.BatchSize {
				continue
			}
		case <-deadline:
		}
		timer.Stop()
		deadline = nil
		last := pending[len(pending)-1]
		lag.Set(float64(max(claim.HighWaterMarkOffset()-1-last.Offset, 0)))
		if !c.processBatch(ctx, sess, pending) {
			return
		}
		pending = pending[:0]
	}
}

// processBatch handles ms as one batch, or one by one after the batch
// failed. It returns false when the session ended before all were marked.
func (c *Consumer) processBatch(ctx context.Context, sess sarama.ConsumerGroupSession, ms []*sarama.ConsumerMessage) bool {
	first, last := ms[0], ms[len(ms)-1]
	msgs := make([]*bus.Message, len(ms))
	for i, m := range ms {
		msgs[i] = busMessage(m)
	}
	// A batch of one runs inside its message's trace; a larger batch links
	// every message's trace and gives each message a consumer span in its
	// own trace (ended with the batch), so every trace shows this consumer.
	parent, links, msgCtxs := ctx, []trace.Link(nil), make([]context.Context, len(msgs))
	for i, m := range msgs {
		msgCtxs[i] = extractContext(ctx, m.Headers)
		if sc := trace.SpanContextFromContext(msgCtxs[i]); sc.IsValid() {
			links = append(links, trace.Link{SpanContext: sc})
		}
	}
	if len(msgs) == 1 {
		parent, links = msgCtxs[0], nil
	}
	ctx, span := c.tracer.Start(parent, "process batch "+first.Topic,
		trace.WithLinks(links...),
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(
			semconv.MessagingSystemKafka,
			semconv.MessagingOperationTypeProcess,
			semconv.MessagingOperationName("process"),
			semconv.MessagingDestinationName(first.Topic),
			semconv.MessagingDestinationPartitionID(strconv.Itoa(int(first.Partition))),
			semconv.MessagingConsumerGroupName(c.cfg.Group),
			semconv.MessagingBatchMessageCount(len(ms)),
			attribute.Int64("messaging.kafka.offset.first", first.Offset),
			attribute.Int64("messaging.kafka.offset.last", last.Offset),
		))
	defer span.End()
	var msgSpans []trace.Span
	if len(msgs) > 1 {
		for i, mctx := range msgCtxs {
			if !trace.SpanContextFromContext(mctx).IsValid() {
				continue
			}
			_, sp := c.tracer.Start(mctx, "process "+first.Topic,
				trace.WithLinks(trace.Link{SpanContext: span.SpanContext()}),
				trace.WithSpanKind(trace.SpanKindConsumer),
				trace.WithAttributes(
					semconv.MessagingSystemKafka,
					semconv.MessagingOperationTypeProcess,
					semconv.MessagingDestinationName(first.Topic),
					semconv.MessagingConsumerGroupName(c.cfg.Group),
					semconv.MessagingKafkaOffset(int(msgs[i].Offset)),
				))
			msgSpans = append(msgSpans, sp)
		}
	}

	start := time.Now()
	err := c.runBatch(ctx, msgs)
	for _, sp := range msgSpans {
		if err != nil {
			sp.SetStatus(codes.Error, err.Error())
		}
		sp.End()
	}
	elapsed := time.Since(start)
	c.batchMetrics.duration.Observe(elapsed.Seconds())
	c.batchMetrics.size.Observe(float64(len(ms)))
	if err == nil {
		perMessage := elapsed.Seconds() / float64(len(ms))
		duration := c.metrics.duration.WithLabelValues(first.Topic)
		for range ms {
			duration.Observe(perMessage)
		}
		sess.MarkMessage(last, "")
		c.metrics.consumed.WithLabelValues(first.Topic, outcomeOK).Add(float64(len(ms)))
		for i, m := range msgs {
			c.logHandled(msgCtxs[i], m, time.Duration(perMessage*float64(time.Second)))
		}
		return true
	}
	span.RecordError(err)
	span.SetStatus(codes.Error, err.Error())
	if sess.Context().Err() != nil {
		return false
	}
	c.batchMetrics.failures.Inc()
	c.logger.WarnContext(ctx, "kafka batch failed, handling its messages one by one",
		"topic", first.Topic, "partition", first.Partition,
		"first_offset", first.Offset, "last_offset", last.Offset, "error", err)
	for _, m := range ms {
		if !c.process(ctx, sess, m) {
			return false
		}
	}
	return true
}

// runBatch calls the batch handler under the handler timeout, turning a
// panic into an error.
func (c *Consumer) runBatch(ctx context.Context, msgs []*bus.Message) (err error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.HandlerTimeout)
	defer cancel()
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("batch handler panic: %v\n%s", r, debug.Stack())
		}
	}()
	for _, m := range msgs {
		m.Attempt = 1
	}
	return c.batch(ctx, msgs)
}

// logHandled logs a message handled in a batch at debug level, as the
// one-by-one chain's bus.Logging does; ctx carries the message's
// correlation id and trace.
func (c *Consumer) logHandled(ctx context.Context, msg *bus.Message, took time.Duration) {
	if !c.logger.Enabled(ctx, slog.LevelDebug) {
		return
	}
	c.logger.DebugContext(ctx, "kafka message handled", "topic", msg.Topic, "partition", msg.Partition,
		"offset", msg.Offset, bus.HeaderEventType, msg.Header(bus.HeaderEventType), "duration_ms", float64(took.Microseconds())/1000)
}
