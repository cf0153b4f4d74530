package kafkabus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/retry"
)

// Initial offsets of a group that has no committed offset for a partition.
const (
	OffsetOldest = "oldest"
	OffsetNewest = "newest"
)

// ConsumerConfig configures a consumer group runner.
type ConsumerConfig struct {
	Connection
	// Group is the consumer group id.
	Group string
	// Topics are consumed together by one group session.
	Topics []string
	// Retry paces the handler's retries of a transient failure; default
	// bus.DefaultRetryPolicy, which retries until the failure clears (the
	// message is never dead-lettered for it). Only a permanent error
	// (bus.Permanent) sends a message to the dead-letter topic.
	Retry bus.RetryPolicy
	// HandlerTimeout bounds each handler invocation; default 30s.
	HandlerTimeout time.Duration
	// DLQ publishes failed messages to <topic>.dlq. Required.
	DLQ *Producer
	// DLQRetry paces the retries of a failed dead-letter publish, which go
	// on until the session ends; MaxAttempts is ignored. Default 100ms..5s.
	DLQRetry bus.RetryPolicy
	// InitialOffset applies to partitions without a committed offset:
	// OffsetOldest (default) or OffsetNewest.
	InitialOffset string
	// SessionTimeout is how long the coordinator waits for a heartbeat
	// before it evicts the member; default 10s. HeartbeatInterval defaults
	// to a third of it.
	SessionTimeout    time.Duration
	HeartbeatInterval time.Duration
	// RebalanceTimeout is how long members get to finish their in-flight
	// messages and commit when the group rebalances; default 30s.
	RebalanceTimeout time.Duration
	// CommitInterval is the period of the commit of marked offsets; default 1s.
	// Offsets are also committed synchronously at the end of every session.
	CommitInterval time.Duration
	// TracerProvider creates the consumer spans; default the global provider.
	TracerProvider trace.TracerProvider
	// BatchSize and BatchWait apply to a consumer built by NewBatchConsumer:
	// a partition's messages are handed over in batches of at most
	// BatchSize, collected for at most BatchWait after the first one.
	// Defaults DefaultBatchSize and DefaultBatchWait.
	BatchSize int
	BatchWait time.Duration
}

// DefaultConsumerConfig returns the defaults for group consuming topics;
// DLQ is still to be set.
func DefaultConsumerConfig(conn Connection, group string, topics ...string) ConsumerConfig {
	return ConsumerConfig{
		Connection:       conn,
		Group:            group,
		Topics:           topics,
		Retry:            bus.DefaultRetryPolicy(),
		HandlerTimeout:   30 * time.Second,
		DLQRetry:         bus.RetryPolicy{MaxAttempts: 1, InitialBackoff: 100 * time.Millisecond, MaxBackoff: 5 * time.Second},
		InitialOffset:    OffsetOldest,
		SessionTimeout:   10 * time.Second,
		RebalanceTimeout: 30 * time.Second,
		CommitInterval:   time.Second,
		BatchSize:        DefaultBatchSize,
		BatchWait:        DefaultBatchWait,
	}
}

func (c ConsumerConfig) withDefaults() ConsumerConfig {
	d := DefaultConsumerConfig(c.Connection, c.Group, c.Topics...)
	if c.Retry == (bus.RetryPolicy{}) {
		c.Retry = d.Retry
	}
	if c.HandlerTimeout == 0 {
		c.HandlerTimeout = d.HandlerTimeout
	}
	if c.DLQRetry == (bus.RetryPolicy{}) {
		c.DLQRetry = d.DLQRetry
	}
	if c.InitialOffset == "" {
		c.InitialOffset = d.InitialOffset
	}
	if c.SessionTimeout == 0 {
		c.SessionTimeout = d.SessionTimeout
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = c.SessionTimeout / 3
	}
	if c.RebalanceTimeout == 0 {
		c.RebalanceTimeout = d.RebalanceTimeout
	}
	if c.CommitInterval == 0 {
		c.CommitInterval = d.CommitInterval
	}
	if c.BatchSize == 0 {
		c.BatchSize = d.BatchSize
	}
	if c.BatchWait == 0 {
		c.BatchWait = d.BatchWait
	}
	return c
}

