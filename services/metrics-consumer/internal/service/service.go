// Package service is the composition root of the metrics-consumer: it builds every
// part of the service explicitly and runs it in the shared service runtime.
package service

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cosmic-horizons/fleet/libs/auth"
	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/inbox"
	"github.com/cosmic-horizons/fleet/libs/kafkabus"
	svcruntime "github.com/cosmic-horizons/fleet/libs/service"
	"github.com/cosmic-horizons/fleet/libs/sqlstore"
	metricspb "github.com/cosmic-horizons/fleet/proto/fleet/metrics/v1"
	"github.com/cosmic-horizons/fleet/services/metrics-consumer/internal/adapters"
	"github.com/cosmic-horizons/fleet/services/metrics-consumer/internal/app"
	"github.com/cosmic-horizons/fleet/services/metrics-consumer/internal/ports"
)

// Name and default listen addresses of the metrics-consumer.
const (
	Name            = "metrics-consumer"
	DefaultGRPCAddr = ":50052"
	DefaultHTTPAddr = ":8082"
)

// Config is the metrics-consumer's own configuration, read from the
// environment next to the runtime's. The gRPC server's AUTH_* settings are
// read separately by prepare (see auth.LoadConfig).
type Config struct {
	// DatabaseURL (DATABASE_URL) selects the store: a SQLite file (default
	// sqlite:metrics-consumer.db, relative to the working directory) or
	// postgres://….
	DatabaseURL string
	// Kafka (KAFKA_BROKERS, KAFKA_CLIENT_ID, KAFKA_VERSION, KAFKA_TLS_*).
	Kafka kafkabus.Connection
	// Topics (METRICS_TOPICS, comma separated) are consumed; default
	// job-lifecycle,job-metrics. An entry "job-lifecycle=other" consumes
	// topic other holding job-lifecycle events (tests, staging copies).
	Topics []string
	// Schemas maps each consumed topic to the catalogue topic whose
	// schemas its events use.
	Schemas map[string]string
	// Group (METRICS_GROUP) is the consumer group and the inbox consumer
	// name; default metrics-consumer.
	Group string
	// BatchSize (METRICS_BATCH_SIZE) and BatchWait (METRICS_BATCH_WAIT)
	// shape the batches applied in one transaction.
	BatchSize int
	BatchWait time.Duration
	// DedupRetention (METRICS_DEDUP_RETENTION) is how long processed event
	// ids are kept; it must exceed the topics' retention. Default 35 days.
	DedupRetention time.Duration
}

// DefaultConfig returns the configuration before the environment is read.
func DefaultConfig() Config {
	return Config{
		DatabaseURL:    "sqlite:metrics-consumer.db",
		Topics:         []string{events.TopicJobLifecycle, events.TopicJobMetrics},
		Schemas:        map[string]string{events.TopicJobLifecycle: events.TopicJobLifecycle, events.TopicJobMetrics: events.TopicJobMetrics},
		Group:          app.ConsumerName,
		BatchSize:      1000,
		BatchWait:      20 * time.Millisecond,
		DedupRetention: 35 * 24 * time.Hour,
	}
}

