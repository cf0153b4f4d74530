package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/kafkabus"
	"github.com/cosmic-horizons/fleet/libs/retry"
	"github.com/cosmic-horizons/fleet/libs/telemetry"

	"github.com/cosmic-horizons/fleet/services/notification-consumer/internal/domain"
)

// Sender delivers one notification over one channel. Its errors are
// classified with domain.Transient / domain.Permanent.
type Sender interface {
	Send(ctx context.Context, d domain.Delivery) error
}

// DispatcherConfig configures the delivery workers.
type DispatcherConfig struct {
	// Producer names the service in outcome events.
	Producer string
	// PollInterval is the longest wait between two looks for due
	// deliveries; new deliveries also wake the dispatcher. Default 250ms.
	PollInterval time.Duration
	// BatchSize bounds the deliveries fetched per look; default 200.
	BatchSize int
	// QueueSize bounds the deliveries queued for one target key; a full
	// queue leaves further deliveries of that target in the store until
	// it drains. Default 32.
	QueueSize int
	// PerTargetConcurrency is the number of workers per target key; default 2.
	PerTargetConcurrency int
	// Lease is how long a delivery a worker started sending stays invisible
	// to other workers and replicas. The worker claims it when it starts the
	// send (not when it queues it) and renews the lease every third of it
	// while the send runs, so a slow send keeps it; after a crash, another
	// replica or the restarted consumer takes it over once the lease ran out.
	// Default 15s.
	Lease time.Duration
	// Retry paces transient failures: MaxAttempts attempts in all, then the
	// delivery fails and goes to the dead-letter topic. Default 8 attempts,
	// 1s doubling to 5m, with jitter.
	Retry bus.RetryPolicy
	// IdleTimeout retires the workers of a target idle this long; default 1m.
	IdleTimeout time.Duration
	// RecordRetry paces the retries of a failing outcome write; should the
	// write still fail, the delivery is attempted again after its lease.
	// Default 5 attempts, 50ms doubling to 1s; the retries end at shutdown.
	RecordRetry bus.RetryPolicy
}

// DefaultDispatcherConfig returns the defaults.
func DefaultDispatcherConfig() DispatcherConfig {
	return DispatcherConfig{
		Producer: "notification-consumer", PollInterval: 250 * time.Millisecond, BatchSize: 200, QueueSize: 32,
		PerTargetConcurrency: 2, Lease: 15 * time.Second, IdleTimeout: time.Minute,
		Retry:       bus.RetryPolicy{MaxAttempts: 8, InitialBackoff: time.Second, MaxBackoff: 5 * time.Minute},
		RecordRetry: bus.RetryPolicy{MaxAttempts: 5, InitialBackoff: 50 * time.Millisecond, MaxBackoff: time.Second},
	}
}

// Validate reports the first setting that cannot work.
func (c DispatcherConfig) Validate() error {
	switch {
	case c.Producer == "":
		return errors.New("dispatcher: producer name is empty")
	case c.PollInterval <= 0 || c.Lease <= 0 || c.IdleTimeout <= 0:
		return errors.New("dispatcher: poll interval, lease and idle timeout must be positive")
	case c.BatchSize < 1 || c.QueueSize < 1 || c.PerTargetConcurrency < 1:
		return errors.New("dispatcher: batch size, queue size and per-target concurrency must be at least 1")
	}
	if err := c.Retry.Validate(); err != nil {
		return err
	}
	if err := c.RecordRetry.Validate(); err != nil {
		return fmt.Errorf("dispatcher: record %w", err)
	}
	return nil
}

type targetQueue struct {
	key     string
	ch      chan domain.Delivery
	pending int // queued or being sent; guarded by Dispatcher.mu
}

// Dispatcher sends due deliveries with bounded per-target queues, so one
// slow or dead target only ever holds up its own deliveries, and records
// every outcome with its notification event in one transaction.
type Dispatcher struct {
	cfg     DispatcherConfig
	store   DeliveryStore
	senders map[domain.Channel]Sender
	codec   *events.Codec
	logger  *slog.Logger
	relay   Waker
	tracer  trace.Tracer
	now     func() time.Time

	wake chan struct{}

	mu       sync.Mutex
	queues   map[string]*targetQueue
	queued   map[string]bool // ids of the deliveries in a queue or being sent
	stopping bool
	workers  sync.WaitGroup
}