// Validate reports the first setting that cannot work. Zero values are
// replaced by defaults before validation in NewConsumer.
func (c ConsumerConfig) Validate() error {
	if err := c.Connection.Validate(); err != nil {
		return err
	}
	switch {
	case c.Group == "":
		return errors.New("kafka consumer: group is empty")
	case len(c.Topics) == 0:
		return errors.New("kafka consumer: no topics")
	case c.DLQ == nil:
		return errors.New("kafka consumer: a dead-letter producer is required")
	case c.HandlerTimeout <= 0:
		return fmt.Errorf("kafka consumer: handler timeout %s <= 0", c.HandlerTimeout)
	case c.InitialOffset != OffsetOldest && c.InitialOffset != OffsetNewest:
		return fmt.Errorf("kafka consumer: initial offset %q is neither %q nor %q", c.InitialOffset, OffsetOldest, OffsetNewest)
	case c.SessionTimeout <= 0 || c.HeartbeatInterval <= 0 || c.HeartbeatInterval >= c.SessionTimeout:
		return fmt.Errorf("kafka consumer: heartbeat interval %s must be positive and below session timeout %s", c.HeartbeatInterval, c.SessionTimeout)
	case c.RebalanceTimeout <= 0:
		return fmt.Errorf("kafka consumer: rebalance timeout %s <= 0", c.RebalanceTimeout)
	case c.CommitInterval <= 0:
		return fmt.Errorf("kafka consumer: commit interval %s <= 0", c.CommitInterval)
	case c.BatchSize < 0 || c.BatchWait < 0:
		return fmt.Errorf("kafka consumer: batch size %d and batch wait %s must not be negative", c.BatchSize, c.BatchWait)
	}
	for _, t := range c.Topics {
		if t == "" {
			return errors.New("kafka consumer: empty topic name")
		}
	}
	if err := c.Retry.Validate(); err != nil {
		return fmt.Errorf("kafka consumer: %w", err)
	}
	if err := c.DLQRetry.Validate(); err != nil {
		return fmt.Errorf("kafka consumer: dead-letter %w", err)
	}
	return nil
}

func (c ConsumerConfig) saramaConfig() (*sarama.Config, error) {
	cfg, err := ClientConfig(c.Connection)
	if err != nil {
		return nil, err
	}
	cfg.Consumer.Return.Errors = true
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	if c.InitialOffset == OffsetNewest {
		cfg.Consumer.Offsets.Initial = sarama.OffsetNewest
	}
	cfg.Consumer.Offsets.AutoCommit.Enable = true
	cfg.Consumer.Offsets.AutoCommit.Interval = c.CommitInterval
	cfg.Consumer.Group.Session.Timeout = c.SessionTimeout
	cfg.Consumer.Group.Heartbeat.Interval = c.HeartbeatInterval
	cfg.Consumer.Group.Rebalance.Timeout = c.RebalanceTimeout
	cfg.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategySticky()}
	// Read only committed records, so aborted transactional writes never
	// reach a handler.
	cfg.Consumer.IsolationLevel = sarama.ReadCommitted
	return cfg, nil
}

// Consumer runs a handler over the messages of a consumer group. Messages of
// one partition are handled one at a time, in offset order.
type Consumer struct {
	cfg     ConsumerConfig
	scfg    *sarama.Config
	handler bus.Handler
	// batch, when set, receives a partition's messages in batches; handler
	// is the one-by-one fallback after a failed batch.
	batch        BatchHandler
	batchMetrics *batchMetrics
	logger       *slog.Logger
	metrics      *consumerMetrics
	tracer       trace.Tracer

	ready   atomic.Bool
	running atomic.Bool
}

