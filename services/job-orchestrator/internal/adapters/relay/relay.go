// Package relay drains the transactional outbox: it claims pending outbox
// rows, publishes each to Kafka (and job-lifecycle events also to RabbitMQ's
// job.events exchange) and marks them sent.
//
// Guarantees:
//
//   - Per-job order. A job's events are published strictly in their outbox
//     sequence: row n+1 is handed to a broker only after row n was
//     acknowledged by Kafka (and, when routed there, confirmed by
//     RabbitMQ). A failure stops the job's batch; the rest is retried later,
//     in order.
//   - Replicas. Any number of relays may share one database; the store's
//     claim (FOR UPDATE SKIP LOCKED plus a lease on PostgreSQL, the single
//     writer on SQLite) gives each job to one relay at a time. A relay stops
//     publishing LeaseMargin before its lease ends, so an expired lease never
//     lets two relays publish the same event at once.
//   - At least once. A crash after a publish and before the row is marked
//     sent (or a lease lost meanwhile) publishes the event again on the next
//     claim. Every message carries its event_id (Kafka header, AMQP message
//     id): consumers deduplicate on it.
package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/telemetry"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/adapters/store"
)

// Outbox is the store side of the relay; *store.Store implements it.
type Outbox interface {
	ClaimOutbox(ctx context.Context, owner string, maxJobs int, lease time.Duration) ([]store.PendingEvent, error)
	CompleteOutbox(ctx context.Context, owner string, results []store.Result) (lost int, err error)
	OutboxBacklog(ctx context.Context) (int64, error)
	PurgeOutbox(ctx context.Context, cutoff time.Time) (int64, error)
}

// KafkaPublisher publishes one message and returns once the cluster
// acknowledged it; *kafkabus.Producer implements it.
type KafkaPublisher interface {
	Publish(ctx context.Context, msg *bus.Message) error
}

// AMQPPublisher publishes one message and returns once the broker confirmed
// it; *amqpbus.Publisher implements it.
type AMQPPublisher interface {
	Publish(ctx context.Context, exchange, routingKey string, msg *bus.Message) error
}

// Defaults of Config.
const (
	DefaultPollInterval  = 250 * time.Millisecond
	DefaultBatchJobs     = 100
	DefaultConcurrency   = 16
	DefaultLease         = 30 * time.Second
	DefaultLeaseMargin   = 5 * time.Second
	DefaultBackoffMin    = 100 * time.Millisecond
	DefaultBackoffMax    = 10 * time.Second
	DefaultRetention     = 7 * 24 * time.Hour
	DefaultPurgeInterval = 10 * time.Minute
	DefaultExchange      = "job.events"
)

// Config configures a Relay.
type Config struct {
	// ID names this relay in the outbox's claimed_by column; default a
	// fresh UUID (one per process start).
	ID string
	// PollInterval is the pause between claims while the outbox is empty
	// and nobody wakes the relay.
	PollInterval time.Duration
	// BatchJobs is the most jobs claimed at once; Concurrency how many of
	// them publish in parallel (each job's events one after the other).
	BatchJobs, Concurrency int
	// Lease is how long a claim keeps other relays off a job; the relay
	// stops publishing LeaseMargin before it ends.
	Lease, LeaseMargin time.Duration
	// BackoffMin and BackoffMax bound the pause after a pass that met a
	// broker or database error; it doubles per failed pass, with jitter.
	BackoffMin, BackoffMax time.Duration
	// Retention keeps sent rows this long before they are purged, every
	// PurgeInterval; Retention 0 keeps them forever.
	Retention, PurgeInterval time.Duration
	// Exchange is the RabbitMQ exchange of job-lifecycle events.
	Exchange string
	// TopicPrefix is prepended to every catalogue topic name (isolated
	// test runs, shared clusters); empty in production.
	TopicPrefix string
	// Wake, when set, triggers an immediate claim (the store signals each
	// commit that appended outbox rows).
	Wake <-chan struct{}
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		PollInterval: DefaultPollInterval, BatchJobs: DefaultBatchJobs, Concurrency: DefaultConcurrency,
		Lease: DefaultLease, LeaseMargin: DefaultLeaseMargin,
		BackoffMin: DefaultBackoffMin, BackoffMax: DefaultBackoffMax,
		Retention: DefaultRetention, PurgeInterval: DefaultPurgeInterval,
		Exchange: DefaultExchange,
	}
}