// NewDispatcher returns a dispatcher; relay (optional) is woken after each outcome.
func NewDispatcher(cfg DispatcherConfig, st DeliveryStore, senders map[domain.Channel]Sender, codec *events.Codec, relay Waker, logger *slog.Logger) (*Dispatcher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Dispatcher{
		cfg: cfg, store: st, senders: senders, codec: codec, relay: relay, logger: logger, now: time.Now,
		tracer: otel.Tracer("github.com/cosmic-horizons/fleet/services/notification-consumer/internal/app"),
		wake:   make(chan struct{}, 1), queues: make(map[string]*targetQueue), queued: make(map[string]bool),
	}, nil
}

// Wake makes the dispatcher look for due deliveries now.
func (d *Dispatcher) Wake() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Run dispatches until ctx ends; then it stops taking deliveries, lets the
// sends in progress finish (bounded by their channel timeouts), drops the
// queued ones (they were never claimed: they are due for the next
// dispatcher at once) and returns.
func (d *Dispatcher) Run(ctx context.Context) error {
	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			d.mu.Lock()
			d.stopping = true
			for _, q := range d.queues {
				close(q.ch)
			}
			d.mu.Unlock()
			d.workers.Wait()
			return nil
		case <-d.wake:
		case <-timer.C:
		}
		full, err := d.poll(ctx, workCtx)
		if err != nil && ctx.Err() == nil {
			d.logger.Warn("poll due deliveries", slog.String("error", err.Error()))
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		if full {
			timer.Reset(0)
		} else {
			timer.Reset(d.cfg.PollInterval)
		}
	}
}

// poll queues the due deliveries that are not queued yet; it reports
// whether the batch was full. Nothing is claimed here: a worker claims a
// delivery when it starts sending it.
func (d *Dispatcher) poll(ctx, workCtx context.Context) (bool, error) {
	due, err := d.store.Due(ctx, d.now(), d.cfg.BatchSize, d.saturated())
	if err != nil {
		return false, err
	}
	fresh := 0
	for _, del := range due {
		if q := d.reserve(ctx, workCtx, del); q != nil {
			q.ch <- del
			fresh++
		}
	}
	return len(due) == d.cfg.BatchSize && fresh > 0, nil
}

// saturated lists the target keys whose queue is full.
func (d *Dispatcher) saturated() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var keys []string
	for k, q := range d.queues {
		if q.pending >= d.cfg.QueueSize {
			keys = append(keys, k)
		}
	}
	return keys
}

// reserve takes a slot for del in its target's queue, starting the queue's
// workers when needed; nil when del is queued already, the queue is full or
// the dispatcher is stopping. Workers send under workCtx, which shutdown
// (the end of ctx) does not cut; only their waits end with ctx.
func (d *Dispatcher) reserve(ctx, workCtx context.Context, del domain.Delivery) *targetQueue {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopping || d.queued[del.ID] {
		return nil
	}
	key := del.TargetKey
	q, ok := d.queues[key]
	if !ok {
		q = &targetQueue{key: key, ch: make(chan domain.Delivery, d.cfg.QueueSize)}
		d.queues[key] = q
		for range d.cfg.PerTargetConcurrency {
			d.workers.Go(func() { d.work(workCtx, ctx, q) })
		}
	}
	if q.pending >= d.cfg.QueueSize {
		return nil
	}
	q.pending++
	d.queued[del.ID] = true
	return q
}

func (d *Dispatcher) unreserve(q *targetQueue, id string) {
	d.mu.Lock()
	q.pending--
	delete(d.queued, id)
	d.mu.Unlock()
}

