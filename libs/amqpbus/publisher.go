package amqpbus

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	amqp "github.com/rabbitmq/amqp091-go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/telemetry"
)

// instrumentationName is the tracer name of this package.
const instrumentationName = "github.com/cosmic-horizons/fleet/libs/amqpbus"

// HeaderEventID carries the event's id; Publish uses it as the AMQP message id.
const HeaderEventID = "event_id"

// Errors returned by Publish.
var (
	// ErrNacked: the broker refused the message (for example a full queue
	// with overflow reject-publish). It is not retried.
	ErrNacked = errors.New("amqpbus: broker nacked the message")
	// ErrUnroutable: a mandatory message matched no queue.
	ErrUnroutable = errors.New("amqpbus: message unroutable")
	// ErrPublisherClosed: Publish after Close.
	ErrPublisherClosed = errors.New("amqpbus: publisher closed")
)

// PublisherConfig configures a Publisher.
type PublisherConfig struct {
	// Mandatory asks the broker to return messages that match no queue;
	// Publish then fails with ErrUnroutable. Without it such a message is
	// confirmed and dropped.
	Mandatory bool
	// PublishTimeout bounds one Publish (waiting out a reconnect, publishing
	// again, waiting for the confirm) unless ctx ends sooner; default 30s.
	PublishTimeout time.Duration
	// ContentType is used when a message has no content-type header;
	// default bus.ContentTypeAvro.
	ContentType string
	// TracerProvider creates the publish spans; default the global provider.
	TracerProvider trace.TracerProvider
}

// DefaultPublisherConfig returns the publisher defaults.
func DefaultPublisherConfig() PublisherConfig {
	return PublisherConfig{PublishTimeout: 30 * time.Second, ContentType: bus.ContentTypeAvro}
}

func (c PublisherConfig) withDefaults() PublisherConfig {
	d := DefaultPublisherConfig()
	if c.PublishTimeout == 0 {
		c.PublishTimeout = d.PublishTimeout
	}
	if c.ContentType == "" {
		c.ContentType = d.ContentType
	}
	if c.TracerProvider == nil {
		c.TracerProvider = otel.GetTracerProvider()
	}
	return c
}

// Validate reports a configuration that cannot work.
func (c PublisherConfig) Validate() error {
	if c.PublishTimeout < 0 {
		return fmt.Errorf("publisher config: publish timeout %s is negative", c.PublishTimeout)
	}
	return nil
}

// Publisher publishes persistent messages with publisher confirms over one
// channel of a Conn. It is safe for concurrent use: publishes from many
// goroutines are in flight together on the channel and each waits for its own
// confirm, matched by delivery tag. After a connection loss it opens a new
// channel on the reconnected connection by itself.
type Publisher struct {
	conn    *Conn
	cfg     PublisherConfig
	logger  *slog.Logger
	metrics *publisherMetrics
	tracer  trace.Tracer

	wg     sync.WaitGroup
	mu     sync.Mutex
	cur    *confirmChannel
	closed bool
}

// NewPublisher returns a publisher on conn. It opens its channel on first use.
func NewPublisher(conn *Conn, cfg PublisherConfig, logger *slog.Logger, reg prometheus.Registerer) (*Publisher, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	metrics, err := newPublisherMetrics(reg)
	if err != nil {
		return nil, err
	}
	return &Publisher{
		conn:    conn,
		cfg:     cfg,
		logger:  logger.With("component", "amqpbus.publisher"),
		metrics: metrics,
		tracer:  cfg.TracerProvider.Tracer(instrumentationName),
	}, nil
}

