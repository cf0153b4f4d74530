package kafkabus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/retry"
)

// ErrProducerClosed is returned by Publish after Close.
var ErrProducerClosed = errors.New("kafka producer closed")

// ProducerConfig configures an idempotent producer (acks=all).
type ProducerConfig struct {
	Connection
	// Compression is the batch codec: zstd (default), lz4, snappy, gzip or none.
	Compression string
	// Linger is how long a message may wait for others to share its batch.
	// Default 0: a batch is sent as soon as the previous request to that
	// broker returned, and messages arriving meanwhile batch up anyway.
	// A positive Linger trades latency for fewer, larger requests.
	Linger time.Duration
	// ChannelBufferSize is the number of messages queued inside the producer;
	// default 16384.
	ChannelBufferSize int
	// MaxRetries is how often a failed batch is resent; default 10.
	// RetryBackoff is the first wait, doubled per retry up to 2s, each wait
	// drawn from [d/2, d]; default 100ms.
	MaxRetries   int
	RetryBackoff time.Duration
	// MaxMessageBytes is the largest record accepted; default 1 MiB.
	MaxMessageBytes int
	// TracerProvider creates the producer spans; default the global provider.
	TracerProvider trace.TracerProvider
	// Schemas, when set, are the writer schemas of the Avro messages this
	// producer publishes: each is written to SchemaTopic (default
	// events.TopicSchemas) before the first message that uses it.
	Schemas     SchemaCatalog
	SchemaTopic string
}

// DefaultProducerConfig returns the defaults for conn.
func DefaultProducerConfig(conn Connection) ProducerConfig {
	return ProducerConfig{
		Connection:        conn,
		Compression:       "zstd",
		ChannelBufferSize: 16384,
		MaxRetries:        10,
		RetryBackoff:      100 * time.Millisecond,
		MaxMessageBytes:   1 << 20,
	}
}

func (c ProducerConfig) withDefaults() ProducerConfig {
	d := DefaultProducerConfig(c.Connection)
	if c.Compression == "" {
		c.Compression = d.Compression
	}
	if c.ChannelBufferSize == 0 {
		c.ChannelBufferSize = d.ChannelBufferSize
	}
	if c.MaxRetries == 0 {
		c.MaxRetries = d.MaxRetries
	}
	if c.RetryBackoff == 0 {
		c.RetryBackoff = d.RetryBackoff
	}
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = d.MaxMessageBytes
	}
	if c.SchemaTopic == "" {
		c.SchemaTopic = events.TopicSchemas
	}
	return c
}

// Validate reports the first setting that cannot work. Zero values are
// replaced by defaults before validation in NewProducer.
func (c ProducerConfig) Validate() error {
	if err := c.Connection.Validate(); err != nil {
		return err
	}
	if _, err := compressionCodec(c.Compression); err != nil {
		return err
	}
	switch {
	case c.Linger < 0:
		return fmt.Errorf("kafka producer: linger %s < 0", c.Linger)
	case c.ChannelBufferSize < 0:
		return fmt.Errorf("kafka producer: channel buffer size %d < 0", c.ChannelBufferSize)
	case c.MaxRetries < 1:
		return fmt.Errorf("kafka producer: max retries %d < 1 (idempotence needs retries)", c.MaxRetries)
	case c.RetryBackoff <= 0:
		return fmt.Errorf("kafka producer: retry backoff %s <= 0", c.RetryBackoff)
	case c.MaxMessageBytes < 1:
		return fmt.Errorf("kafka producer: max message bytes %d < 1", c.MaxMessageBytes)
	}
	return nil
}

func compressionCodec(name string) (sarama.CompressionCodec, error) {
	switch name {
	case "zstd", "":
		return sarama.CompressionZSTD, nil
	case "lz4":
		return sarama.CompressionLZ4, nil
	case "snappy":
		return sarama.CompressionSnappy, nil
	case "gzip":
		return sarama.CompressionGZIP, nil
	case "none":
		return sarama.CompressionNone, nil
	}
	return sarama.CompressionNone, fmt.Errorf("kafka producer: unknown compression %q", name)
}