// work sends the deliveries of one target until its queue closes or stays
// idle for IdleTimeout; shutdown ends the waits of the outcome writes.
func (d *Dispatcher) work(ctx, shutdown context.Context, q *targetQueue) {
	idle := time.NewTimer(d.cfg.IdleTimeout)
	defer idle.Stop()
	for {
		select {
		case del, ok := <-q.ch:
			if !ok {
				return
			}
			d.mu.Lock()
			stopping := d.stopping
			d.mu.Unlock()
			if !stopping {
				d.claimAndDeliver(ctx, shutdown, del)
			}
			d.unreserve(q, del.ID)
			idle.Reset(d.cfg.IdleTimeout)
		case <-idle.C:
			d.mu.Lock()
			if d.queues[q.key] == q && q.pending == 0 && !d.stopping {
				delete(d.queues, q.key)
				d.mu.Unlock()
				return
			}
			retired := d.queues[q.key] != q
			d.mu.Unlock()
			if retired {
				return
			}
			idle.Reset(d.cfg.IdleTimeout)
		}
	}
}

// claimAndDeliver claims del for this attempt (another worker or replica
// may have sent it meanwhile: then it does nothing), sends it while keeping
// the lease alive, and records the outcome.
func (d *Dispatcher) claimAndDeliver(ctx, shutdown context.Context, del domain.Delivery) {
	now := d.now()
	claimed, err := d.store.ClaimBatch(ctx, []string{del.ID}, now, now.Add(d.cfg.Lease))
	attempt, ok := claimed[del.ID]
	if err != nil {
		d.logger.Warn("claim delivery; it stays due", slog.String("delivery_id", del.ID), slog.String("error", err.Error()))
		return
	}
	if !ok {
		return // sent, or being sent, by another worker
	}
	del.Attempts = attempt
	renewed := make(chan struct{})
	stop := make(chan struct{})
	go func() {
		defer close(renewed)
		d.keepLease(stop, del)
	}()
	defer func() {
		close(stop)
		<-renewed
	}()
	d.deliver(ctx, shutdown, del)
}

// keepLease renews del's lease every third of it until stop closes.
func (d *Dispatcher) keepLease(stop <-chan struct{}, del domain.Delivery) {
	tick := time.NewTicker(d.cfg.Lease / 3)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
			ctx, cancel := context.WithTimeout(context.Background(), d.cfg.Lease/3)
			err := d.store.Renew(ctx, del.ID, del.Attempts, d.now().Add(d.cfg.Lease))
			cancel()
			if err != nil {
				d.logger.Warn("renew delivery lease", slog.String("delivery_id", del.ID), slog.String("error", err.Error()))
			}
		}
	}
}

// deliver sends one delivery and records its outcome.
func (d *Dispatcher) deliver(ctx, shutdown context.Context, del domain.Delivery) {
	ctx, span := d.startDelivery(ctx, del)
	defer span.End()
	sender, ok := d.senders[del.Channel]
	var err error
	if !ok {
		err = domain.Permanent(fmt.Errorf("channel %s is not configured", del.Channel))
	} else {
		err = sender.Send(ctx, del)
	}
	now := d.now()
	o := domain.Outcome{ID: del.ID, Attempt: del.Attempts}
	var msgs []*bus.Message
	log := d.logger.With(slog.String("delivery_id", del.ID), slog.String("event_id", del.EventID),
		slog.String("channel", string(del.Channel)), slog.Int("attempt", del.Attempts))
	if err == nil {
		o.Status, o.SentAt, o.NextAttemptAt = domain.StatusSent, now, now
		msgs = d.outcomeMessages(ctx, del, nil, false)
		log.InfoContext(ctx, "notification sent")
	} else {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		permanent, retryAfter := domain.Classify(err)
		o.LastError = truncateError(err.Error())
		if permanent || del.Attempts >= d.cfg.Retry.MaxAttempts {
			o.Status, o.NextAttemptAt = domain.StatusFailed, now
			msgs = d.outcomeMessages(ctx, del, err, true)
			log.WarnContext(ctx, "notification failed for good", slog.Bool("permanent", permanent), slog.String("error", o.LastError))
		} else {
			o.Status = domain.StatusPending
			o.NextAttemptAt = now.Add(max(d.cfg.Retry.Backoff(del.Attempts), retryAfter))
			msgs = d.outcomeMessages(ctx, del, err, false)
			log.InfoContext(ctx, "notification attempt failed; retrying", slog.Time("next_attempt_at", o.NextAttemptAt), slog.String("error", o.LastError))
		}
	}
	d.record(shutdown, o, msgs, log)
}