// Publish publishes msg.Value to exchange with routingKey and returns nil
// only once the broker confirmed it. The message is persistent and carries
// msg.Headers plus the trace context and correlation id of ctx; its message
// id is the event_id header, or a random id. When the connection is lost
// before the confirm, the message is published again after the reconnect
// (so it may arrive twice) until ctx or PublishTimeout ends. A broker nack
// returns ErrNacked, an unroutable mandatory message ErrUnroutable.
func (p *Publisher) Publish(ctx context.Context, exchange, routingKey string, msg *bus.Message) (err error) {
	if len(routingKey) > maxShortString {
		return bus.Permanent(fmt.Errorf("publish to %s: routing key is %d bytes, longer than %d", exchange, len(routingKey), maxShortString))
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.PublishTimeout)
	defer cancel()

	headers := make(map[string]string, len(msg.Headers)+3)
	for k, v := range msg.Headers {
		headers[k] = v
	}
	contentType := headers[bus.HeaderContentType]
	delete(headers, bus.HeaderContentType)
	if contentType == "" {
		contentType = p.cfg.ContentType
	}
	messageID := headers[HeaderEventID]
	if messageID == "" {
		messageID = randomID()
	}

	ctx, span := p.tracer.Start(ctx, "send "+exchange,
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(
			semconv.MessagingSystemRabbitMQ,
			semconv.MessagingOperationTypeSend,
			semconv.MessagingOperationName("send"),
			semconv.MessagingDestinationName(exchange),
			semconv.MessagingRabbitMQDestinationRoutingKey(routingKey),
			semconv.MessagingMessageID(messageID),
			semconv.MessagingMessageBodySize(len(msg.Value)),
		))
	start := time.Now()
	defer func() {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
			p.metrics.failures.WithLabelValues(exchange).Inc()
		} else {
			p.metrics.published.WithLabelValues(exchange).Inc()
			p.metrics.confirm.WithLabelValues(exchange).Observe(time.Since(start).Seconds())
		}
		span.End()
	}()

	telemetry.Inject(ctx, headers)
	table := make(amqp.Table, len(headers))
	for k, v := range headers {
		table[k] = v
	}
	ts := msg.Timestamp
	if ts.IsZero() {
		ts = time.Now()
	}
	pub := amqp.Publishing{
		Headers:      table,
		ContentType:  contentType,
		DeliveryMode: amqp.Persistent,
		MessageId:    messageID,
		Timestamp:    ts.UTC(),
		Body:         msg.Value,
	}
	if err := p.publish(ctx, exchange, routingKey, pub); err != nil {
		return fmt.Errorf("publish to %s with key %s: %w", exchange, routingKey, err)
	}
	return nil
}

func (p *Publisher) publish(ctx context.Context, exchange, key string, pub amqp.Publishing) error {
	var lost error // why the previous attempt was not confirmed
	for {
		cc, err := p.channel(ctx)
		if err != nil {
			return errors.Join(lost, err)
		}
		dc, err := cc.ch.PublishWithDeferredConfirmWithContext(ctx, exchange, key, p.cfg.Mandatory, false, pub)
		if err != nil {
			if retry, rerr := p.afterClose(cc, err); retry {
				lost = rerr
				p.metrics.republished.WithLabelValues(exchange).Inc()
				continue
			} else if rerr != nil {
				return rerr
			}
			return err
		}
		select {
		case <-dc.Done():
		case <-ctx.Done():
			return errors.Join(lost, fmt.Errorf("no confirm for delivery tag %d: %w", dc.DeliveryTag, ctx.Err()))
		}
		if dc.Acked() {
			if p.cfg.Mandatory && cc.takeReturn(pub.MessageId) {
				return ErrUnroutable
			}
			return nil
		}
		if !cc.ch.IsClosed() {
			return ErrNacked
		}
		retry, rerr := p.afterClose(cc, amqp.ErrClosed)
		if !retry {
			return rerr
		}
		lost = rerr
		p.metrics.republished.WithLabelValues(exchange).Inc()
		p.logger.Debug("connection lost before confirm; publishing again", "exchange", exchange, "message_id", pub.MessageId)
	}
}

