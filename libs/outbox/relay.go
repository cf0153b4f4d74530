package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/retry"
	"github.com/cosmic-horizons/fleet/libs/telemetry"
)

// RelayStore is the store side of the relay; *Store implements it.
type RelayStore interface {
	// Legs returns the legs the outbox keeps (Kafka first).
	Legs() []Leg
	ClaimOutbox(ctx context.Context, leg Leg, owner string, maxJobs int, lease time.Duration) ([]PendingEvent, error)
	CompleteOutbox(ctx context.Context, leg Leg, owner string, results []Result) (lost int, err error)
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

// Defaults of RelayConfig.
const (
	DefaultPollInterval  = 250 * time.Millisecond
	DefaultBatchJobs     = 100
	DefaultConcurrency   = 4096
	DefaultLease         = 30 * time.Second
	DefaultLeaseMargin   = 5 * time.Second
	DefaultBackoffMin    = 100 * time.Millisecond
	DefaultBackoffMax    = 10 * time.Second
	DefaultMarkInterval  = 20 * time.Millisecond
	DefaultRetention     = 7 * 24 * time.Hour
	DefaultPurgeInterval = 10 * time.Minute
	DefaultExchange      = "job.events"
)

// markBatch is the most acknowledgements marked in one transaction.
const markBatch = 256

// RelayConfig configures a Relay.
type RelayConfig struct {
	// ID names this relay in the outbox's claim columns; default a fresh
	// UUID (one per process start).
	ID string
	// PollInterval is the pause between claims while the outbox is empty
	// and nobody wakes the relay.
	PollInterval time.Duration
	// Concurrency is the most jobs each leg holds claimed, all of them
	// publishing at once (each job's events one after the other); BatchJobs
	// the most jobs one claim takes. A job waiting for its broker costs a
	// goroutine and its rows, no more; Concurrency bounds how many such jobs
	// an outage may accumulate before other jobs wait for a slot, so it is
	// large.
	BatchJobs, Concurrency int
	// Lease is how long a claim keeps other relays off a job; the relay
	// stops publishing LeaseMargin before it ends.
	Lease, LeaseMargin time.Duration
	// BackoffMin and BackoffMax bound the pause of a job after a failed
	// publish (it doubles with the job's attempts, with jitter), and of a
	// leg after a database error.
	BackoffMin, BackoffMax time.Duration
	// MarkInterval bounds the time between an acknowledgement and the
	// commit that marks its row done.
	MarkInterval time.Duration
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

// DefaultRelayConfig returns the defaults.
func DefaultRelayConfig() RelayConfig {
	return RelayConfig{
		PollInterval: DefaultPollInterval, BatchJobs: DefaultBatchJobs, Concurrency: DefaultConcurrency,
		Lease: DefaultLease, LeaseMargin: DefaultLeaseMargin,
		BackoffMin: DefaultBackoffMin, BackoffMax: DefaultBackoffMax, MarkInterval: DefaultMarkInterval,
		Retention: DefaultRetention, PurgeInterval: DefaultPurgeInterval,
		Exchange: DefaultExchange,
	}
}

// Validate reports every invalid setting.
func (c RelayConfig) Validate() error {
	var errs []error
	if c.PollInterval <= 0 || c.MarkInterval <= 0 {
		errs = append(errs, errors.New("poll and mark intervals must be positive"))
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

// Relay drains the outbox: it publishes every row to Kafka and the rows
// with a routing key also to a RabbitMQ exchange (job.events for the
// orchestrator), and marks them sent. A "job" below is the rows of one
// ordering key (Tables.Key).
//
// Guarantees:
//
//   - Two independent legs. Kafka (the system of record) and RabbitMQ (the
//     real-time path) each have their own claims, attempts and backoff: a
//     RabbitMQ outage never delays Kafka, and RabbitMQ catches up, in order,
//     when it is back. Readiness follows the Kafka leg only.
//   - Per-job order. On each leg a job's events are published strictly in
//     their outbox sequence: row n+1 is handed to the broker only after row n
//     was acknowledged. A failure stops the job on that leg and holds it back
//     for a backoff of its own; other jobs go on at full speed. Rows a job
//     gets while the leg holds it (the store's tail claim, on the wake-up of
//     their commit) join the job's queue and go out right after its earlier
//     rows, or are released with them after a failure.
//   - Woken, not polled. Each commit's wake-up (Wake) claims at once; the
//     poll interval only paces retries and a relay without wake-ups.
//   - No waiting on other jobs. Every claimed job publishes at once, in a
//     goroutine of its own, and a claim of up to BatchJobs jobs follows
//     whenever the leg holds fewer than Concurrency jobs. A job whose
//     partition has no leader (a broker down) waits for its broker alone:
//     it holds no worker that other jobs need, so a broker outage delays
//     only the partitions that broker led.
//   - Marked as acknowledged. Rows are marked done as their
//     acknowledgements arrive (in small batches, at most MarkInterval
//     apart), so a crash re-publishes only what was in flight.
//   - Parking. A row that fails for a reason no retry changes (a record too
//     large for the broker, a routing key too long) is parked with its
//     error: the job's later rows on that leg wait, every other job goes on,
//     and an operator retries it (the service's outbox retry command,
//     Store.RetryParked).
//   - Replicas. Any number of relays may share one database; the store's
//     claim (FOR UPDATE SKIP LOCKED plus a lease on PostgreSQL, the single
//     writer on SQLite) gives each job to one relay at a time per leg. A
//     relay stops publishing LeaseMargin before its lease ends, so an expired
//     lease never lets two relays publish the same event at once.
//   - At least once. A crash after a publish and before the row is marked
//     publishes the event again on the next claim. Every message carries its
//     event_id (Kafka header, AMQP message id): consumers deduplicate on it.
//
// Run it once per process.
type Relay struct {
	cfg     RelayConfig
	outbox  RelayStore
	log     *slog.Logger
	metrics *metrics
	tracer  trace.Tracer
	now     func() time.Time
	legs    []*leg

	mu         sync.Mutex
	failingFor time.Time // start of the Kafka leg's current run of failures; zero after a success
	lastErr    error
}

// leg is one destination with its publish function.
type leg struct {
	r       *Relay
	id      Leg
	publish func(ctx context.Context, row PendingEvent) error
	wake    chan struct{}
	// marksBehind is set while marks fail: the leg then claims nothing, as
	// its own expired claims would be claimed and published again.
	marksBehind atomic.Bool

	// keys are the keys the leg publishes, by key (see keyRun).
	mu   sync.Mutex
	keys map[string]*keyRun
	// marksSent counts the results handed to the mark loop (under
	// sendMu, in the order sent), marksDone those it has recorded.
	sendMu    sync.Mutex
	marksSent uint64
	marksDone atomic.Uint64
}

// keyRun is the publishing of one key on a leg: one goroutine publishes the
// key's claimed rows in seq order, and rows of the key the store hands out
// later as its tail (appended while the leg held it) join its queue, so a
// key's next change is published as soon as its earlier rows are, without
// waiting for their marks and a new claim.
type keyRun struct {
	queue    []PendingEvent // claimed, not yet handed to the publisher
	deadline time.Time      // end of the publishing window of the latest claim
	lastSeq  int64          // the highest seq given to the run
	running  bool
	// stoppedSeq, once the run stopped at a failure (or released its rows),
	// is the seq it stopped at: a tail claimed before the failure was
	// recorded comes after it and is released, not published.
	stoppedSeq int64
	// stoppedMark is marksSent after the run's last result was sent (0
	// until then): once the mark loop recorded that many, no claim begun
	// afterwards can hand out a tail of the run, and it is forgotten.
	stoppedMark uint64
}

// poke asks the leg's claimer to claim now (a no-op when it is asked already).
func (l *leg) poke() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// NewRelay builds a Relay on the legs outbox keeps. amqp may be nil when
// RabbitMQ is not configured: a RabbitMQ leg then marks rows done without
// publishing (logged once at start).
func NewRelay(cfg RelayConfig, outbox RelayStore, kafka KafkaPublisher, amqp AMQPPublisher, logger *slog.Logger, reg prometheus.Registerer) (*Relay, error) {
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
	r := &Relay{cfg: cfg, outbox: outbox, log: logger.With("relay_id", cfg.ID), metrics: m,
		tracer: otel.GetTracerProvider().Tracer("github.com/cosmic-horizons/fleet/libs/outbox"), now: time.Now}
	r.legs = []*leg{{r: r, id: LegKafka, wake: make(chan struct{}, 1), publish: func(ctx context.Context, row PendingEvent) error {
		msg := *row.Message
		msg.Topic = cfg.TopicPrefix + row.Message.Topic
		return kafka.Publish(ctx, &msg)
	}}}
	for _, id := range outbox.Legs() {
		if id != LegAMQP {
			continue
		}
		publishAMQP := func(ctx context.Context, row PendingEvent) error {
			return amqp.Publish(ctx, cfg.Exchange, row.RoutingKey, row.Message)
		}
		if amqp == nil {
			logger.Warn("relay: no RabbitMQ publisher; events go to Kafka only")
			publishAMQP = func(context.Context, PendingEvent) error { return nil }
		}
		r.legs = append(r.legs, &leg{r: r, id: LegAMQP, wake: make(chan struct{}, 1), publish: publishAMQP})
	}
	return r, nil
}

// ID returns the relay's claim owner name.
func (r *Relay) ID() string { return r.cfg.ID }

// Run drains the outbox until ctx is done: each leg on its own, plus the
// backlog gauge and the purge of sent rows. The publishes in flight when ctx
// ends are finished (bounded by their lease) and marked.
func (r *Relay) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, l := range r.legs {
		wg.Go(func() { l.run(ctx) })
	}
	wg.Go(func() { r.forwardWakes(ctx) })
	wg.Go(func() { r.housekeeping(ctx) })
	wg.Wait()
	return nil
}

// forwardWakes hands every wake-up of the store to each leg.
func (r *Relay) forwardWakes(ctx context.Context) {
	if r.cfg.Wake == nil {
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.cfg.Wake:
			for _, l := range r.legs {
				l.poke()
			}
		}
	}
}

// housekeeping updates the backlog gauge every poll interval and purges
// sent rows every purge interval.
func (r *Relay) housekeeping(ctx context.Context) {
	tick := time.NewTicker(r.cfg.PollInterval)
	defer tick.Stop()
	var lastPurge time.Time
	for {
		r.updateBacklog(ctx)
		if r.cfg.Retention > 0 && r.now().Sub(lastPurge) >= r.cfg.PurgeInterval {
			lastPurge = r.now()
			if n, err := r.outbox.PurgeOutbox(ctx, r.now().Add(-r.cfg.Retention)); err != nil {
				r.log.WarnContext(ctx, "relay: purge sent outbox rows", "error", err)
			} else if n > 0 {
				r.log.InfoContext(ctx, "relay: purged sent outbox rows", "rows", n)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// claimedJob is one job's rows of a claim, with the end of the claim's
// publishing window.
type claimedJob struct {
	rows     []PendingEvent
	deadline time.Time
}

// run publishes the leg until ctx ends: every claimed job publishes at
// once in its own goroutine, and the claimer claims more (up to BatchJobs
// jobs per claim) whenever the leg holds fewer than Concurrency jobs, so no
// job waits for another's publish (a job whose partition lost its leader
// blocks only itself) and claims stay batched. When ctx ends the jobs
// finish what they hold; then what was published is marked.
func (l *leg) run(ctx context.Context) {
	r := l.r
	marks := make(chan Result, markBatch)
	marked := make(chan struct{})
	go func() {
		defer close(marked)
		l.markLoop(ctx, marks)
	}()
	mark := func(res Result) {
		l.sendMu.Lock()
		defer l.sendMu.Unlock()
		l.marksSent++
		marks <- res
	}
	release := func(rows []PendingEvent) {
		for _, row := range rows {
			mark(Result{ID: row.ID, JobID: row.JobID})
		}
	}

	var (
		jobs sync.WaitGroup
		held atomic.Int64 // jobs claimed and not finished
	)
	// idle is signalled when a job ends while the leg held Concurrency
	// jobs: a claim that was not made for want of a slot can be made now.
	idle := make(chan struct{}, 1)
	// A failing claim backs off from BackoffMin to BackoffMax; a good one resets it.
	pause := retry.Policy{InitialBackoff: r.cfg.BackoffMin, MaxBackoff: r.cfg.BackoffMax}.BackOff()
	for ctx.Err() == nil {
		wait := r.cfg.PollInterval
		if free := r.cfg.Concurrency - int(held.Load()); free > 0 && !l.marksBehind.Load() {
			want := min(r.cfg.BatchJobs, free)
			recorded := l.marksDone.Load()
			claimed, err := l.claimJobs(ctx, want)
			started := 0
			for _, job := range claimed {
				kr, rel := l.dispatch(job)
				if rel {
					release(job.rows)
				}
				if kr == nil {
					continue
				}
				started++
				held.Add(1)
				jobs.Go(func() {
					l.runKey(ctx, job.rows[0].JobID, kr, mark, release)
					if int(held.Add(-1)) == r.cfg.Concurrency-1 {
						select {
						case idle <- struct{}{}:
						default:
						}
					}
				})
			}
			l.forget(recorded)
			switch {
			case err != nil:
				wait = pause.NextBackOff()
			case started == want:
				pause.Reset()
				continue // more may be waiting
			default:
				pause.Reset()
			}
		}
		timer := time.NewTimer(wait)
		select {
		case <-idle:
		case <-l.wake:
		case <-timer.C:
		case <-ctx.Done():
		}
		timer.Stop()
	}
	jobs.Wait()
	close(marks)
	<-marked
}

// dispatch gives a claimed job to its key's run: the tail of a running key
// joins its queue (nil, false); a new run is returned for a key not running
// (kr, false); rows to release are reported (nil, true): a tail claimed
// before its key's failure was recorded, or a key taken back from its head
// after this relay's own lease ran out while its old run still ends.
func (l *leg) dispatch(job claimedJob) (kr *keyRun, release bool) {
	key, first, last := job.rows[0].JobID, job.rows[0].Seq, job.rows[len(job.rows)-1].Seq
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.keys == nil {
		l.keys = map[string]*keyRun{}
	}
	switch cur := l.keys[key]; {
	case cur != nil && cur.running && first > cur.lastSeq:
		cur.queue = append(cur.queue, job.rows...)
		cur.lastSeq, cur.deadline = last, job.deadline
		return nil, false
	case cur != nil && cur.running:
		return nil, true
	case cur != nil && cur.stoppedSeq > 0 && first > cur.stoppedSeq:
		return nil, true
	}
	kr = &keyRun{queue: job.rows, deadline: job.deadline, lastSeq: last, running: true}
	l.keys[key] = kr
	return kr, false
}

// forget drops the stopped runs whose last results were recorded before
// a claim began (recorded is marksDone then): that claim, and every later
// one, saw their rows released.
func (l *leg) forget(recorded uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for key, kr := range l.keys {
		if !kr.running && kr.stoppedMark > 0 && kr.stoppedMark <= recorded {
			delete(l.keys, key)
		}
	}
}

// runKey publishes a key's queue until it is empty, or until a row fails:
// the rest of the queue is then released.
func (l *leg) runKey(ctx context.Context, key string, kr *keyRun, mark func(Result), release func([]PendingEvent)) {
	for {
		l.mu.Lock()
		rows, deadline := kr.queue, kr.deadline
		kr.queue = nil
		if len(rows) == 0 {
			kr.running = false
			if l.keys[key] == kr {
				delete(l.keys, key)
			}
			l.mu.Unlock()
			return
		}
		l.mu.Unlock()
		stopped := l.work(ctx, claimedJob{rows: rows, deadline: deadline}, mark)
		if stopped == 0 {
			continue
		}
		l.mu.Lock()
		rest := kr.queue
		kr.queue, kr.running, kr.stoppedSeq = nil, false, stopped
		l.mu.Unlock()
		release(rest)
		l.sendMu.Lock()
		sent := l.marksSent
		l.sendMu.Unlock()
		l.mu.Lock()
		kr.stoppedMark = sent
		l.mu.Unlock()
		return
	}
}

// work publishes one claimed job; a job whose window closed before it
// started (or that starts after shutdown began) is released. It returns the
// seq of the row the job stopped at (failed or released), 0 when every row
// was published.
func (l *leg) work(ctx context.Context, job claimedJob, mark func(Result)) int64 {
	if ctx.Err() != nil || !l.r.now().Before(job.deadline) {
		for _, row := range job.rows {
			mark(Result{ID: row.ID, JobID: row.JobID})
		}
		return job.rows[0].Seq
	}
	// Publishing ends before the lease does, whatever the brokers do, and is
	// not cut short by shutdown, so that what was handed over is marked.
	pubCtx, cancel := context.WithDeadline(context.WithoutCancel(ctx), job.deadline)
	defer cancel()
	return l.publishJob(pubCtx, job.rows, mark)
}

// claimJobs claims rows of up to maxJobs jobs, grouped by job in seq order.
func (l *leg) claimJobs(ctx context.Context, maxJobs int) ([]claimedJob, error) {
	r := l.r
	deadline := r.now().Add(r.cfg.Lease - r.cfg.LeaseMargin)
	rows, err := r.outbox.ClaimOutbox(context.WithoutCancel(ctx), l.id, r.cfg.ID, maxJobs, r.cfg.Lease)
	if err != nil {
		r.log.ErrorContext(ctx, "relay: claim outbox rows", "leg", l.id.String(), "error", err)
		l.failed(err)
		return nil, err
	}
	var jobs []claimedJob
	for i, row := range rows {
		if i == 0 || row.JobID != rows[i-1].JobID {
			jobs = append(jobs, claimedJob{deadline: deadline})
		}
		jobs[len(jobs)-1].rows = append(jobs[len(jobs)-1].rows, row)
	}
	return jobs, nil
}

// markLoop marks the results it receives in batches: at most markBatch rows
// per transaction, at most MarkInterval after the first of a batch arrived.
func (l *leg) markLoop(ctx context.Context, marks <-chan Result) {
	r := l.r
	var pending []Result
	var due <-chan time.Time
	var received uint64
	flush := func() {
		l.complete(ctx, pending)
		l.marksDone.Store(received)
		pending, due = pending[:0], nil
		// After failed marks, claims resume once every mark that waited
		// behind them is written too.
		if len(marks) == 0 {
			l.marksBehind.Store(false)
		}
	}
	for {
		select {
		case res, ok := <-marks:
			if !ok {
				l.complete(ctx, pending)
				return
			}
			received++
			pending = append(pending, res)
			switch {
			case len(pending) >= markBatch:
				flush()
			case due == nil:
				due = time.After(r.cfg.MarkInterval)
			}
		case <-due:
			flush()
		}
	}
}

// complete records results. While the relay runs, a failing database is
// retried until it answers (BackoffMin to BackoffMax) and the leg claims
// nothing meanwhile, so that an outage longer than the lease publishes
// nothing twice. Once shutdown began, it is tried three more times (these
// tries outlive shutdown on purpose); rows still unmarked then are published
// again after their lease.
func (l *leg) complete(ctx context.Context, results []Result) (lost int, err error) {
	if len(results) == 0 {
		return 0, nil
	}
	r := l.r
	// The published rows are no longer waiting for their mark: marked now,
	// or published again by a later claim after a failure.
	defer func() {
		n := 0
		for _, res := range results {
			if !res.At.IsZero() {
				n++
			}
		}
		r.metrics.unmarked.WithLabelValues(l.id.String()).Sub(float64(n))
	}()
	mark := func(int) error {
		var err error
		lost, err = r.outbox.CompleteOutbox(context.WithoutCancel(ctx), l.id, r.cfg.ID, results)
		return err
	}
	behind := func(attempt int, _ time.Duration, err error) {
		if attempt == 1 {
			l.marksBehind.Store(true)
			l.failed(err)
			r.log.ErrorContext(ctx, "relay: mark outbox rows; retrying until the database answers, claiming nothing meanwhile",
				"leg", l.id.String(), "rows", len(results), "error", err)
		}
	}
	err = retry.Do(ctx, retry.Policy{InitialBackoff: r.cfg.BackoffMin, MaxBackoff: r.cfg.BackoffMax}, mark, behind)
	if err != nil && ctx.Err() != nil {
		pace := retry.Policy{MaxAttempts: 3, InitialBackoff: 2 * r.cfg.BackoffMin, MaxBackoff: 4 * r.cfg.BackoffMin}
		err = retry.Do(context.WithoutCancel(ctx), pace, mark, nil)
	}
	if err != nil {
		r.log.ErrorContext(ctx, "relay: mark outbox rows; they are published again after their lease", "leg", l.id.String(), "rows", len(results), "error", err)
		l.failed(err)
		return 0, err
	}
	if lost > 0 {
		r.log.WarnContext(ctx, "relay: lease taken over before rows were marked; they may be published again", "leg", l.id.String(), "rows", lost)
	}
	return lost, nil
}

// failed and succeeded track the Kafka leg's health for Check.
func (l *leg) failed(err error) {
	if l.id != LegKafka {
		return
	}
	l.r.mu.Lock()
	defer l.r.mu.Unlock()
	if l.r.failingFor.IsZero() {
		l.r.failingFor = l.r.now()
	}
	l.r.lastErr = err
}

func (l *leg) succeeded() {
	if l.id != LegKafka {
		return
	}
	l.r.mu.Lock()
	defer l.r.mu.Unlock()
	l.r.failingFor, l.r.lastErr = time.Time{}, nil
}

// Check fails while every Kafka publish and every outbox transaction has
// failed for longer than the lease (Kafka or the database unreachable), for
// readiness probes. One row that cannot be published, other jobs' events
// flowing, and RabbitMQ leave it ready.
func (r *Relay) Check(context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.failingFor.IsZero() && r.now().Sub(r.failingFor) > r.cfg.Lease {
		return fmt.Errorf("outbox relay failing since %s: %w", r.failingFor.Format(time.RFC3339), r.lastErr)
	}
	return nil
}

func (r *Relay) updateBacklog(ctx context.Context) {
	n, err := r.outbox.OutboxBacklog(ctx)
	if err == nil {
		r.metrics.backlog.Set(float64(n))
	}
}

// PassResult counts what one pass did.
type PassResult struct {
	Jobs      int   // jobs claimed, on both legs
	Published int   // rows marked done on a leg
	Errors    int   // publish or database failures
	Parked    int   // rows parked
	Lost      int   // rows whose lease another relay took over meanwhile
	Err       error // the last failure, if any
}

// Pass claims one batch on each leg, publishes it and records the outcome,
// synchronously: Run's work in one step, for tests and tools.
func (r *Relay) Pass(ctx context.Context) PassResult {
	var res PassResult
	for _, l := range r.legs {
		jobs, err := l.claimJobs(ctx, r.cfg.BatchJobs)
		if err != nil {
			res.Errors++
			res.Err = err
			continue
		}
		res.Jobs += len(jobs)
		var (
			mu  sync.Mutex
			all []Result
			wg  sync.WaitGroup
		)
		sem := make(chan struct{}, r.cfg.Concurrency)
		for _, job := range jobs {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				l.work(ctx, job, func(x Result) {
					mu.Lock()
					all = append(all, x)
					mu.Unlock()
				})
			})
		}
		wg.Wait()
		published := 0
		for _, x := range all {
			switch {
			case x.Park:
				res.Parked++
			case x.Err != nil:
				res.Errors++
				res.Err = x.Err
			case !x.At.IsZero():
				published++
			}
		}
		lost, err := l.complete(ctx, all)
		if err != nil {
			res.Errors++
			res.Err = err
			continue
		}
		res.Lost += lost
		res.Published += max(0, published-lost)
	}
	return res
}

// publishJob publishes one job's rows in order, marking each as its broker
// acknowledges it, and stops at the first failure: the failed row is held
// back for the job's backoff (or parked, when no retry can change the
// outcome) and the rows after it are released as not attempted.
func (l *leg) publishJob(ctx context.Context, rows []PendingEvent, mark func(Result)) (stoppedSeq int64) {
	r := l.r
	for i, row := range rows {
		res := Result{ID: row.ID, JobID: row.JobID}
		unmarked := r.metrics.unmarked.WithLabelValues(l.id.String())
		unmarked.Inc()
		err := l.publishRow(ctx, row)
		if err == nil {
			res.At = r.now()
			mark(res)
			l.succeeded()
			continue
		}
		unmarked.Dec()
		res.Err = err
		r.metrics.errors.WithLabelValues(l.id.String(), row.Message.Topic).Inc()
		if bus.IsPermanent(err) {
			res.Park = true
			r.metrics.parked.WithLabelValues(l.id.String(), row.Message.Topic).Inc()
			r.log.ErrorContext(ctx, "relay: event cannot be published; parked (outbox list / retry)", "leg", l.id.String(),
				"event_id", row.EventID, "event_type", row.EventType, "job_id", row.JobID, "seq", row.Seq, "error", err)
		} else {
			wait := retry.Policy{InitialBackoff: r.cfg.BackoffMin, MaxBackoff: r.cfg.BackoffMax}.Backoff(row.Attempts + 1)
			res.RetryAt = r.now().Add(wait)
			l.failed(err)
			r.log.WarnContext(ctx, "relay: publish failed; the job retries after its backoff", "leg", l.id.String(), "event_id", row.EventID,
				"event_type", row.EventType, "job_id", row.JobID, "seq", row.Seq, "attempts", row.Attempts+1, "retry_in", wait, "error", err)
		}
		mark(res)
		for _, rest := range rows[i+1:] {
			mark(Result{ID: rest.ID, JobID: rest.JobID})
		}
		return row.Seq
	}
	return 0
}

// publishRow publishes one row on the leg inside the trace its headers carry
// (the request or reconciler pass that wrote it): the relay's span is a
// child of that context, and the broker's send span is a child of the
// relay's.
func (l *leg) publishRow(ctx context.Context, row PendingEvent) (err error) {
	r := l.r
	ctx, span := r.tracer.Start(telemetry.Extract(ctx, row.Message.Headers), "relay "+row.EventType,
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(
			attribute.String("messaging.destination.name", row.Message.Topic),
			attribute.String("messaging.system", l.id.String()),
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
	if err := l.publish(ctx, row); err != nil {
		return fmt.Errorf("%s: %w", l.id, err)
	}
	r.metrics.published.WithLabelValues(l.id.String(), row.Message.Topic).Inc()
	if l.id == LegKafka {
		r.metrics.latency.WithLabelValues(row.Message.Topic).Observe(r.now().Sub(row.CreatedAt).Seconds())
	}
	return nil
}
