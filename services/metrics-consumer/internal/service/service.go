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
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cosmic-horizons/fleet/libs/auth"
	"github.com/cosmic-horizons/fleet/libs/bus"
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
	svcruntime.LogConfig(ctx, logger, deps.Config, cfg)
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