// Validate reports every invalid setting.
func (c Config) Validate() error {
	var errs []error
	if c.PollInterval <= 0 {
		errs = append(errs, errors.New("poll interval must be positive"))
	}
	if c.BatchJobs < 1 || c.Concurrency < 1 {
		errs = append(errs, errors.New("batch jobs and concurrency must be positive"))
	}
	if c.LeaseMargin <= 0 || c.Lease <= 2*c.LeaseMargin {
		errs = append(errs, errors.New("need 0 < 2*lease margin < lease"))
	}
	if c.BackoffMin <= 0 || c.BackoffMax < c.BackoffMin {
		errs = append(errs, errors.New("need 0 < backoff min <= backoff max"))
	}
	if c.Retention < 0 || (c.Retention > 0 && c.PurgeInterval <= 0) {
		errs = append(errs, errors.New("retention must not be negative and needs a positive purge interval"))
	}
	if c.Exchange == "" {
		errs = append(errs, errors.New("exchange is required"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("relay config: %w", err)
	}
	return nil
}

// Relay publishes the outbox. Run it once per process.
type Relay struct {
	cfg     Config
	outbox  Outbox
	kafka   KafkaPublisher
	amqp    AMQPPublisher
	log     *slog.Logger
	metrics *metrics
	tracer  trace.Tracer
	now     func() time.Time

	mu         sync.Mutex
	failingFor time.Time // start of the current run of failed passes; zero when the last pass worked
	lastErr    error
}

// New builds a Relay. amqp may be nil when RabbitMQ is not configured: rows
// routed to it are then marked sent after Kafka alone (logged once at start).
func New(cfg Config, outbox Outbox, kafka KafkaPublisher, amqp AMQPPublisher, logger *slog.Logger, reg prometheus.Registerer) (*Relay, error) {
	if cfg.ID == "" {
		cfg.ID = "relay-" + uuid.NewString()
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if outbox == nil || kafka == nil || logger == nil {
		return nil, errors.New("relay: outbox, kafka publisher and logger are required")
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("relay: %w", err)
	}
	if amqp == nil {
		logger.Warn("relay: no RabbitMQ publisher; job events go to Kafka only")
	}
	return &Relay{cfg: cfg, outbox: outbox, kafka: kafka, amqp: amqp, log: logger.With("relay_id", cfg.ID), metrics: m,
		tracer: otel.GetTracerProvider().Tracer("github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/adapters/relay"), now: time.Now}, nil
}

// ID returns the relay's claim owner name.
func (r *Relay) ID() string { return r.cfg.ID }

// Run drains the outbox until ctx is done. The pass in progress when ctx
// ends is finished (its publishes are bounded by the lease), so that what
// was published is also marked sent.
func (r *Relay) Run(ctx context.Context) error {
	backoff := time.Duration(0)
	lastPurge := time.Time{}
	for {
		if ctx.Err() != nil {
			return nil
		}
		res := r.Pass(context.WithoutCancel(ctx))
		r.recordHealth(res)
		r.updateBacklog(ctx)
		if r.cfg.Retention > 0 && r.now().Sub(lastPurge) >= r.cfg.PurgeInterval {
			lastPurge = r.now()
			if n, err := r.outbox.PurgeOutbox(ctx, r.now().Add(-r.cfg.Retention)); err != nil {
				r.log.WarnContext(ctx, "relay: purge sent outbox rows", "error", err)
			} else if n > 0 {
				r.log.InfoContext(ctx, "relay: purged sent outbox rows", "rows", n)
			}
		}
		var wait time.Duration
		switch {
		case res.Errors > 0:
			backoff = min(max(backoff*2, r.cfg.BackoffMin), r.cfg.BackoffMax)
			wait = jitter(backoff)
		case res.Jobs >= r.cfg.BatchJobs:
			backoff = 0
			continue // more is waiting
		default:
			backoff = 0
			wait = r.cfg.PollInterval
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-timer.C:
		case <-r.cfg.Wake:
			timer.Stop()
			if res.Errors > 0 {
				// Keep backing off from a failing broker; a commit does not fix it.
				t := time.NewTimer(wait)
				select {
				case <-ctx.Done():
					t.Stop()
					return nil
				case <-t.C:
				}
			}
		}
	}
}

// recordHealth remembers since when passes fail, for Check.
func (r *Relay) recordHealth(res PassResult) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case res.Errors == 0:
		r.failingFor, r.lastErr = time.Time{}, nil
	case r.failingFor.IsZero():
		r.failingFor, r.lastErr = r.now(), res.Err
	default:
		r.lastErr = res.Err
	}
}

// Check fails while every pass has failed for longer than the lease (the
// brokers or the database are unreachable), for readiness probes.
func (r *Relay) Check(context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.failingFor.IsZero() && r.now().Sub(r.failingFor) > r.cfg.Lease {
		return fmt.Errorf("outbox relay failing since %s: %w", r.failingFor.Format(time.RFC3339), r.lastErr)
	}
	return nil
}

func jitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d/2+1)
}

func (r *Relay) updateBacklog(ctx context.Context) {
	n, err := r.outbox.OutboxBacklog(ctx)
	if err == nil {
		r.metrics.backlog.Set(float64(n))
	}
}