// lingerFlushBytes sends a batch before Linger elapsed once it is this large.
const lingerFlushBytes = 256 << 10

// saramaConfig returns the sarama settings of an idempotent, acks=all producer.
func (c ProducerConfig) saramaConfig() (*sarama.Config, error) {
	cfg, err := ClientConfig(c.Connection)
	if err != nil {
		return nil, err
	}
	codec, err := compressionCodec(c.Compression)
	if err != nil {
		return nil, err
	}
	p := &cfg.Producer
	p.Idempotent = true
	p.RequiredAcks = sarama.WaitForAll
	cfg.Net.MaxOpenRequests = 1 // sarama's requirement for idempotence
	p.Retry.Max = c.MaxRetries
	pace := retry.Policy{InitialBackoff: min(c.RetryBackoff, 2*time.Second), MaxBackoff: 2 * time.Second}
	p.Retry.BackoffFunc = func(retries, _ int) time.Duration { return pace.Backoff(max(retries, 1)) }
	p.Compression = codec
	p.Partitioner = newPartitioner
	if c.Linger > 0 {
		p.Flush.Frequency = c.Linger
		p.Flush.Bytes = lingerFlushBytes
	}
	// With no flush trigger set, sarama sends a batch as soon as the broker
	// connection is free. Idempotence allows one request in flight per
	// broker, so messages arriving meanwhile form the next batch: low
	// latency when idle, large batches under load.
	p.MaxMessageBytes = c.MaxMessageBytes
	p.Return.Successes = true
	p.Return.Errors = true
	cfg.ChannelBufferSize = c.ChannelBufferSize
	return cfg, nil
}

// Producer publishes messages with an idempotent, acks=all sarama
// AsyncProducer. Concurrent Publish calls share batches.
type Producer struct {
	async   sarama.AsyncProducer
	logger  *slog.Logger
	metrics *producerMetrics
	tracer  trace.Tracer

	mu     sync.RWMutex // write-held by Close; read-held while sending to async.Input()
	closed bool

	closeOnce sync.Once
	drained   sync.WaitGroup

	schemas     SchemaCatalog
	schemaTopic string
	registered  sync.Map   // fingerprints whose schema is on schemaTopic
	registering sync.Mutex // one registration at a time
}

// delivery travels with a message through sarama as its Metadata.
type delivery struct {
	start    time.Time
	span     trace.Span
	callback func(error)
}

// NewProducer connects an idempotent producer to the cluster.
func NewProducer(cfg ProducerConfig, logger *slog.Logger, reg prometheus.Registerer) (*Producer, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	scfg, err := cfg.saramaConfig()
	if err != nil {
		return nil, err
	}
	metrics, err := newProducerMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("kafka producer: %w", err)
	}
	async, err := sarama.NewAsyncProducer(cfg.Brokers, scfg)
	if err != nil {
		return nil, fmt.Errorf("kafka producer: connect to %v: %w", cfg.Brokers, err)
	}
	tp := cfg.TracerProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	p := &Producer{
		async:       async,
		logger:      logger,
		metrics:     metrics,
		tracer:      tp.Tracer(instrumentationName),
		schemas:     cfg.Schemas,
		schemaTopic: cfg.SchemaTopic,
	}
	p.drained.Add(2)
	go p.drainSuccesses()
	go p.drainErrors()
	return p, nil
}

func (p *Producer) drainSuccesses() {
	defer p.drained.Done()
	for pm := range p.async.Successes() {
		p.report(pm, nil)
	}
}

func (p *Producer) drainErrors() {
	defer p.drained.Done()
	for perr := range p.async.Errors() {
		err := fmt.Errorf("publish to %s: %w", perr.Msg.Topic, perr.Err)
		if tooLarge(perr.Err) {
			err = bus.Permanent(err) // the same record never fits
		}
		p.logger.Debug("kafka publish failed", "topic", perr.Msg.Topic, "error", perr.Err)
		p.report(perr.Msg, err)
	}
}

