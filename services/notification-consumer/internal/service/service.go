// Package service is the composition root of the notification-consumer: it builds every
// part of the service explicitly and runs it in the shared service runtime.
//
// Delivery design: the job-lifecycle consumer only records pending
// deliveries, deduplicated on (event_id, channel, target), in the inbox
// transaction that also marks the event processed; the Kafka offset is
// marked after that commit, so no notification is lost. The dispatcher sends
// due deliveries with bounded per-target queues, retries transient failures
// with backoff and jitter, and records each outcome together with its
// notification.sent / notification.failed event (and, after the last
// attempt, the dead-letter copy) in an outbox that the relay publishes to
// Kafka. The one window for a duplicate is a crash after a channel accepted a
// notification and before its outcome committed: the delivery is sent again
// after its lease, with the same email Message-ID and webhook event id.
package service

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/cosmic-horizons/fleet/libs/amqpbus"
	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/inbox"
	"github.com/cosmic-horizons/fleet/libs/kafkabus"
	"github.com/cosmic-horizons/fleet/libs/outbox"
	svcruntime "github.com/cosmic-horizons/fleet/libs/service"
	"github.com/cosmic-horizons/fleet/libs/sqlstore"
	notificationpb "github.com/cosmic-horizons/fleet/proto/fleet/notification/v1"

	"github.com/cosmic-horizons/fleet/services/notification-consumer/internal/adapters/email"
	"github.com/cosmic-horizons/fleet/services/notification-consumer/internal/adapters/inapp"
	"github.com/cosmic-horizons/fleet/services/notification-consumer/internal/adapters/store"
	"github.com/cosmic-horizons/fleet/services/notification-consumer/internal/adapters/webhook"
	"github.com/cosmic-horizons/fleet/services/notification-consumer/internal/app"
	"github.com/cosmic-horizons/fleet/services/notification-consumer/internal/domain"
	"github.com/cosmic-horizons/fleet/services/notification-consumer/internal/ports"
	"github.com/cosmic-horizons/fleet/services/notification-consumer/internal/render"
)

// Name and default listen addresses of the notification-consumer.
const (
	Name            = "notification-consumer"
	DefaultGRPCAddr = ":50053"
	DefaultHTTPAddr = ":8083"
)

// Run loads the configuration through lookup, writes JSON logs to logOut and
// serves until ctx is done, then shuts down gracefully.
func Run(ctx context.Context, lookup svcruntime.LookupFunc, logOut io.Writer) error {
	defaults := svcruntime.DefaultConfig(Name, DefaultGRPCAddr, DefaultHTTPAddr)
	var n notifier
	return svcruntime.Main(ctx, defaults, lookup, logOut, n.wire, svcruntime.WithPrepare(n.prepare))
}

// notifier carries the configuration from prepare to wire within one Run.
type notifier struct {
	cfg Config
}

// prepare loads the configuration and installs the JWT interceptors on the
// gRPC server; health checks and reflection stay reachable without a token.
func (n *notifier) prepare(ctx context.Context, deps svcruntime.Deps) ([]svcruntime.Option, error) {
	cfg, err := LoadConfig(deps.Lookup)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	n.cfg = cfg
	svcruntime.LogConfig(ctx, deps.Logger, deps.Config, cfg)
	return svcruntime.AuthOptions(ctx, cfg.Auth, deps.Logger)
}