// PassResult counts what one pass did.
type PassResult struct {
	Jobs      int   // jobs claimed
	Published int   // rows marked sent
	Errors    int   // publish or database failures
	Lost      int   // rows whose lease another relay took over meanwhile
	Err       error // the last failure, if any
}

// Pass claims one batch, publishes it and records the outcome.
func (r *Relay) Pass(ctx context.Context) PassResult {
	var res PassResult
	start := r.now()
	rows, err := r.outbox.ClaimOutbox(ctx, r.cfg.ID, r.cfg.BatchJobs, r.cfg.Lease)
	if err != nil {
		r.log.ErrorContext(ctx, "relay: claim outbox rows", "error", err)
		res.Errors++
		res.Err = err
		return res
	}
	if len(rows) == 0 {
		return res
	}
	var jobs [][]store.PendingEvent
	for i, row := range rows {
		if i == 0 || row.JobID != rows[i-1].JobID {
			jobs = append(jobs, nil)
		}
		jobs[len(jobs)-1] = append(jobs[len(jobs)-1], row)
	}
	res.Jobs = len(jobs)

	// Publishing ends before the lease does, whatever the brokers do.
	pubCtx, cancel := context.WithDeadline(ctx, start.Add(r.cfg.Lease-r.cfg.LeaseMargin))
	defer cancel()
	results := make([][]store.Result, len(jobs))
	sem := make(chan struct{}, r.cfg.Concurrency)
	var wg sync.WaitGroup
	for i, job := range jobs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			results[i] = r.publishJob(pubCtx, job)
		})
	}
	wg.Wait()

	var all []store.Result
	for _, rs := range results {
		for _, x := range rs {
			if x.Err != nil {
				res.Errors++
				res.Err = x.Err
			} else if !x.KafkaAt.IsZero() {
				res.Published++
			}
		}
		all = append(all, rs...)
	}
	lost, err := r.outbox.CompleteOutbox(ctx, r.cfg.ID, all)
	if err != nil {
		// Published but not marked: the rows are published again after the
		// lease ends (at least once).
		r.log.ErrorContext(ctx, "relay: mark outbox rows sent", "rows", len(all), "error", err)
		res.Errors++
		res.Err = err
		res.Published = 0
		return res
	}
	if lost > 0 {
		r.log.WarnContext(ctx, "relay: lease taken over before rows were marked; they may be published again", "rows", lost)
		res.Lost = lost
		res.Published = max(0, res.Published-lost)
	}
	return res
}

// publishJob publishes one job's rows in order and stops at the first
// failure; the rows after it are returned as not attempted.
func (r *Relay) publishJob(ctx context.Context, rows []store.PendingEvent) []store.Result {
	out := make([]store.Result, 0, len(rows))
	failed := false
	for _, row := range rows {
		res := store.Result{ID: row.ID, JobID: row.JobID}
		if failed {
			out = append(out, res)
			continue
		}
		if err := r.publishRow(ctx, row, &res); err != nil {
			res.Err = err
			failed = true
			r.metrics.errors.WithLabelValues(row.Message.Topic).Inc()
			r.log.WarnContext(ctx, "relay: publish failed, will retry", "event_id", row.EventID, "event_type", row.EventType,
				"job_id", row.JobID, "seq", row.Seq, "attempts", row.Attempts+1, "error", err)
		}
		out = append(out, res)
	}
	return out
}

// publishRow publishes one row inside the trace its headers carry (the
// request or reconciler pass that wrote it): the relay's span is a child of
// that context, and the brokers' send spans are children of the relay's.
func (r *Relay) publishRow(ctx context.Context, row store.PendingEvent, res *store.Result) (err error) {
	ctx, span := r.tracer.Start(telemetry.Extract(ctx, row.Message.Headers), "relay "+row.EventType,
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(
			attribute.String("messaging.destination.name", row.Message.Topic),
			attribute.String("messaging.message.id", row.EventID),
			attribute.String("job.id", row.JobID),
			attribute.Int64("outbox.seq", row.Seq),
		))
	defer func() {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}()
	if !row.KafkaDone {
		msg := *row.Message
		msg.Topic = r.cfg.TopicPrefix + row.Message.Topic
		if err := r.kafka.Publish(ctx, &msg); err != nil {
			return fmt.Errorf("kafka: %w", err)
		}
		r.metrics.published.WithLabelValues("kafka", row.Message.Topic).Inc()
	}
	res.KafkaAt = r.now()
	if row.RoutingKey != "" && !row.AMQPDone && r.amqp != nil {
		if err := r.amqp.Publish(ctx, r.cfg.Exchange, row.RoutingKey, row.Message); err != nil {
			return fmt.Errorf("rabbitmq: %w", err)
		}
		r.metrics.published.WithLabelValues("rabbitmq", row.Message.Topic).Inc()
		res.AMQPAt = r.now()
	}
	r.metrics.latency.WithLabelValues(row.Message.Topic).Observe(r.now().Sub(row.CreatedAt).Seconds())
	return nil
}