// report records a delivery report and calls the publisher back.
func (p *Producer) report(pm *sarama.ProducerMessage, err error) {
	d, ok := pm.Metadata.(*delivery)
	if !ok {
		return
	}
	p.metrics.duration.WithLabelValues(pm.Topic).Observe(time.Since(d.start).Seconds())
	if err != nil {
		p.metrics.failures.WithLabelValues(pm.Topic).Inc()
		d.span.RecordError(err)
		d.span.SetStatus(codes.Error, err.Error())
	} else {
		p.metrics.published.WithLabelValues(pm.Topic).Inc()
		d.span.SetAttributes(
			semconv.MessagingDestinationPartitionID(fmt.Sprint(pm.Partition)),
			semconv.MessagingKafkaOffset(int(pm.Offset)),
		)
	}
	d.span.End()
	if d.callback != nil {
		d.callback(err)
	}
}

// Publish sends msg and waits for the cluster's acknowledgement. msg.Key
// chooses the partition (an empty key spreads messages); msg.Headers are sent
// as they are, plus the trace context and correlation id of ctx. When ctx ends
// first Publish returns its error, but the message may still be delivered.
func (p *Producer) Publish(ctx context.Context, msg *bus.Message) error {
	done := make(chan error, 1)
	if err := p.PublishAsync(ctx, msg, func(err error) { done <- err }); err != nil {
		return err
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("publish to %s: waiting for acknowledgement: %w", msg.Topic, context.Cause(ctx))
	}
}

// PublishAsync hands msg to the producer and returns; callback, if not nil,
// is called once with the delivery report (nil when acknowledged). ctx only
// bounds the hand-over and provides the trace context. callback runs on the
// producer's delivery goroutine and must not block.
func (p *Producer) PublishAsync(ctx context.Context, msg *bus.Message, callback func(error)) error {
	if msg == nil || msg.Topic == "" {
		return errors.New("kafka publish: message without topic")
	}
	if err := p.ensureSchema(ctx, msg); err != nil {
		return err
	}
	ctx, span := p.tracer.Start(ctx, "send "+msg.Topic,
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(
			semconv.MessagingSystemKafka,
			semconv.MessagingOperationTypeSend,
			semconv.MessagingOperationName("send"),
			semconv.MessagingDestinationName(msg.Topic),
		))
	if msg.Key != "" {
		span.SetAttributes(semconv.MessagingKafkaMessageKey(msg.Key))
	}

	pm := &sarama.ProducerMessage{
		Topic:     msg.Topic,
		Value:     sarama.ByteEncoder(msg.Value),
		Headers:   recordHeaders(ctx, msg.Headers),
		Timestamp: msg.Timestamp,
		Metadata:  &delivery{start: time.Now(), span: span, callback: callback},
	}
	if pm.Timestamp.IsZero() {
		pm.Timestamp = time.Now()
	}
	if msg.Key != "" {
		pm.Key = sarama.StringEncoder(msg.Key)
	}

	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		span.End()
		return fmt.Errorf("publish to %s: %w", msg.Topic, ErrProducerClosed)
	}
	select {
	case p.async.Input() <- pm:
		return nil
	case <-ctx.Done():
		err := fmt.Errorf("publish to %s: producer queue full: %w", msg.Topic, context.Cause(ctx))
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		span.End()
		return err
	}
}

// recordHeaders copies headers and adds the trace context and correlation id of ctx.
func recordHeaders(ctx context.Context, headers map[string]string) []sarama.RecordHeader {
	carrier := make(map[string]string, len(headers)+3)
	for k, v := range headers {
		carrier[k] = v
	}
	injectContext(ctx, carrier)
	out := make([]sarama.RecordHeader, 0, len(carrier))
	for k, v := range carrier {
		out = append(out, sarama.RecordHeader{Key: []byte(k), Value: []byte(v)})
	}
	return out
}

// Close flushes the queued messages, waits for every outstanding delivery
// report (their callbacks run before Close returns) and disconnects.
func (p *Producer) Close() error {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed = true
		p.mu.Unlock()
		p.async.AsyncClose()
		p.drained.Wait()
	})
	return nil
}