// afterClose decides what a failed publish or a missing confirm on cc means.
// A lost connection is retried; a channel closed by a channel error (such as
// a missing exchange) or by Close is not. For other publish errors it
// returns false and nil.
func (p *Publisher) afterClose(cc *confirmChannel, err error) (retry bool, reason error) {
	if !cc.ch.IsClosed() && !errors.Is(err, amqp.ErrClosed) {
		return false, nil
	}
	<-cc.done // the close reason is recorded
	p.mu.Lock()
	closed := p.closed
	if p.cur == cc {
		p.cur = nil
	}
	p.mu.Unlock()
	switch {
	case closed:
		return false, ErrPublisherClosed
	case cc.conn.IsClosed():
		return true, fmt.Errorf("connection lost: %w", errOr(cc.closeErr, err))
	default:
		return false, fmt.Errorf("channel closed: %w", errOr(cc.closeErr, err))
	}
}

// channel returns the open confirm channel, opening one when needed.
func (p *Publisher) channel(ctx context.Context) (*confirmChannel, error) {
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, ErrPublisherClosed
		}
		if cc := p.cur; cc != nil && !cc.ch.IsClosed() {
			p.mu.Unlock()
			return cc, nil
		}
		p.mu.Unlock()

		conn, err := p.conn.connection(ctx)
		if err != nil {
			return nil, err
		}

		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, ErrPublisherClosed
		}
		if cc := p.cur; cc != nil && !cc.ch.IsClosed() {
			p.mu.Unlock()
			return cc, nil
		}
		cc, err := p.open(conn)
		if err != nil {
			p.mu.Unlock()
			if conn.IsClosed() {
				continue // the connection went away meanwhile; wait for the next one
			}
			return nil, err
		}
		p.cur = cc
		p.mu.Unlock()
		return cc, nil
	}
}

// open opens a channel in confirm mode on conn; p.mu must be held.
func (p *Publisher) open(conn *amqp.Connection) (*confirmChannel, error) {
	ch, err := conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("open amqp channel: %w", err)
	}
	if err := ch.Confirm(false); err != nil {
		_ = ch.Close()
		return nil, fmt.Errorf("enable publisher confirms: %w", err)
	}
	cc := &confirmChannel{
		conn:     conn,
		ch:       ch,
		done:     make(chan struct{}),
		returned: map[string]int{},
	}
	closes := ch.NotifyClose(make(chan *amqp.Error, 1))
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		cc.closeErr = <-closes
		close(cc.done)
	}()
	if p.cfg.Mandatory {
		// The broker sends basic.return before the basic.ack of the same
		// message, and the library hands a return to each listener in turn
		// before it processes the next frame. Recording the return between
		// the two receives therefore finishes before the ack is seen.
		first := ch.NotifyReturn(make(chan amqp.Return))
		second := ch.NotifyReturn(make(chan amqp.Return))
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			for ret := range first {
				cc.addReturn(ret.MessageId)
				<-second
			}
		}()
	}
	return cc, nil
}

// Close closes the publisher's channel. Publishes still waiting fail with
// ErrPublisherClosed; the Conn stays open.
func (p *Publisher) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	cc := p.cur
	p.cur = nil
	p.mu.Unlock()
	var err error
	if cc != nil && !cc.ch.IsClosed() {
		err = cc.ch.Close()
	}
	p.wg.Wait()
	if err != nil && !errors.Is(err, amqp.ErrClosed) {
		return fmt.Errorf("close publisher channel: %w", err)
	}
	return nil
}

// confirmChannel is one channel in confirm mode.
type confirmChannel struct {
	conn     *amqp.Connection
	ch       *amqp.Channel
	done     chan struct{} // closed once the channel closed; closeErr is set then
	closeErr *amqp.Error

	mu       sync.Mutex
	returned map[string]int // message ids returned as unroutable, not yet claimed
}

func (c *confirmChannel) addReturn(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.returned[id]++
}

func (c *confirmChannel) takeReturn(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.returned[id]
	switch {
	case n == 0:
		return false
	case n == 1:
		delete(c.returned, id)
	default:
		c.returned[id] = n - 1
	}
	return true
}

func errOr(amqpErr *amqp.Error, fallback error) error {
	if amqpErr != nil {
		return amqpErr
	}
	return fallback
}

func randomID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