// NewConsumer prepares a consumer group runner; Run connects and consumes.
// handler is wrapped as Recover → Retry(cfg.Retry) → Timeout(cfg.HandlerTimeout);
// each retry is counted (fleet_kafka_handler_retries_total), shows the
// partition as stalled (fleet_kafka_consumer_stalled) and is logged.
func NewConsumer(cfg ConsumerConfig, handler bus.Handler, logger *slog.Logger, reg prometheus.Registerer) (*Consumer, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if handler == nil {
		return nil, errors.New("kafka consumer: nil handler")
	}
	scfg, err := cfg.saramaConfig()
	if err != nil {
		return nil, err
	}
	metrics, err := newConsumerMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("kafka consumer: %w", err)
	}
	tp := cfg.TracerProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	c := &Consumer{
		cfg:     cfg,
		scfg:    scfg,
		logger:  logger.With("group", cfg.Group),
		metrics: metrics,
		tracer:  tp.Tracer(instrumentationName),
	}
	c.handler = bus.Chain(handler, c.middleware()...)
	return c, nil
}

// middleware is the consumer's chain around the handler, outermost first:
// the span, the outcome count, the log line, dead-lettering, the handler
// duration, and Recover → Retry → Timeout.
func (c *Consumer) middleware() []bus.Middleware {
	topic := func(m *bus.Message) string { return m.Topic }
	return []bus.Middleware{
		bus.Tracing(c.tracer, func(m *bus.Message) string { return "process " + m.Topic }, c.spanAttributes),
		bus.Outcomes(c.metrics.consumed, topic, bus.OutcomeLabels{OK: outcomeOK, DeadLettered: outcomeDLQ, Failed: outcomeError}),
		bus.Logging(c.logger, "kafka", func(m *bus.Message) []any {
			return []any{"topic", m.Topic, "partition", m.Partition, "offset", m.Offset}
		}),
		bus.DeadLetter(c.deadLetter),
		bus.Duration(c.metrics.duration, topic),
		c.unstall,
		bus.Recover(),
		bus.Retry(c.cfg.Retry, c.retrying),
		bus.Timeout(c.cfg.HandlerTimeout),
	}
}

func (c *Consumer) spanAttributes(m *bus.Message) []attribute.KeyValue {
	attrs := []attribute.KeyValue{
		semconv.MessagingSystemKafka,
		semconv.MessagingOperationTypeProcess,
		semconv.MessagingOperationName("process"),
		semconv.MessagingDestinationName(m.Topic),
		semconv.MessagingDestinationPartitionID(strconv.Itoa(int(m.Partition))),
		semconv.MessagingKafkaOffset(int(m.Offset)),
		semconv.MessagingConsumerGroupName(c.cfg.Group),
		semconv.MessagingMessageBodySize(len(m.Value)),
	}
	if m.Key != "" {
		attrs = append(attrs, semconv.MessagingKafkaMessageKey(m.Key))
	}
	return attrs
}

// unstall clears the partition's stalled gauge once a message that was
// retried is done with.
func (c *Consumer) unstall(next bus.Handler) bus.Handler {
	return func(ctx context.Context, msg *bus.Message) error {
		err := next(ctx, msg)
		if msg.Attempt > 1 {
			c.metrics.stalled.WithLabelValues(c.cfg.Group, msg.Topic, strconv.Itoa(int(msg.Partition))).Set(0)
		}
		return err
	}
}

// retrying records one backoff step of a transient failure.
func (c *Consumer) retrying(ctx context.Context, msg *bus.Message, attempt int, wait time.Duration, err error) {
	c.metrics.retries.WithLabelValues(msg.Topic).Inc()
	c.metrics.stalled.WithLabelValues(c.cfg.Group, msg.Topic, strconv.Itoa(int(msg.Partition))).Set(1)
	c.logger.WarnContext(ctx, "kafka message failed; retrying it (transient failure, the partition waits)",
		"topic", msg.Topic, "partition", msg.Partition, "offset", msg.Offset,
		"attempt", attempt, "retry_in", wait, "error", err)
}

// Ready reports whether the consumer has joined its group and started
// consuming every partition of its first assignment; it stays true across
// later rebalances.
func (c *Consumer) Ready() bool { return c.ready.Load() }

// Check returns an error until the consumer is Ready, for readiness probes.
func (c *Consumer) Check(context.Context) error {
	if !c.Ready() {
		return fmt.Errorf("kafka consumer group %s: not yet assigned", c.cfg.Group)
	}
	return nil
}

