package service

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cosmic-horizons/fleet/libs/amqpbus"
	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/kafkabus"
	"github.com/cosmic-horizons/fleet/services/health-monitor/internal/adapters/canary"
	"github.com/cosmic-horizons/fleet/services/health-monitor/internal/adapters/eventsink"
	"github.com/cosmic-horizons/fleet/services/health-monitor/internal/adapters/jobflow"
	"github.com/cosmic-horizons/fleet/services/health-monitor/internal/adapters/probes"
	"github.com/cosmic-horizons/fleet/services/health-monitor/internal/app"
	"github.com/cosmic-horizons/fleet/services/health-monitor/internal/domain"
)

// canaryRetention keeps canary messages briefly: they are only read live.
const canaryRetention = time.Hour

// HealthMonitor is the assembled monitor: probes, canaries, event sink,
// the monitor itself and the hub its statuses go to.
type HealthMonitor struct {
	Hub     *app.Hub
	Monitor *app.Monitor
	// KafkaCanary and AMQPCanary are nil when disabled or unconfigured.
	KafkaCanary *canary.Kafka
	AMQPCanary  *canary.AMQP
	// JobFlow consumes job-lifecycle for the "jobs" component; nil when
	// disabled or without Kafka. Its Run must be started by the caller.
	JobFlow *jobflow.Consumer
	closers []func() error
}

// Option adjusts NewHealthMonitor.
type Option func(*options)

type options struct {
	wrapSink func(app.EventSink) app.EventSink
}

// WithSinkWrapper wraps the event sink (nil without Kafka), for example to
// observe the published events.
func WithSinkWrapper(wrap func(app.EventSink) app.EventSink) Option {
	return func(o *options) { o.wrapSink = wrap }
}