// LoadConfig reads the environment through lookup over DefaultConfig.
func LoadConfig(lookup svcruntime.LookupFunc) (Config, error) {
	c := DefaultConfig()
	get := func(k string) string {
		v, _ := lookup(k)
		return strings.TrimSpace(v)
	}
	if v := get("DATABASE_URL"); v != "" {
		c.DatabaseURL = v
	}
	c.Kafka.Brokers = splitList(get("KAFKA_BROKERS"))
	c.Kafka.ClientID = cmpOr(get("KAFKA_CLIENT_ID"), Name)
	c.Kafka.Version = get("KAFKA_VERSION")
	c.Kafka.TLS = kafkabus.TLSConfig{CAFile: get("KAFKA_TLS_CA_FILE"), CertFile: get("KAFKA_TLS_CERT_FILE"),
		KeyFile: get("KAFKA_TLS_KEY_FILE"), ServerName: get("KAFKA_TLS_SERVER_NAME")}
	if v := get("METRICS_TOPICS"); v != "" {
		c.Topics, c.Schemas = nil, map[string]string{}
		for _, e := range splitList(v) {
			schema, name, ok := strings.Cut(e, "=")
			if !ok {
				name = schema
			}
			c.Topics = append(c.Topics, name)
			c.Schemas[name] = schema
		}
	}
	if v := get("METRICS_GROUP"); v != "" {
		c.Group = v
	}
	var err error
	if v := get("METRICS_BATCH_SIZE"); v != "" {
		if c.BatchSize, err = strconv.Atoi(v); err != nil {
			return c, fmt.Errorf("METRICS_BATCH_SIZE=%q: %w", v, err)
		}
	}
	if v := get("METRICS_BATCH_WAIT"); v != "" {
		if c.BatchWait, err = time.ParseDuration(v); err != nil {
			return c, fmt.Errorf("METRICS_BATCH_WAIT=%q: %w", v, err)
		}
	}
	if v := get("METRICS_DEDUP_RETENTION"); v != "" {
		if c.DedupRetention, err = time.ParseDuration(v); err != nil {
			return c, fmt.Errorf("METRICS_DEDUP_RETENTION=%q: %w", v, err)
		}
	}
	return c, c.Validate()
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	if err := c.Kafka.Validate(); err != nil {
		return fmt.Errorf("KAFKA_BROKERS: %w", err)
	}
	switch {
	case len(c.Topics) == 0:
		return errors.New("METRICS_TOPICS: no topic")
	case c.Group == "":
		return errors.New("METRICS_GROUP: empty")
	case c.BatchSize < 1:
		return fmt.Errorf("METRICS_BATCH_SIZE: %d < 1", c.BatchSize)
	case c.BatchWait <= 0:
		return fmt.Errorf("METRICS_BATCH_WAIT: %s <= 0", c.BatchWait)
	case c.DedupRetention <= 0:
		return fmt.Errorf("METRICS_DEDUP_RETENTION: %s <= 0", c.DedupRetention)
	}
	for _, t := range c.Topics {
		switch c.Schemas[t] {
		case events.TopicJobLifecycle, events.TopicJobMetrics:
		default:
			return fmt.Errorf("METRICS_TOPICS: topic %s: events of %q are not aggregated (want %s or %s)",
				t, c.Schemas[t], events.TopicJobLifecycle, events.TopicJobMetrics)
		}
	}
	return sqlstore.Config{URL: c.DatabaseURL}.Validate()
}