// Run joins the group and handles messages until ctx ends, then commits the
// marked offsets, leaves the group and returns nil. Each rebalance starts a
// new group session. Run may be called once. It returns ErrDLQTopicMissing at
// once when a consumed topic has no dead-letter topic.
func (c *Consumer) Run(ctx context.Context) error {
	if !c.running.CompareAndSwap(false, true) {
		return errors.New("kafka consumer: Run called twice")
	}
	group, err := sarama.NewConsumerGroup(c.cfg.Brokers, c.cfg.Group, c.scfg)
	if err != nil {
		return fmt.Errorf("kafka consumer group %s: connect to %v: %w", c.cfg.Group, c.cfg.Brokers, err)
	}
	if err := c.checkDLQTopics(); err != nil {
		_ = group.Close()
		return err
	}
	errsDone := make(chan struct{})
	go func() {
		defer close(errsDone)
		for err := range group.Errors() {
			c.logger.Warn("kafka consumer group error", "error", err)
		}
	}()

	runErr := c.consumeLoop(ctx, group)

	if err := group.Close(); err != nil && runErr == nil {
		runErr = fmt.Errorf("kafka consumer group %s: close: %w", c.cfg.Group, err)
	}
	<-errsDone
	return runErr
}

// ErrDLQTopicMissing is returned by Run when a consumed topic has no
// dead-letter topic: a message that must be dead-lettered could never be,
// so the consumer does not start.
var ErrDLQTopicMissing = errors.New("dead-letter topic missing")

// checkDLQTopics makes sure the dead-letter topic of every consumed topic
// exists (a dead-letter topic itself needs none).
func (c *Consumer) checkDLQTopics() error {
	var want []string
	for _, t := range c.cfg.Topics {
		if !strings.HasSuffix(t, bus.DLQSuffix) {
			want = append(want, bus.DLQTopic(t))
		}
	}
	if len(want) == 0 {
		return nil
	}
	admin, err := sarama.NewClusterAdmin(c.cfg.Brokers, c.scfg)
	if err != nil {
		return fmt.Errorf("kafka consumer group %s: connect to %v: %w", c.cfg.Group, c.cfg.Brokers, err)
	}
	defer admin.Close()
	have, err := describeTopics(admin, want)
	if err != nil {
		return fmt.Errorf("kafka consumer group %s: %w", c.cfg.Group, err)
	}
	var missing []string
	for _, t := range want {
		if _, ok := have[t]; !ok {
			missing = append(missing, t)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("kafka consumer group %s: %w: %s (create them with chctl topics)", c.cfg.Group, ErrDLQTopicMissing, strings.Join(missing, ", "))
	}
	return nil
}

func (c *Consumer) consumeLoop(ctx context.Context, group sarama.ConsumerGroup) error {
	h := &groupHandler{c: c}
	// Failed sessions are retried with the dead-letter pacing, until ctx ends;
	// a session that ends normally (a rebalance) resets the backoff.
	wait := c.cfg.DLQRetry.BackOff()
	for {
		err := group.Consume(ctx, c.cfg.Topics, h)
		switch {
		case errors.Is(err, sarama.ErrClosedConsumerGroup):
			return nil
		case ctx.Err() != nil:
			return nil
		case err != nil:
			d := wait.NextBackOff()
			c.logger.Warn("kafka consumer group session failed", "error", err, "retry_in", d)
			if retry.Sleep(ctx, d) != nil {
				return nil
			}
		default:
			wait.Reset()
		}
	}
}

// groupHandler adapts the Consumer to sarama's ConsumerGroupHandler.
type groupHandler struct {
	c *Consumer
	// unstarted counts the session's claims whose ConsumeClaim has not begun.
	// Sarama calls Setup before it resolves the claims' starting offsets, so
	// the consumer is Ready only once every claim has started: a message
	// published after that is seen even with OffsetNewest.
	unstarted atomic.Int64
}

func (h *groupHandler) Setup(sess sarama.ConsumerGroupSession) error {
	n := 0
	for _, partitions := range sess.Claims() {
		n += len(partitions)
	}
	h.unstarted.Store(int64(n))
	if n == 0 {
		h.c.ready.Store(true) // more members than partitions: nothing to wait for
	}
	h.c.logger.Info("kafka consumer group session started",
		"member_id", sess.MemberID(), "generation", sess.GenerationID(), "claims", sess.Claims())
	return nil
}

// Cleanup commits the offsets marked during the session synchronously, so a
// rebalance or shutdown hands the partitions over without re-delivery.
func (h *groupHandler) Cleanup(sess sarama.ConsumerGroupSession) error {
	sess.Commit()
	for topic, partitions := range sess.Claims() {
		for _, p := range partitions {
			h.c.metrics.lag.DeleteLabelValues(h.c.cfg.Group, topic, strconv.Itoa(int(p)))
		}
	}
	h.c.logger.Info("kafka consumer group session ended",
		"member_id", sess.MemberID(), "generation", sess.GenerationID())
	return nil
}

// ConsumeClaim handles the messages of one partition in order. It returns
// as soon as the session ends; messages not yet handled stay unmarked.
func (h *groupHandler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	if h.unstarted.Add(-1) == 0 {
		h.c.ready.Store(true)
	}
	ctx := sess.Context()
	lag := h.c.metrics.lag.WithLabelValues(h.c.cfg.Group, claim.Topic(), strconv.Itoa(int(claim.Partition())))
	if h.c.batch != nil {
		h.c.consumeBatches(sess, claim, lag)
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case m, ok := <-claim.Messages():
			if !ok || ctx.Err() != nil {
				return nil
			}
			lag.Set(float64(max(claim.HighWaterMarkOffset()-1-m.Offset, 0)))
			if !h.c.process(ctx, sess, m) {
				return nil
			}
		}
	}
}

