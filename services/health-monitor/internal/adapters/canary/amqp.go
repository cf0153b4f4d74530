package canary

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cosmic-horizons/fleet/libs/amqpbus"
	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/services/health-monitor/internal/adapters/probes"
	"github.com/cosmic-horizons/fleet/services/health-monitor/internal/app"
	"github.com/cosmic-horizons/fleet/services/health-monitor/internal/domain"
)

// AMQPConfig configures the RabbitMQ canary.
type AMQPConfig struct {
	// Queue is the canary's own exclusive queue, bound to the job.events
	// exchange with RoutingKey. The key must not look like a job event key
	// ("job.…"), so that job watchers do not receive canaries.
	Queue      string
	RoutingKey string
	Timeout    time.Duration
	Producer   string
}

// AMQP is the RabbitMQ canary: each probe publishes one event to job.events
// with the canary routing key and waits for it on the canary queue.
type AMQP struct {
	cfg    AMQPConfig
	conn   *probes.AMQPConn
	rt     *roundTrip
	logger *slog.Logger
	reg    prometheus.Registerer

	life   context.Context
	stop   context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	pub    *amqpbus.Publisher
	closed bool
}

// NewAMQP returns the RabbitMQ canary; its queue and consumer are set up on
// the first probe.
func NewAMQP(cfg AMQPConfig, conn *probes.AMQPConn, codec *events.Codec, logger *slog.Logger, reg prometheus.Registerer) *AMQP {
	life, stop := context.WithCancel(context.Background())
	return &AMQP{
		cfg: cfg, conn: conn, logger: logger, reg: reg, life: life, stop: stop,
		rt: newRoundTrip("amqp:"+amqpbus.ExchangeJobEvents, conn.ComponentID(), cfg.Producer, cfg.Timeout, codec),
	}
}

// Name implements app.Probe.
func (a *AMQP) Name() string { return a.rt.componentID }

// Type implements app.Probe.
func (a *AMQP) Type() domain.ComponentType { return domain.TypeCanary }

// Probe implements app.Probe.
func (a *AMQP) Probe(ctx context.Context) app.Outcome {
	start := time.Now()
	conn, pub, err := a.setup(ctx)
	if err != nil {
		return a.rt.outcome(domain.StatusUnhealthy, err.Error(), start)
	}
	exchange := conn.Topology().JobEvents
	return a.rt.measure(ctx, func(ctx context.Context, msg *bus.Message) error {
		return pub.Publish(ctx, exchange, a.cfg.RoutingKey, msg)
	})
}

func (a *AMQP) setup(ctx context.Context) (*amqpbus.Conn, *amqpbus.Publisher, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return nil, nil, errors.New("canary closed")
	}
	conn, err := a.conn.Get(ctx)
	if err != nil {
		return nil, nil, err
	}
	if a.pub != nil {
		return conn, a.pub, nil
	}
	err = conn.DeclareQueue(ctx, amqpbus.QueueSpec{
		Name:         a.cfg.Queue,
		Bindings:     []amqpbus.Binding{{Exchange: conn.Topology().JobEvents, Pattern: a.cfg.RoutingKey}},
		Exclusive:    true,
		AutoDelete:   true,
		MaxLength:    1000,
		MessageTTL:   time.Minute,
		NoDeadLetter: true,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("declare canary queue: %w", err)
	}
	cons, err := amqpbus.NewConsumer(conn, amqpbus.DefaultConsumerConfig(a.cfg.Queue), a.rt.handle, a.logger, a.reg)
	if err != nil {
		return nil, nil, fmt.Errorf("canary consumer: %w", err)
	}
	pub, err := amqpbus.NewPublisher(conn, amqpbus.DefaultPublisherConfig(), a.logger, a.reg)
	if err != nil {
		return nil, nil, fmt.Errorf("canary publisher: %w", err)
	}
	a.wg.Go(func() {
		if err := cons.Run(a.life); err != nil {
			a.logger.Warn("amqp canary consumer stopped", slog.String("error", err.Error()))
		}
	})
	a.pub = pub
	return conn, pub, nil
}

// Latencies returns P50 and P99 of the kept round trips and their count.
func (a *AMQP) Latencies() (p50, p99 time.Duration, n int) { return a.rt.Latencies() }

// Close stops the consumer and the publisher; the connection is closed by its owner.
func (a *AMQP) Close() error {
	a.mu.Lock()
	a.closed = true
	pub := a.pub
	a.mu.Unlock()
	a.stop()
	a.wg.Wait()
	if pub != nil {
		return pub.Close()
	}
	return nil
}