func splitList(s string) []string {
	var out []string
	for p := range strings.SplitSeq(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// Run loads the configuration through lookup, writes JSON logs to logOut and
// serves until ctx is done, then shuts down gracefully.
func Run(ctx context.Context, lookup svcruntime.LookupFunc, logOut io.Writer) error {
	defaults := svcruntime.DefaultConfig(Name, DefaultGRPCAddr, DefaultHTTPAddr)
	return svcruntime.Main(ctx, defaults, lookup, logOut, wire, svcruntime.WithPrepare(prepare))
}

// prepare reads the AUTH_* configuration and installs the JWT interceptors
// on the gRPC server; health checks and reflection stay reachable without a
// token. Authentication is the server's concern only, so the rebuild command
// does not need it.
func prepare(ctx context.Context, deps svcruntime.Deps) ([]svcruntime.Option, error) {
	cfg, err := auth.LoadConfig(deps.Lookup)
	if err != nil {
		return nil, err
	}
	return svcruntime.AuthOptions(ctx, cfg, deps.Logger)
}

// parts are what the service and the rebuild command share.
type parts struct {
	cfg      Config
	db       *sqlstore.DB
	inbox    *inbox.Inbox
	jobs     *adapters.JobRepository
	ingest   *app.Ingest
	dlq      *kafkabus.Producer
	consumer *kafkabus.Consumer
	schemas  *kafkabus.SchemaRegistry
}

// build opens the store (migrating it) and prepares the consumer. The
// caller closes dlq and db.
func build(ctx context.Context, cfg Config, logger *slog.Logger, reg prometheus.Registerer) (*parts, error) {
	db, err := sqlstore.Open(ctx, sqlstore.Config{URL: cfg.DatabaseURL, Synchronous: sqlstore.SynchronousFull}, logger)
	if err != nil {
		return nil, err
	}
	p := &parts{cfg: cfg, db: db}
	fail := func(err error) (*parts, error) {
		p.close()
		return nil, err
	}
	if err := inbox.Migrate(ctx, db); err != nil {
		return fail(fmt.Errorf("migrate inbox: %w", err))
	}
	if err := adapters.Migrate(ctx, db); err != nil {
		return fail(fmt.Errorf("migrate store: %w", err))
	}
	codec, schemas, err := kafkabus.NewCodec(cfg.Kafka, logger)
	if err != nil {
		return fail(err)
	}
	p.schemas = schemas
	p.inbox = inbox.New(db, cfg.Group, logger, reg)
	p.jobs = adapters.NewJobRepository(db)
	jobs := p.jobs
	uow := inbox.NewUnitOfWork(p.inbox, func(tx *sql.Tx, msgs []*bus.Message) app.JobWriter { return jobs.Bind(tx, msgs) })
	p.ingest = app.NewIngest(uow, codec, cfg.Schemas)
	pcfg := kafkabus.DefaultProducerConfig(cfg.Kafka)
	if p.dlq, err = kafkabus.NewProducer(pcfg, logger, reg); err != nil {
		return fail(fmt.Errorf("dead-letter producer: %w", err))
	}
	ccfg := kafkabus.DefaultConsumerConfig(cfg.Kafka, cfg.Group, cfg.Topics...)
	ccfg.DLQ = p.dlq
	ccfg.BatchSize, ccfg.BatchWait = cfg.BatchSize, cfg.BatchWait
	ccfg.CommitInterval = 200 * time.Millisecond
	if p.consumer, err = kafkabus.NewBatchConsumer(ccfg, p.ingest.HandleBatch, p.ingest.Handle, logger, reg); err != nil {
		return fail(err)
	}
	return p, nil
}

func (p *parts) close() error {
	var err error
	if p.dlq != nil {
		err = p.dlq.Close()
	}
	if p.schemas != nil {
		err = errors.Join(err, p.schemas.Close())
	}
	return errors.Join(err, p.db.Close())
}

// wire builds the store, the consumer, the gRPC MetricsService and the
// Prometheus collector, and starts consuming.
func wire(ctx context.Context, deps svcruntime.Deps) error {
	cfg, err := LoadConfig(deps.Lookup)
	if err != nil {
		return err
	}
	rt, logger := deps.Runtime, deps.Logger
	p, err := build(ctx, cfg, logger, rt.Registry())
	if err != nil {
		return err
	}
	rt.OnShutdown("store and dead-letter producer", func(context.Context) error { return p.close() })
	rt.AddReadinessCheck("database", p.db.Check)
	rt.AddReadinessCheck("kafka consumer", p.consumer.Check)

	metricspb.RegisterMetricsServiceServer(rt.GRPCServer(), ports.NewMetricsServer(app.NewQueries(p.jobs), logger))
	if err := rt.Registry().Register(ports.NewCollector(p.jobs, logger)); err != nil {
		return fmt.Errorf("register job metrics: %w", err)
	}

	rt.Go("kafka consumer", p.consumer.Run)
	rt.Go("inbox pruner", func(ctx context.Context) error {
		pruneLoop(ctx, p.inbox, cfg.DedupRetention, logger)
		return nil
	})
	logger.InfoContext(ctx, "consuming", "topics", cfg.Topics, "group", cfg.Group, "batch_size", cfg.BatchSize)
	return nil
}

// pruneLoop deletes dedup marks older than retention every hour.
func pruneLoop(ctx context.Context, ib *inbox.Inbox, retention time.Duration, logger *slog.Logger) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := ib.PruneProcessed(ctx, retention); err != nil && ctx.Err() == nil {
				logger.Warn("prune dedup marks", "error", err)
			}
		}
	}
}