// process handles one message and marks its offset once it is handled or
// dead-lettered. It returns false when the session ended before that.
func (c *Consumer) process(ctx context.Context, sess sarama.ConsumerGroupSession, m *sarama.ConsumerMessage) bool {
	if !bus.Settled(c.handler(ctx, busMessage(m))) {
		// The session ended (rebalance or shutdown) while the handler ran or
		// the dead-letter publish waited; the partition's next owner handles
		// the message again.
		return false
	}
	sess.MarkMessage(m, "")
	return true
}

// deadLetter publishes the dead-letter copy of msg, which failed with
// cause, until it is acknowledged or the session (ctx) ends. A copy too
// large for the topic is trimmed (TrimDeadLetter) once.
func (c *Consumer) deadLetter(ctx context.Context, msg *bus.Message, cause error) error {
	dlq := DeadLetter(msg, c.cfg.Group, cause, time.Now())
	c.logger.WarnContext(ctx, "kafka message failed, sending to dead-letter topic",
		"topic", msg.Topic, "partition", msg.Partition, "offset", msg.Offset,
		"attempts", msg.Attempt, "dlq_topic", dlq.Topic, "error", cause)
	trimmed := false
	policy := c.cfg.DLQRetry
	policy.MaxAttempts = 0 // until the session ends
	return retry.Do(ctx, policy, func(int) error {
		err := c.cfg.DLQ.Publish(ctx, dlq)
		if err != nil && tooLarge(err) && !trimmed {
			dlq, trimmed = TrimDeadLetter(dlq), true
			c.logger.WarnContext(ctx, "kafka dead-letter copy too large; headers trimmed, value kept",
				"dlq_topic", dlq.Topic, "trimmed", dlq.Header(bus.HeaderDLQTrimmed), "error", err)
			err = c.cfg.DLQ.Publish(ctx, dlq)
		}
		return err
	}, func(attempt int, wait time.Duration, err error) {
		c.logger.ErrorContext(ctx, "kafka dead-letter publish failed; offset stays unmarked",
			"dlq_topic", dlq.Topic, "attempt", attempt, "retry_in", wait, "error", err)
	})
}

