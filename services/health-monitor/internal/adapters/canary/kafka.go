package canary

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/kafkabus"
	"github.com/cosmic-horizons/fleet/services/health-monitor/internal/adapters/eventsink"
	"github.com/cosmic-horizons/fleet/services/health-monitor/internal/adapters/probes"
	"github.com/cosmic-horizons/fleet/services/health-monitor/internal/app"
	"github.com/cosmic-horizons/fleet/services/health-monitor/internal/domain"
)

// KafkaConfig configures the Kafka canary.
type KafkaConfig struct {
	Connection kafkabus.Connection
	// Topic is the canary's own topic, created with kafkabus.EnsureTopics
	// from Spec (its Name is set to Topic).
	Topic string
	Spec  events.TopicSpec
	// Group is the canary's own consumer group; it starts at the newest offset.
	Group   string
	Timeout time.Duration
	// Producer names the service in the canary events.
	Producer string
}

// Kafka is the Kafka canary: each probe publishes one event to the canary
// topic and waits for the canary's consumer group to receive it.
type Kafka struct {
	cfg      KafkaConfig
	producer *eventsink.LazyProducer
	rt       *roundTrip
	logger   *slog.Logger
	reg      prometheus.Registerer

	life   context.Context
	stop   context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	topic  bool
	cons   *kafkabus.Consumer
	closed bool
}

// NewKafka returns the Kafka canary; its consumer starts on the first probe.
func NewKafka(cfg KafkaConfig, producer *eventsink.LazyProducer, codec *events.Codec, logger *slog.Logger, reg prometheus.Registerer) *Kafka {
	life, stop := context.WithCancel(context.Background())
	cfg.Spec.Name = cfg.Topic
	return &Kafka{
		cfg: cfg, producer: producer, logger: logger, reg: reg, life: life, stop: stop,
		rt: newRoundTrip("kafka:"+cfg.Topic, probes.KafkaClusterID, cfg.Producer, cfg.Timeout, codec),
	}
}

// Name implements app.Probe.
func (k *Kafka) Name() string { return k.rt.componentID }

// Type implements app.Probe.
func (k *Kafka) Type() domain.ComponentType { return domain.TypeCanary }

// Probe implements app.Probe.
func (k *Kafka) Probe(ctx context.Context) app.Outcome {
	start := time.Now()
	p, ready, err := k.setup(ctx)
	switch {
	case err != nil:
		return k.rt.outcome(domain.StatusUnhealthy, err.Error(), start)
	case !ready:
		return k.rt.outcome(domain.StatusUnknown, "waiting for the canary consumer group to be assigned", start)
	}
	return k.rt.measure(ctx, func(ctx context.Context, msg *bus.Message) error {
		msg.Topic, msg.Key = k.cfg.Topic, ""
		return p.Publish(ctx, msg)
	})
}

// setup creates the canary topic and its dead-letter topic once, the producer, and (again, after it
// stopped) the consumer, and reports whether the consumer is assigned.
func (k *Kafka) setup(ctx context.Context) (*kafkabus.Producer, bool, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return nil, false, errors.New("canary closed")
	}
	if !k.topic {
		// The consumer needs the dead-letter topic to start.
		dlq := k.cfg.Spec
		dlq.Name, dlq.Partitions = events.DLQTopic(k.cfg.Spec.Name), 1
		_, err := kafkabus.EnsureTopics(ctx, k.cfg.Connection.Brokers, []events.TopicSpec{k.cfg.Spec, dlq}, k.logger,
			kafkabus.EnsureOptions{TLS: k.cfg.Connection.TLS, ClientID: k.cfg.Connection.ClientID, Version: k.cfg.Connection.Version})
		if err != nil && !errors.Is(err, kafkabus.ErrTopicMismatch) {
			return nil, false, fmt.Errorf("canary topic: %w", err)
		}
		k.topic = true
	}
	p, err := k.producer.Get()
	if err != nil {
		return nil, false, err
	}
	if k.cons == nil {
		cfg := kafkabus.DefaultConsumerConfig(k.cfg.Connection, k.cfg.Group, k.cfg.Topic)
		cfg.DLQ = p
		cfg.InitialOffset = kafkabus.OffsetNewest
		cfg.SessionTimeout = 6 * time.Second
		cons, err := kafkabus.NewConsumer(cfg, k.rt.handle, k.logger, k.reg)
		if err != nil {
			return nil, false, fmt.Errorf("canary consumer: %w", err)
		}
		k.cons = cons
		k.wg.Go(func() {
			if err := cons.Run(k.life); err != nil {
				k.logger.Warn("kafka canary consumer stopped", slog.String("error", err.Error()))
			}
			k.mu.Lock()
			if k.cons == cons {
				k.cons = nil
			}
			k.mu.Unlock()
		})
	}
	return p, k.cons.Ready(), nil
}

// Latencies returns P50 and P99 of the kept round trips and their count.
func (k *Kafka) Latencies() (p50, p99 time.Duration, n int) { return k.rt.Latencies() }

// Close stops the consumer, which leaves its group.
func (k *Kafka) Close() error {
	k.mu.Lock()
	k.closed = true
	k.mu.Unlock()
	k.stop()
	k.wg.Wait()
	return nil
}