// wire builds the store, channels, dispatcher, relay, Kafka consumer and
// gRPC service. Closers run in reverse order: consumer, dispatcher, relay,
// AMQP, Kafka producer, database.
func (n *notifier) wire(ctx context.Context, deps svcruntime.Deps) error {
	cfg := n.cfg
	logger, rt := deps.Logger, deps.Runtime
	reg := rt.Registry()

	db, err := sqlstore.Open(ctx, sqlstore.Config{URL: cfg.DatabaseURL, Synchronous: sqlstore.SynchronousFull}, logger)
	if err != nil {
		return fmt.Errorf("open database: %w", err)
	}
	rt.OnShutdown("database", func(context.Context) error { return db.Close() })
	if err := inbox.Migrate(ctx, db); err != nil {
		return err
	}
	if err := store.Migrate(ctx, db); err != nil {
		return err
	}
	st := store.New(db)
	rt.AddReadinessCheck("database", db.Check)

	renderer, err := render.NewRenderer(cfg.SubjectTemplate, cfg.BodyTemplate)
	if err != nil {
		return err
	}

	conn := cfg.Kafka
	codec, schemas, err := kafkabus.NewCodec(conn, logger)
	if err != nil {
		return fmt.Errorf("event codec: %w", err)
	}
	rt.OnShutdown("schema registry", func(context.Context) error { return schemas.Close() })
	pcfg := kafkabus.DefaultProducerConfig(conn)
	pcfg.Schemas = codec
	producer, err := kafkabus.NewProducer(pcfg, logger, reg)
	if err != nil {
		return err
	}
	rt.OnShutdown("kafka producer", func(context.Context) error { return producer.Close() })

	amqpConn, err := amqpbus.Dial(ctx, amqpbus.DefaultConfig(cfg.AMQPURL), logger, reg)
	if err != nil {
		return fmt.Errorf("rabbitmq: %w", err)
	}
	rt.OnShutdown("rabbitmq", func(context.Context) error { return amqpConn.Close() })
	rt.AddReadinessCheck("rabbitmq", amqpConn.Check)
	publisher, err := amqpbus.NewPublisher(amqpConn, amqpbus.DefaultPublisherConfig(), logger, reg)
	if err != nil {
		return err
	}
	rt.OnShutdown("rabbitmq publisher", func(context.Context) error { return publisher.Close() })

	emailSender, err := email.NewSender(cfg.SMTP)
	if err != nil {
		return err
	}
	webhookSender, err := webhook.NewSender(cfg.Webhook, cfg.WebhookSecrets)
	if err != nil {
		return err
	}
	inappSender, err := inapp.NewSender(publisher, amqpbus.ExchangeNotifications)
	if err != nil {
		return err
	}
	senders := map[domain.Channel]app.Sender{
		domain.ChannelEmail: emailSender, domain.ChannelWebhook: webhookSender, domain.ChannelInApp: inappSender,
	}

	// The outbox relay (libs/outbox) publishes the outcome events to Kafka,
	// woken by every recorded outcome.
	wake := make(wakeChan, 1)
	rcfg := outbox.DefaultRelayConfig()
	rcfg.PollInterval, rcfg.Wake = cfg.Dispatcher.PollInterval*4, wake
	relay, err := outbox.NewRelay(rcfg, st, producer, nil, logger.With("component", "outbox-relay"), reg)
	if err != nil {
		return err
	}
	rt.Go("outbox relay", relay.Run)
	rt.AddReadinessCheck("outbox relay", relay.Check)
	dcfg := cfg.Dispatcher
	dcfg.Producer = Name
	dispatcher, err := app.NewDispatcher(dcfg, st, senders, codec, wake, logger.With("component", "dispatcher"))
	if err != nil {
		return err
	}
	rt.Go("dispatcher", dispatcher.Run)

	ib := inbox.New(db, Name, logger, reg)
	uow := inbox.NewUnitOfWork(ib, func(tx *sql.Tx, _ []*bus.Message) app.RecordTx { return st.Bind(tx) })
	recorder := app.NewRecorder(uow, codec, renderer, logger)
	handler := func(ctx context.Context, msg *bus.Message) error {
		if err := recorder.Handle(ctx, msg); err != nil {
			return err
		}
		dispatcher.Wake()
		return nil
	}
	rt.Go("inbox pruner", func(ctx context.Context) error {
		return pruneInbox(ctx, ib, logger)
	})
	ccfg := kafkabus.DefaultConsumerConfig(conn, cfg.ConsumerGroup, cfg.LifecycleTopic)
	ccfg.DLQ = producer
	consumer, err := kafkabus.NewConsumer(ccfg, handler, logger, reg)
	if err != nil {
		return err
	}
	rt.AddReadinessCheck("kafka consumer", consumer.Check)
	rt.Go("kafka consumer", consumer.Run)

	if cfg.WebhookSecrets.Owners == nil {
		logger.WarnContext(ctx, "webhook secrets have no owners ("+EnvWebhookOwners+" is unset): every user may sign with every configured secret")
	}
	rules := domain.ValidationRules{AllowHTTPWebhooks: cfg.Webhook.AllowHTTP, SecretUsable: cfg.WebhookSecrets.UsableBy}
	notificationpb.RegisterNotificationServiceServer(rt.GRPCServer(),
		ports.NewServer(app.NewNotifications(st, rules), ports.JWTAuthenticator{}))
	if errors.Is(ctx.Err(), context.Canceled) {
		return ctx.Err()
	}
	return nil
}

// InboxRetention is how long processed event ids are kept for dedup: longer
// than job-lifecycle's 30-day retention, the horizon of a redelivery.
const InboxRetention = 35 * 24 * time.Hour

// pruneInbox drops expired dedup marks once an hour until ctx ends.
func pruneInbox(ctx context.Context, ib *inbox.Inbox, logger *slog.Logger) error {
	ticker := time.NewTicker(time.Hour)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
		n, err := ib.PruneProcessed(ctx, InboxRetention)
		if err != nil && ctx.Err() == nil {
			logger.Warn("prune inbox", slog.String("error", err.Error()))
			continue
		}
		if n > 0 {
			logger.Info("pruned inbox", slog.Int64("deleted", n))
		}
	}
}

// wakeChan wakes the outbox relay without blocking.
type wakeChan chan struct{}

func (w wakeChan) Wake() {
	select {
	case w <- struct{}{}:
	default:
	}
}
