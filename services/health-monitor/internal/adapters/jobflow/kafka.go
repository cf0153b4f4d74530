// Package jobflow feeds the health-monitor's job flow from the
// job-lifecycle topic through a kafkabus consumer group of its own.
package jobflow

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/kafkabus"
	"github.com/cosmic-horizons/fleet/libs/retry"
	"github.com/cosmic-horizons/fleet/services/health-monitor/internal/domain"
)

// Observer takes the transitions read from the topic.
type Observer interface {
	Observe(domain.JobTransition)
}

// ProducerSource returns the producer dead letters go to; it may fail while
// Kafka is unreachable and is asked again on the next attempt.
type ProducerSource func() (*kafkabus.Producer, error)

// Config names what the consumer reads.
type Config struct {
	Connection kafkabus.Connection
	// Topic carries job-lifecycle events (the catalogue's job-lifecycle,
	// or a prefixed copy of it).
	Topic string
	// Group is the consumer group. Every monitor replica needs the whole
	// flow, so each has its own group; a new group starts at the newest
	// offsets: the flow covers what happened since the monitor started.
	Group string
	// Retry paces new attempts after Kafka could not be reached.
	Retry bus.RetryPolicy
}

// Consumer runs a kafkabus consumer of Config.Topic that feeds an Observer,
// and starts a new one whenever the previous could not connect. It is safe
// for concurrent use.
type Consumer struct {
	cfg      Config
	producer ProducerSource
	codec    *events.Codec
	observer Observer
	logger   *slog.Logger
	reg      prometheus.Registerer
	current  atomic.Pointer[kafkabus.Consumer]
}

// NewConsumer returns a consumer; Run starts it.
func NewConsumer(cfg Config, producer ProducerSource, codec *events.Codec, observer Observer, logger *slog.Logger, reg prometheus.Registerer) *Consumer {
	if cfg.Retry == (bus.RetryPolicy{}) {
		cfg.Retry = bus.RetryPolicy{MaxAttempts: 1, InitialBackoff: time.Second, MaxBackoff: 30 * time.Second}
	}
	return &Consumer{cfg: cfg, producer: producer, codec: codec, observer: observer,
		logger: logger.With("component", "job flow", "topic", cfg.Topic), reg: reg}
}

// Consuming reports whether the consumer has joined its group and started
// on every partition it was assigned.
func (c *Consumer) Consuming() bool {
	k := c.current.Load()
	return k != nil && k.Ready()
}

// Run consumes until ctx is done. Failures to reach Kafka are logged and
// retried with backoff; only a configuration error ends it early.
func (c *Consumer) Run(ctx context.Context) error {
	restart := c.cfg.Retry
	restart.MaxAttempts = 0 // restarts go on until ctx ends
	err := retry.Do(ctx, restart, func(int) error {
		err := c.runOnce(ctx)
		var cfgErr configError
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.As(err, &cfgErr):
			return retry.Permanent(err)
		}
		return err
	}, func(_ int, wait time.Duration, err error) {
		c.logger.WarnContext(ctx, "job-lifecycle consumer stopped; starting again", "error", err, "retry_in", wait)
	})
	if ctx.Err() != nil {
		return nil
	}
	return err
}

type configError struct{ error }

func (c *Consumer) runOnce(ctx context.Context) error {
	dlq, err := c.producer()
	if err != nil {
		return err
	}
	kcfg := kafkabus.DefaultConsumerConfig(c.cfg.Connection, c.cfg.Group, c.cfg.Topic)
	kcfg.DLQ = dlq
	kcfg.InitialOffset = kafkabus.OffsetNewest
	k, err := kafkabus.NewConsumer(kcfg, c.Handle, c.logger, c.reg)
	if err != nil {
		return configError{err}
	}
	c.current.Store(k)
	defer c.current.Store(nil)
	if err := k.Run(ctx); err != nil {
		return err
	}
	if ctx.Err() == nil {
		return errors.New("consumer ended")
	}
	return nil
}

// Handle decodes one job-lifecycle message and passes its transition on.
// A message that does not decode is a permanent failure (dead-lettered).
func (c *Consumer) Handle(_ context.Context, msg *bus.Message) error {
	m := *msg
	m.Topic = events.TopicJobLifecycle // the topic may carry a prefix
	ev, err := c.codec.FromMessage(&m)
	if err != nil {
		return err
	}
	if t, ok := Transition(ev); ok {
		c.observer.Observe(t)
	}
	return nil
}

// Transition maps a job-lifecycle event onto the job flow's input; false
// for an event that is not a job transition.
func Transition(ev events.Event) (domain.JobTransition, bool) {
	t := domain.JobTransition{At: ev.OccurredAt}
	switch p := ev.Payload.(type) {
	case events.JobSubmitted:
		t.JobID, t.To, t.System = p.JobID, string(p.ToStatus), strings.ToLower(string(p.TaccSystem))
	case events.JobQueued:
		t.JobID, t.To = p.JobID, string(p.ToStatus)
	case events.JobRunning:
		t.JobID, t.To = p.JobID, string(p.ToStatus)
	case events.JobCompleted:
		t.JobID, t.To = p.JobID, string(p.ToStatus)
	case events.JobFailed:
		t.JobID, t.To, t.ErrorCode = p.JobID, string(p.ToStatus), p.ErrorCode
	case events.JobCancelled:
		t.JobID, t.To = p.JobID, string(p.ToStatus)
	default:
		return domain.JobTransition{}, false
	}
	return t, true
}