func busMessage(m *sarama.ConsumerMessage) *bus.Message {
	msg := &bus.Message{
		Topic:     m.Topic,
		Key:       string(m.Key),
		Value:     m.Value,
		Partition: m.Partition,
		Offset:    m.Offset,
		Timestamp: m.Timestamp,
	}
	if len(m.Headers) > 0 {
		msg.Headers = make(map[string]string, len(m.Headers))
		for _, h := range m.Headers {
			if h != nil {
				msg.Headers[string(h.Key)] = string(h.Value)
			}
		}
	}
	return msg
}

// maxDLQErrorBytes bounds the error text header; a panic's stack can be long.
const maxDLQErrorBytes = 8 << 10

// trimmedDLQErrorBytes bounds the error text of a trimmed dead-letter copy.
const trimmedDLQErrorBytes = 512

// tooLarge reports a publish refused for the record's size, by the
// producer's MaxMessageBytes or by the broker.
func tooLarge(err error) bool {
	var cerr sarama.ConfigurationError
	return errors.Is(err, sarama.ErrMessageSizeTooLarge) || errors.Is(err, sarama.ErrMessageSetSizeTooLarge) ||
		(errors.As(err, &cerr) && strings.Contains(string(cerr), "MaxMessageBytes"))
}

// keptOnTrim are the original headers a trimmed dead-letter copy keeps.
var keptOnTrim = []string{bus.HeaderEventID, bus.HeaderEventType, bus.HeaderContentType, "correlation_id", "traceparent"}

// TrimDeadLetter returns dl (a DeadLetter copy) with only the dlq.* headers,
// its error cut to 512 bytes, and the original headers that name the event
// (event id and type, content type, correlation id, trace); key and value are
// kept. The header dlq.trimmed records what was cut.
func TrimDeadLetter(dl *bus.Message) *bus.Message {
	headers := make(map[string]string, 16)
	dropped := 0
	for k, v := range dl.Headers {
		if strings.HasPrefix(k, "dlq.") || slices.Contains(keptOnTrim, k) {
			headers[k] = v
		} else {
			dropped++
		}
	}
	cut := ""
	if e := headers[bus.HeaderDLQError]; len(e) > trimmedDLQErrorBytes {
		headers[bus.HeaderDLQError] = e[:trimmedDLQErrorBytes] + " [truncated]"
		cut = fmt.Sprintf(", %s cut from %d to %d bytes", bus.HeaderDLQError, len(e), trimmedDLQErrorBytes)
	}
	headers[bus.HeaderDLQTrimmed] = fmt.Sprintf("%d original headers dropped%s", dropped, cut)
	return &bus.Message{Topic: dl.Topic, Key: dl.Key, Value: dl.Value, Headers: headers}
}

// DeadLetter returns the dead-letter copy of msg, which failed in group with
// cause: same key and value, addressed to the topic's dead-letter topic, with
// the original headers plus the bus.HeaderDLQ* headers.
func DeadLetter(msg *bus.Message, group string, cause error, failedAt time.Time) *bus.Message {
	headers := make(map[string]string, len(msg.Headers)+7)
	for k, v := range msg.Headers {
		headers[k] = v
	}
	errText := "unknown error"
	if cause != nil {
		errText = cause.Error()
	}
	if len(errText) > maxDLQErrorBytes {
		errText = errText[:maxDLQErrorBytes] + " [truncated]"
	}
	headers[bus.HeaderDLQError] = errText
	headers[bus.HeaderDLQTopic] = msg.Topic
	headers[bus.HeaderDLQPartition] = strconv.Itoa(int(msg.Partition))
	headers[bus.HeaderDLQOffset] = strconv.FormatInt(msg.Offset, 10)
	headers[bus.HeaderDLQAttempts] = strconv.Itoa(max(msg.Attempt, 1))
	headers[bus.HeaderDLQGroup] = group
	headers[bus.HeaderDLQFailedAt] = failedAt.UTC().Format(time.RFC3339Nano)
	return &bus.Message{
		Topic:   bus.DLQTopic(msg.Topic),
		Key:     msg.Key,
		Value:   msg.Value,
		Headers: headers,
	}
}