// NewHealthMonitor builds the monitor of cfg. Nothing connects yet: every
// broker, service and database is reached on the first probe cycle, so the
// monitor starts (and reports) while parts of the fleet are down.
func NewHealthMonitor(cfg Config, logger *slog.Logger, reg prometheus.Registerer, opts ...Option) (hm *HealthMonitor, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	hm = &HealthMonitor{Hub: app.NewHub()}
	defer func() {
		if err != nil {
			err = errors.Join(err, hm.Close())
		}
	}()
	var ps []app.Probe
	var sink app.EventSink
	conn := cfg.Kafka
	if conn.ClientID == "" {
		conn.ClientID = Name
	}
	codec, schemas, err := kafkabus.NewCodec(conn, logger)
	if err != nil {
		return nil, fmt.Errorf("events codec: %w", err)
	}
	hm.closers = append(hm.closers, schemas.Close)
	if len(conn.Brokers) > 0 {
		// The cluster and lag probes each have a client: a failure of one
		// (and its reconnect) never closes the other's connection.
		clusterClient, err := probes.NewKafkaClient(conn, cfg.ProbeTimeout)
		if err != nil {
			return nil, err
		}
		lagClient, err := probes.NewKafkaClient(conn, cfg.ProbeTimeout)
		if err != nil {
			return nil, err
		}
		hm.closers = append(hm.closers, clusterClient.Close, lagClient.Close)
		specs, err := events.Catalogue(cfg.Topics)
		if err != nil {
			return nil, err
		}
		pcfg := kafkabus.DefaultProducerConfig(conn)
		pcfg.Schemas = codec
		producer := eventsink.NewLazyProducer(pcfg, logger, reg)
		hm.closers = append(hm.closers, producer.Close)
		sink = eventsink.NewKafka(producer, codec, logger)
		ps = append(ps,
			probes.NewKafkaClusterProbe(clusterClient),
			probes.NewTopicsProbe(conn, specs),
			probes.NewLagProbe(lagClient, probes.LagConfig{Prefix: cfg.GroupPrefix, Exclude: []string{cfg.CanaryGroup}, Threshold: cfg.LagThreshold, StallAfter: cfg.StallAfter}),
		)
		if cfg.CanaryEnabled {
			spec := events.TopicSpec{Name: cfg.CanaryTopic, Key: events.KeyNone, Partitions: 1, Retention: canaryRetention,
				Compression: "zstd", ReplicationFactor: cfg.Topics.ReplicationFactor, MinInsyncReplicas: cfg.Topics.MinInsyncReplicas}
			hm.KafkaCanary = canary.NewKafka(canary.KafkaConfig{
				Connection: conn, Topic: cfg.CanaryTopic, Spec: spec, Group: cfg.CanaryGroup,
				Timeout: cfg.CanaryTimeout, Producer: Name,
			}, producer, codec, logger, reg)
			// Stopped before the producer it uses closes.
			hm.closers = append(hm.closers, hm.KafkaCanary.Close)
			ps = append(ps, hm.KafkaCanary)
		}
		if cfg.JobsEnabled {
			flow, err := domain.NewJobFlow(cfg.JobFlow)
			if err != nil {
				return nil, err
			}
			probe := app.NewJobFlow(flow, func() bool { return hm.JobFlow.Consuming() }, probes.KafkaClusterID)
			hm.JobFlow = jobflow.NewConsumer(jobflow.Config{Connection: conn, Topic: cfg.JobsTopic, Group: cfg.JobsGroup},
				producer.Get, codec, probe, logger, reg)
			ps = append(ps, probe)
		}
	}
	if cfg.AMQPURL != "" {
		acfg := amqpbus.DefaultConfig(cfg.AMQPURL)
		acfg.ConnectionName = Name
		acfg.DialTimeout = cfg.ProbeTimeout
		acfg.ReconnectMax = cfg.Interval
		conn, err := probes.NewAMQPConn(acfg, logger, reg)
		if err != nil {
			return nil, err
		}
		hm.closers = append(hm.closers, conn.Close)
		ps = append(ps, probes.NewRabbitMQProbe(conn, probes.RabbitMQConfig{ManagementURL: cfg.RabbitMQMgmtURL, DepthThreshold: cfg.QueueDepthThreshold}))
		if cfg.CanaryEnabled {
			hm.AMQPCanary = canary.NewAMQP(canary.AMQPConfig{
				Queue: cfg.CanaryQueue, RoutingKey: cfg.CanaryRoutingKey, Timeout: cfg.CanaryTimeout, Producer: Name,
			}, conn, codec, logger, reg)
			hm.closers = append(hm.closers, hm.AMQPCanary.Close)
			ps = append(ps, hm.AMQPCanary)
		}
	}
	for _, s := range cfg.Services {
		p, err := probes.NewGRPCHealthProbe(s.Name, s.Addr)
		if err != nil {
			return nil, err
		}
		hm.closers = append(hm.closers, p.Close)
		ps = append(ps, p)
	}
	for _, d := range cfg.Databases {
		p, err := probes.NewDatabaseProbe(d.Name, d.Addr)
		if err != nil {
			return nil, err
		}
		hm.closers = append(hm.closers, p.Close)
		ps = append(ps, p)
	}
	if o.wrapSink != nil {
		sink = o.wrapSink(sink)
	}
	mon, err := app.NewMonitor(app.Config{
		Interval: cfg.Interval, ProbeTimeout: cfg.ProbeTimeout, PublishEvery: cfg.PublishEvery, Producer: Name,
		Hysteresis: domainHysteresis(cfg),
	}, ps, sink, hm.Hub, logger, reg)
	if err != nil {
		return nil, err
	}
	hm.Monitor = mon
	names := make([]string, len(ps))
	for i, p := range ps {
		names[i] = p.Name()
	}
	logger.Info("health monitor configured", slog.String("interval", cfg.Interval.String()),
		slog.String("probes", strings.Join(names, ", ")))
	return hm, nil
}

// Close releases everything in reverse order of construction.
func (h *HealthMonitor) Close() error {
	var errs []error
	for i := len(h.closers) - 1; i >= 0; i-- {
		errs = append(errs, h.closers[i]())
	}
	h.closers = nil
	return errors.Join(errs...)
}