// startDelivery starts the span of one delivery attempt in the trace of the
// event the delivery was made for, with the event's correlation id.
func (d *Dispatcher) startDelivery(ctx context.Context, del domain.Delivery) (context.Context, trace.Span) {
	ctx = telemetry.WithCorrelationID(ctx, del.CorrelationID)
	if del.TraceParent != "" {
		ctx = telemetry.Extract(ctx, map[string]string{telemetry.HeaderTraceparent: del.TraceParent})
	}
	return d.tracer.Start(ctx, "deliver "+strings.ToLower(string(del.Channel)), trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(attribute.String("notification.delivery_id", del.ID), attribute.String("messaging.message.id", del.EventID),
			attribute.String("job.id", del.JobID), attribute.Int("notification.attempt", del.Attempts)))
}

// record stores an outcome, retrying a failing database briefly. Each
// write runs to its own timeout even after shutdown began (the send
// happened); the waits between writes end with ctx. Should the write still
// fail, the lease runs out and the delivery is attempted again.
func (d *Dispatcher) record(ctx context.Context, o domain.Outcome, msgs []*bus.Message, log *slog.Logger) {
	var applied bool
	err := retry.Do(ctx, d.cfg.RecordRetry, func(int) error {
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		var err error
		applied, err = d.store.Record(wctx, o, msgs)
		return err
	}, nil)
	switch {
	case err != nil:
		log.Error("record outcome failed; the delivery is retried after its lease", slog.String("error", err.Error()))
	case !applied:
		log.Warn("outcome dropped: the delivery was claimed again after its lease ran out")
	case d.relay != nil:
		d.relay.Wake()
	}
}

// outcomeMessages builds notification.sent or notification.failed for del,
// plus, for a final failure, its copy for the notifications dead-letter topic.
func (d *Dispatcher) outcomeMessages(ctx context.Context, del domain.Delivery, sendErr error, final bool) []*bus.Message {
	var payload events.Payload
	jobID := del.JobID
	if sendErr == nil {
		payload = events.NotificationSent{NotificationID: del.ID, RecipientUserID: del.UserID,
			Channel: events.NotificationChannel(del.Channel), Target: del.Target, Subject: del.Subject,
			RelatedJobID: &jobID, Attempt: int32(del.Attempts)}
	} else {
		permanent, _ := domain.Classify(sendErr)
		payload = events.NotificationFailed{NotificationID: del.ID, RecipientUserID: del.UserID,
			Channel: events.NotificationChannel(del.Channel), Target: del.Target, Subject: del.Subject,
			RelatedJobID: &jobID, Attempt: int32(del.Attempts), Error: truncateError(sendErr.Error()),
			Permanent: final || permanent}
	}
	ev, err := events.NewEvent(payload, events.Meta{Producer: d.cfg.Producer, UserID: del.UserID, CorrelationID: del.CorrelationID, CausationID: del.EventID, Now: d.now})
	if err != nil {
		d.logger.Error("build outcome event", slog.String("delivery_id", del.ID), slog.String("error", err.Error()))
		return nil
	}
	msg, err := d.codec.Message(ev)
	if err != nil {
		d.logger.Error("encode outcome event", slog.String("delivery_id", del.ID), slog.String("error", err.Error()))
		return nil
	}
	msg.SetHeader("delivery_id", del.ID)
	trace := map[string]string{}
	telemetry.Inject(ctx, trace)
	for k, v := range trace {
		if _, set := msg.Headers[k]; !set {
			msg.SetHeader(k, v)
		}
	}
	msgs := []*bus.Message{msg}
	if sendErr != nil && final {
		dlq := kafkabus.DeadLetter(msg, d.cfg.Producer, sendErr, d.now())
		dlq.Headers[bus.HeaderDLQAttempts] = fmt.Sprint(del.Attempts)
		dlq.Headers["source_event_id"] = del.EventID
		msgs = append(msgs, dlq)
	}
	return msgs
}

func truncateError(s string) string {
	const maxLen = 1024
	if len(s) > maxLen {
		return s[:maxLen] + " [truncated]"
	}
	return s
}
