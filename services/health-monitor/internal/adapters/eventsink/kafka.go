// Package eventsink publishes the health-monitor's events to Kafka with the
// events codec, through a producer created on first use.
package eventsink

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/kafkabus"
)

// LazyProducer creates a kafkabus producer on first use and keeps it; a
// failed creation is tried again on the next use. It is safe for concurrent use.
type LazyProducer struct {
	cfg    kafkabus.ProducerConfig
	logger *slog.Logger
	reg    prometheus.Registerer

	mu sync.Mutex
	p  *kafkabus.Producer
}

// NewLazyProducer returns a producer of cfg created on first use.
func NewLazyProducer(cfg kafkabus.ProducerConfig, logger *slog.Logger, reg prometheus.Registerer) *LazyProducer {
	return &LazyProducer{cfg: cfg, logger: logger, reg: reg}
}

// Get returns the producer, creating it when needed.
func (l *LazyProducer) Get() (*kafkabus.Producer, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.p != nil {
		return l.p, nil
	}
	p, err := kafkabus.NewProducer(l.cfg, l.logger, l.reg)
	if err != nil {
		return nil, fmt.Errorf("kafka producer: %w", err)
	}
	l.p = p
	return p, nil
}

// Close flushes and closes the producer if it was created.
func (l *LazyProducer) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.p == nil {
		return nil
	}
	err := l.p.Close()
	l.p = nil
	return err
}

// Kafka publishes events to their topic (system-health for the monitor's
// events), keyed by component id. Publish hands the message over and returns;
// a failed delivery is logged. The idempotent producer keeps the order of
// the events of one partition.
type Kafka struct {
	producer *LazyProducer
	codec    *events.Codec
	logger   *slog.Logger
}

// NewKafka returns a sink publishing through producer.
func NewKafka(producer *LazyProducer, codec *events.Codec, logger *slog.Logger) *Kafka {
	return &Kafka{producer: producer, codec: codec, logger: logger}
}

// Publish implements app.EventSink.
func (k *Kafka) Publish(ctx context.Context, ev events.Event) error {
	msg, err := k.codec.Message(ev)
	if err != nil {
		return fmt.Errorf("encode %s: %w", ev.EventType, err)
	}
	p, err := k.producer.Get()
	if err != nil {
		return err
	}
	return p.PublishAsync(ctx, msg, func(err error) {
		if err != nil {
			k.logger.Warn("health event not delivered", slog.String("event_type", ev.EventType),
				slog.String("event_id", ev.EventID), slog.String("error", err.Error()))
		}
	})
}
