// Package service is the composition root of the compliance-auditor: it builds every
// part of the service explicitly and runs it in the shared service runtime.
package service

import (
	"context"
	"crypto/rand"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/cosmic-horizons/fleet/libs/auditchain"
	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/inbox"
	"github.com/cosmic-horizons/fleet/libs/kafkabus"
	svcruntime "github.com/cosmic-horizons/fleet/libs/service"
	"github.com/cosmic-horizons/fleet/libs/sqlstore"
	auditpb "github.com/cosmic-horizons/fleet/proto/fleet/audit/v1"
	"github.com/cosmic-horizons/fleet/services/compliance-auditor/internal/adapters"
	"github.com/cosmic-horizons/fleet/services/compliance-auditor/internal/app"
	"github.com/cosmic-horizons/fleet/services/compliance-auditor/internal/ports"
)

// Name and default listen addresses of the compliance-auditor.
const (
	Name            = "compliance-auditor"
	DefaultGRPCAddr = ":50054"
	DefaultHTTPAddr = ":8084"
)

// Run loads the configuration through lookup, writes JSON logs to logOut and
// serves until ctx is done, then shuts down gracefully.
func Run(ctx context.Context, lookup svcruntime.LookupFunc, logOut io.Writer) error {
	defaults := svcruntime.DefaultConfig(Name, DefaultGRPCAddr, DefaultHTTPAddr)
	var a auditor
	return svcruntime.Main(ctx, defaults, lookup, logOut, a.wire, svcruntime.WithPrepare(a.prepare))
}

// auditor carries the configuration from prepare to wire within one Run.
type auditor struct {
	cfg Config
}

// prepare loads the configuration and installs the JWT interceptors on the
// gRPC server; health checks and reflection stay reachable without a token.
// The AuditService itself admits admins only (see ports.AuditServer).
func (a *auditor) prepare(ctx context.Context, deps svcruntime.Deps) ([]svcruntime.Option, error) {
	cfg, err := LoadConfig(deps.Lookup)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	a.cfg = cfg
	svcruntime.LogConfig(ctx, deps.Logger, deps.Config, cfg)
	return svcruntime.AuthOptions(ctx, cfg.Auth, deps.Logger)
}

// signer loads the checkpoint key. Without one configured it generates a key
// for this process only and warns: its checkpoints cannot be verified after a
// restart, which suits a laptop and nothing else.
func signer(cfg Config, logger *slog.Logger) (*auditchain.Signer, error) {
	if cfg.Keys.HasPrivateKey() {
		return cfg.Keys.LoadSigner()
	}
	_, priv, err := auditchain.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	s, err := auditchain.NewSigner(priv)
	if err != nil {
		return nil, err
	}
	logger.Warn("no checkpoint signing key configured; using a key of this process only",
		slog.String("set", auditchain.EnvSigningKey+" or "+auditchain.EnvSigningKeyFile), slog.String("key_id", s.KeyID()))
	return s, nil
}

// wire builds the store, the recorder and its Kafka consumer, the checkpoint,
// retention and alert loops, and the gRPC AuditService. Closers run in
// reverse order: consumer, loops (the checkpointer signs a last checkpoint),
// Kafka producer, database.
func (a *auditor) wire(ctx context.Context, deps svcruntime.Deps) error {
	cfg := a.cfg
	logger, rt := deps.Logger, deps.Runtime
	reg := rt.Registry()

	db, err := sqlstore.Open(ctx, sqlstore.Config{URL: cfg.DatabaseURL, Synchronous: sqlstore.SynchronousFull}, logger)
	if err != nil {
		return fmt.Errorf("open database: %w", err)
	}
	rt.OnShutdown("database", func(context.Context) error { return db.Close() })
	if err := adapters.Migrate(ctx, db); err != nil {
		return err
	}
	rt.AddReadinessCheck("database", db.Check)
	repo := adapters.NewRepository(db)
	if err := repo.Prepare(ctx); err != nil {
		return err
	}

	sign, err := signer(cfg, logger)
	if err != nil {
		return fmt.Errorf("checkpoint key: %w", err)
	}
	var (
		producer *kafkabus.Producer
		codec    *events.Codec
	)
	conn := cfg.Kafka
	if len(conn.Brokers) > 0 {
		var schemas *kafkabus.SchemaRegistry
		if codec, schemas, err = kafkabus.NewCodec(conn, logger); err != nil {
			return fmt.Errorf("event codec: %w", err)
		}
		rt.OnShutdown("schema registry", func(context.Context) error { return schemas.Close() })
		pcfg := kafkabus.DefaultProducerConfig(conn)
		pcfg.Schemas = codec
		if producer, err = kafkabus.NewProducer(pcfg, logger, reg); err != nil {
			return err
		}
		rt.OnShutdown("kafka producer", func(context.Context) error { return producer.Close() })
		alerter := app.NewGapAlerter(repo, producer, codec, cfg.AlertTopic, Name, time.Second, logger.With("component", "gap-alerter"), nil)
		rt.Go("gap alerter", alerter.Run)
	}

	keys, err := cfg.Keys.LoadKeySet(sign.PublicKey())
	if err != nil {
		return fmt.Errorf("checkpoint keys: %w", err)
	}
	logger.Info("audit checkpoint keys", slog.String("signing_key_id", sign.KeyID()), slog.String("verifying_key_ids", keys.String()))
	checkpointer := app.NewCheckpointer(repo, sign, keys, cfg.CheckpointInterval, int64(cfg.CheckpointRecords), logger.With("component", "checkpointer"), nil)
	rt.Go("checkpointer", checkpointer.Run)
	retention := app.NewRetention(repo, cfg.Retention, cfg.RetentionInterval, logger.With("component", "retention"), nil)
	rt.Go("retention", retention.Run)

	if producer != nil {
		ib := inbox.New(db, Name, logger, reg)
		uow := inbox.NewUnitOfWork(ib, func(tx *sql.Tx, msgs []*bus.Message) app.RecordTx { return repo.Bind(tx, msgs) })
		recorder := app.NewRecorder(uow, codec, logger.With("component", "recorder"), nil, checkpointer.Appended)
		ccfg := kafkabus.DefaultConsumerConfig(conn, cfg.ConsumerGroup, cfg.Topics...)
		ccfg.DLQ = producer
		ccfg.BatchSize = cfg.BatchSize
		consumer, err := kafkabus.NewBatchConsumer(ccfg, recorder.HandleBatch, recorder.Handle, logger, reg)
		if err != nil {
			return err
		}
		rt.AddReadinessCheck("kafka consumer", consumer.Check)
		rt.Go("kafka consumer", consumer.Run)
	} else {
		logger.Warn("no Kafka brokers configured; serving the stored trail without consuming", slog.String("set", EnvKafkaBrokers))
	}

	trail := app.NewTrail(repo, checkpointer, app.TrailConfig{Keys: keys, Retention: cfg.Retention})
	auditpb.RegisterAuditServiceServer(rt.GRPCServer(), ports.NewAuditServer(trail, logger.With("component", "audit-service")))
	return ctx.Err()
}
