package app

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"

	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/domain"
)

// Defaults of ReconcilerConfig.
const (
	DefaultReconcileInterval    = 2 * time.Second
	DefaultReconcileMaxInterval = time.Minute
	DefaultReconcileJitter      = 0.2
	DefaultReconcileBatch       = 500
	DefaultReconcileParallel    = 16
	DefaultDispatchLease        = 15 * time.Second
	DefaultLostAfter            = 3
	DefaultSampleInterval       = 30 * time.Second
)

// ReconcilerConfig configures the Reconciler.
type ReconcilerConfig struct {
	// Interval is the pause between passes while everything works.
	Interval time.Duration
	// MaxInterval caps the pause, which doubles after each pass that met an
	// unreachable scheduler or database.
	MaxInterval time.Duration
	// Jitter spreads each pause by up to ±Jitter of it, so replicas do not
	// poll in lockstep; 0 to 1.
	Jitter float64
	// Batch bounds each of a pass's two work lists: SUBMITTED jobs to hand
	// to the scheduler, and QUEUED or RUNNING jobs to poll, each oldest
	// first. Two lists keep a backlog of jobs waiting at the scheduler
	// (thousands queued behind a few running) from hiding new submissions.
	Batch int
	// Parallel is how many jobs of a pass are reconciled at once. Their
	// writes meet in the store's shared transactions (group commit), so a
	// pass over many jobs costs a few commits, not two per job.
	Parallel int
	// DispatchLease is how long a replica's claim on a SUBMITTED job keeps
	// others from handing it to the scheduler: a dead replica's claims are
	// taken over after it. A claim taken over while its submission may have
	// reached the scheduler is resubmitted as uncertain (the scheduler is
	// asked first), so a short lease never submits a job twice.
	DispatchLease time.Duration
	// LostAfter is how many passes in a row the scheduler must not know a
	// job before it is failed as LOST_BY_SCHEDULER.
	LostAfter int
	// HoldDispatch keeps SUBMITTED jobs from the scheduler: submissions are
	// accepted and wait, while the jobs already at the scheduler are polled
	// and recorded as usual (a scheduler's maintenance window, or measuring
	// what a submission costs without the run it causes).
	HoldDispatch bool
	// SampleInterval is how often a RUNNING job gets a job.metrics_recorded
	// (not final) with its run time, node- and GPU-hours so far and, where
	// the backend measures them, CPU time and memory; 0 sends none.
	SampleInterval time.Duration
}

// DefaultReconcilerConfig returns the defaults.
func DefaultReconcilerConfig() ReconcilerConfig {
	return ReconcilerConfig{
		Interval: DefaultReconcileInterval, MaxInterval: DefaultReconcileMaxInterval,
		Jitter: DefaultReconcileJitter, Batch: DefaultReconcileBatch, Parallel: DefaultReconcileParallel,
		DispatchLease: DefaultDispatchLease, LostAfter: DefaultLostAfter,
		SampleInterval: DefaultSampleInterval,
	}
}

// Validate reports every invalid setting.
func (c ReconcilerConfig) Validate() error {
	var errs []error
	if c.Interval <= 0 || c.MaxInterval < c.Interval {
		errs = append(errs, errors.New("need 0 < interval <= max interval"))
	}
	if c.Jitter < 0 || c.Jitter > 1 {
		errs = append(errs, errors.New("jitter must be within [0, 1]"))
	}
	if c.Batch < 1 {
		errs = append(errs, errors.New("batch must be positive"))
	}
	if c.Parallel < 1 {
		errs = append(errs, errors.New("parallel must be positive"))
	}
	if c.DispatchLease <= 0 {
		errs = append(errs, errors.New("dispatch lease must be positive"))
	}
	if c.LostAfter < 1 {
		errs = append(errs, errors.New("lost-after must be positive"))
	}
	if c.SampleInterval < 0 {
		errs = append(errs, errors.New("sample interval must not be negative"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("reconciler config: %w", err)
	}
	return nil
}

// Reconciler drives active jobs through the scheduler: it hands SUBMITTED
// jobs to the scheduler and maps each reported SchedulerStatus to
// transitions. Each transition is applied exactly once: it is written with
// the version of the job the decision was based on, so a repeated poll, a
// second replica or a concurrent cancel makes the write a version conflict
// and the next pass decides again from the new state. Scheduler and
// database errors are logged and retried with backoff; jobs are never
// dropped because the scheduler is unreachable.
type Reconciler struct {
	app *App
	cfg ReconcilerConfig
	log *slog.Logger

	// replica names this reconciler's dispatch claims.
	replica string

	mu      sync.Mutex
	unknown map[string]int // consecutive ErrUnknownJob answers per job

	// tracked holds the QUEUED and RUNNING jobs of the last pass as read:
	// a pass reads the documents of only those whose version changed.
	trackedMu sync.Mutex
	tracked   map[string]*domain.Job

	passes atomic.Uint64 // passes ended, see Passes

	// observePass, when set, is told each pass's duration and result.
	observePass func(time.Duration, PassResult)
}

// ReconcilerOption configures a Reconciler beyond its ReconcilerConfig.
type ReconcilerOption func(*Reconciler)

// WithPassObserver has observe called after every pass with how long the
// pass took (claim, reads, scheduler calls and writes) and what it did; the
// service exports it as a metric.
func WithPassObserver(observe func(time.Duration, PassResult)) ReconcilerOption {
	return func(r *Reconciler) { r.observePass = observe }
}

// NewReconciler builds a Reconciler over the App's repository and scheduler.
func NewReconciler(a *App, cfg ReconcilerConfig, logger *slog.Logger, opts ...ReconcilerOption) (*Reconciler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if a == nil || logger == nil {
		return nil, errors.New("reconciler: app and logger are required")
	}
	r := &Reconciler{app: a, cfg: cfg, log: logger, replica: a.newID(), unknown: map[string]int{},
		tracked: map[string]*domain.Job{}}
	for _, o := range opts {
		o(r)
	}
	return r, nil
}

// Passes returns how many passes have ended, failed ones included.
func (r *Reconciler) Passes() uint64 { return r.passes.Load() }

// PassResult counts what one pass did.
type PassResult struct {
	Dispatched int // jobs handed to the scheduler
	Applied    int // transitions written
	Conflicts  int // decisions dropped because the job changed meanwhile
	Errors     int // scheduler or database failures (retried next pass)
	Samples    int // metrics samples of running jobs written
}

// Run makes passes until ctx is done, pausing Interval between them (more
// after failures, with jitter), or less when the App is kicked (unless
// dispatch is held). A pass that handed jobs to the scheduler or recorded
// transitions without failing is followed by the next one at once, so
// that a backlog (a burst of submissions, many jobs ending together) is
// worked off at the rate the database and the scheduler allow rather than
// Batch jobs per Interval.
func (r *Reconciler) Run(ctx context.Context) error {
	// Each pause is Interval, doubled after every pass with errors up to
	// MaxInterval, spread by ±Jitter of it.
	pause := &backoff.ExponentialBackOff{InitialInterval: r.cfg.Interval, RandomizationFactor: r.cfg.Jitter,
		Multiplier: 2, MaxInterval: r.cfg.MaxInterval}
	pause.Reset()
	pause.NextBackOff() // a first pass that fails pauses 2·Interval, as after a good one
	kick := r.app.kick
	if r.cfg.HoldDispatch {
		r.log.WarnContext(ctx, "reconciler: dispatch held; submitted jobs wait until a restart without DISPATCH_HOLD")
		kick = nil // a submission, which kicks, gives a held pass nothing to do
	}
	for {
		res := r.Pass(ctx)
		if res.Errors == 0 {
			pause.Reset()
			if res.Dispatched+res.Applied > 0 {
				if ctx.Err() != nil {
					return nil
				}
				continue
			}
		}
		timer := time.NewTimer(pause.NextBackOff())
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-timer.C:
		case <-kick:
			timer.Stop()
		}
	}
}

// passWrites bounds a pass's jobs whose database writes are in flight at
// once. Unlike Parallel it bounds no scheduler calls: the writes wait for
// the store's shared transactions (group commit), so many of them in
// flight make few, larger commits rather than Parallel jobs per commit.
const passWrites = 128

// Pass claims up to Batch SUBMITTED jobs (in one statement, see
// JobRepository.ClaimSubmitted; none while HoldDispatch) and looks at up to
// Batch QUEUED or RUNNING jobs (reading again only those that changed, see
// trackedJobs), once. Parallel jobs at a time call the scheduler (a
// submission, or the status of a job the bulk answer left out); the
// database writes that follow, and those of jobs whose status the bulk
// answer gave, run up to passWrites at a time.
func (r *Reconciler) Pass(ctx context.Context) PassResult {
	defer r.passes.Add(1)
	if r.observePass == nil {
		return r.pass(ctx)
	}
	begun := time.Now()
	res := r.pass(ctx)
	r.observePass(time.Since(begun), res)
	return res
}

func (r *Reconciler) pass(ctx context.Context) PassResult {
	p := &passRun{ctx: ctx, r: r, slots: make(chan struct{}, passWrites)}
	var (
		jobs []*domain.Job
		err  error
	)
	if !r.cfg.HoldDispatch {
		jobs, err = r.app.repo.ClaimSubmitted(ctx, r.replica, r.app.now(), r.cfg.DispatchLease, r.cfg.Batch)
	}
	if err == nil {
		var tracked []*domain.Job
		tracked, err = r.trackedJobs(ctx)
		jobs = append(jobs, tracked...)
	}
	if err != nil {
		r.log.ErrorContext(ctx, "reconciler: claim or list active jobs", "error", err)
		p.res.Errors++
		return p.res
	}
	bulk, bulkErr := r.bulkStatus(ctx, jobs)
	var (
		wg   sync.WaitGroup
		work = make(chan *domain.Job)
	)
	for range min(r.cfg.Parallel, len(jobs)) {
		wg.Go(func() {
			var own PassResult
			for j := range work {
				r.reconcile(ctx, j, bulk, bulkErr, p, &own)
			}
			p.add(own)
		})
	}
	for _, j := range jobs {
		if ctx.Err() != nil {
			break
		}
		if st, ok := bulk[j.SchedulerRef.ID]; ok && bulkErr == nil && j.Status != domain.StatusSubmitted && !j.SchedulerRef.IsZero() {
			p.write(j, func(res *PassResult) error { return r.apply(ctx, j, st, res) })
			continue
		}
		work <- j
	}
	close(work)
	wg.Wait()
	p.writes.Wait()
	return p.res
}

// passRun is a pass in progress: its result and its writes in flight.
type passRun struct {
	ctx    context.Context
	r      *Reconciler
	slots  chan struct{}
	writes sync.WaitGroup

	mu  sync.Mutex
	res PassResult
}

func (p *passRun) add(o PassResult) {
	p.mu.Lock()
	p.res.add(o)
	p.mu.Unlock()
}

// write runs f, database work of job j that calls no scheduler, on a
// goroutine of its own once one of the pass's passWrites slots is free,
// and counts its result and error.
func (p *passRun) write(j *domain.Job, f func(res *PassResult) error) {
	p.slots <- struct{}{}
	p.writes.Go(func() {
		defer func() { <-p.slots }()
		var own PassResult
		p.r.tally(p.ctx, j, f(&own), &own)
		p.add(own)
	})
}

// trackedJobs returns the QUEUED and RUNNING jobs ListActive would, oldest
// UpdatedAt first, reading the documents of only the jobs whose version
// differs from the one the last pass read: every write advances a job's
// version, so an unchanged version is an unchanged job. The jobs returned
// are shared with the next pass and must not be modified (reconcile
// mutates clones).
func (r *Reconciler) trackedJobs(ctx context.Context) ([]*domain.Job, error) {
	r.trackedMu.Lock()
	defer r.trackedMu.Unlock()
	vs, err := r.app.repo.ListActiveVersions(ctx, r.cfg.Batch, domain.StatusQueued, domain.StatusRunning)
	if err != nil {
		return nil, err
	}
	var stale []string
	for _, v := range vs {
		if j, ok := r.tracked[v.ID]; !ok || j.Version != v.Version {
			stale = append(stale, v.ID)
		}
	}
	fresh := make(map[string]*domain.Job, len(stale))
	if len(stale) > 0 {
		read, err := r.app.repo.GetMany(ctx, stale)
		if err != nil {
			return nil, err
		}
		for _, j := range read {
			fresh[j.ID] = j
		}
	}
	next := make(map[string]*domain.Job, len(vs))
	jobs := make([]*domain.Job, 0, len(vs))
	for _, v := range vs {
		j, ok := fresh[v.ID]
		if !ok {
			j, ok = r.tracked[v.ID]
		}
		// A job read again may have moved on since it was listed.
		if !ok || (j.Status != domain.StatusQueued && j.Status != domain.StatusRunning) {
			continue
		}
		next[v.ID] = j
		jobs = append(jobs, j)
	}
	r.tracked = next
	return jobs, nil
}

func (p *PassResult) add(o PassResult) {
	p.Dispatched += o.Dispatched
	p.Applied += o.Applied
	p.Conflicts += o.Conflicts
	p.Errors += o.Errors
	p.Samples += o.Samples
}

// reconcile hands the SUBMITTED job j to the scheduler, or records the
// status the scheduler reports for it.
func (r *Reconciler) reconcile(ctx context.Context, j *domain.Job, bulk map[string]SchedulerStatus, bulkErr error, p *passRun, res *PassResult) {
	var err error
	switch {
	case j.Status == domain.StatusSubmitted:
		err = r.dispatch(ctx, j, p, res)
	case !j.SchedulerRef.IsZero() && bulkErr != nil:
		err = fmt.Errorf("status: %w", bulkErr)
	case !j.SchedulerRef.IsZero():
		if st, ok := bulk[j.SchedulerRef.ID]; ok {
			err = r.apply(ctx, j, st, res)
		} else {
			err = r.poll(ctx, j, res)
		}
	}
	r.tally(ctx, j, err, res)
}

// tally counts err, the outcome of reconciling j, into res.
func (r *Reconciler) tally(ctx context.Context, j *domain.Job, err error, res *PassResult) {
	switch {
	case errors.Is(err, ErrVersionConflict):
		res.Conflicts++
	case err != nil:
		res.Errors++
		r.log.WarnContext(ctx, "reconciler: job not reconciled, will retry", "job_id", j.ID, "status", string(j.Status), "error", err)
	}
}

// bulkStatus asks a BulkStatuser scheduler about every polled job of the
// pass in one call. Jobs missing from its answer are polled one by one.
func (r *Reconciler) bulkStatus(ctx context.Context, jobs []*domain.Job) (map[string]SchedulerStatus, error) {
	bs, ok := r.app.sched.(BulkStatuser)
	if !ok {
		return nil, nil
	}
	var refs []SchedulerRef
	for _, j := range jobs {
		if j.Status != domain.StatusSubmitted && !j.SchedulerRef.IsZero() {
			refs = append(refs, SchedulerRef{ID: j.SchedulerRef.ID, SubmittedAt: j.SchedulerRef.SubmittedAt})
		}
	}
	if len(refs) == 0 {
		return nil, nil
	}
	return bs.StatusMany(ctx, refs)
}

var errSkip = errors.New("skip")

// dispatch submits the SUBMITTED job claimed, which the pass claimed for
// this replica, and records QUEUED (or FAILED when the scheduler refuses
// it). A claim that took over another replica's (Dispatch.Uncertain set)
// is submitted as a resubmission, which the scheduler looks for first.
// QUEUED is recorded by one of the pass's writes (passRun.write), so that
// the caller goes on to the next submission meanwhile.
func (r *Reconciler) dispatch(ctx context.Context, claimed *domain.Job, p *passRun, res *PassResult) (err error) {
	a := r.app
	j := claimed
	ctx, end := jobContext(ctx, j, "dispatch job")
	queueing := false
	defer func() {
		if !queueing {
			end(err)
		}
	}()
	if a.now().Sub(claimed.Dispatch.At) > r.cfg.DispatchLease/2 {
		// The pass claimed the job so long ago (a slow scheduler) that
		// the lease might end during this submission and another replica
		// submit it too: give the claim back for the next pass instead.
		_, err := a.repo.Transition(ctx, j.ID, claimed.Version, func(cur *domain.Job) ([]OutboxRecord, error) {
			if cur.Status != domain.StatusSubmitted {
				return nil, errSkip
			}
			cur.Dispatch = domain.DispatchClaim{Uncertain: claimed.Dispatch.Uncertain}
			return nil, nil
		})
		if errors.Is(err, errSkip) || errors.Is(err, ErrVersionConflict) {
			return nil // cancelled or taken over meanwhile
		}
		if err != nil {
			return fmt.Errorf("release claim held too long: %w", err)
		}
		return nil
	}
	req, err := a.submitRequest(claimed)
	if u := claimed.Dispatch.Uncertain; !u.IsZero() {
		req.Resubmit, req.NotBefore = true, u
	}
	var ref SchedulerRef
	if err == nil {
		ref, err = a.sched.Submit(ctx, req)
	}
	if err != nil {
		if errors.Is(err, ErrSchedulerUnavailable) || ctx.Err() != nil {
			// Release the claim so that the next pass retries at once.
			// The scheduler may have taken the job before the error: the
			// next attempt asks it first.
			uncertain := claimed.Dispatch.Uncertain
			if uncertain.IsZero() {
				uncertain = claimed.Dispatch.At
			}
			_, rerr := a.repo.Transition(ctx, j.ID, claimed.Version, func(cur *domain.Job) ([]OutboxRecord, error) {
				cur.Dispatch = domain.DispatchClaim{Uncertain: uncertain}
				return nil, nil
			})
			return errors.Join(fmt.Errorf("submit: %w", err), rerr)
		}
		st := &SchedulerStatus{Phase: PhaseFailed, ErrorCode: ErrorCodeSubmit, Reason: err.Error()}
		return r.record(ctx, claimed, st, res)
	}
	res.Dispatched++
	queueing = true
	p.write(j, func(res *PassResult) (err error) {
		defer func() { end(err) }()
		return r.recordQueued(ctx, claimed, ref, res)
	})
	return nil
}

// recordQueued records that the scheduler accepted the claimed job as ref,
// or cancels it there when it was cancelled meanwhile.
func (r *Reconciler) recordQueued(ctx context.Context, claimed *domain.Job, ref SchedulerRef, res *PassResult) error {
	a := r.app
	j := claimed
	dref := domain.SchedulerRef{Scheduler: a.sched.Name(), ID: ref.ID, SubmittedAt: ref.SubmittedAt}
	stored, err := a.repo.Transition(ctx, j.ID, claimed.Version, func(cur *domain.Job) ([]OutboxRecord, error) {
		tr, err := cur.MarkQueued(dref, a.now())
		if err != nil {
			return nil, err
		}
		cur.SetTransitionSource(tr.Sequence, domain.ActorOrchestrator, "")
		tr.Actor = domain.ActorOrchestrator
		return a.outboxFor(ctx, cur, []domain.Transition{tr}, a.systemChange(nil))
	})
	if err != nil {
		// Cancelled while being submitted: stop it at the scheduler too.
		if cur, gerr := a.repo.Get(ctx, j.ID); gerr == nil && cur.Status == domain.StatusCancelled {
			if cerr := a.sched.Cancel(ctx, ref); cerr != nil {
				return fmt.Errorf("cancel job cancelled during submission: %w", cerr)
			}
			return nil
		}
		return fmt.Errorf("record queued (scheduler id %s): %w", ref.ID, err)
	}
	res.Applied++
	r.log.InfoContext(ctx, "job queued", "job_id", j.ID, "scheduler", dref.Scheduler, "scheduler_job_id", ref.ID)
	a.changed(stored)
	return nil
}

func (a *App) submitRequest(j *domain.Job) (SubmitRequest, error) {
	plan, err := j.LaunchPlan()
	if err != nil {
		return SubmitRequest{}, err
	}
	r := j.Spec.Resources
	return SubmitRequest{
		JobID: j.ID, System: j.Spec.System, Name: j.Spec.Name, Script: plan.Script, Environment: plan.Environment,
		WorkDir: a.workDir(j.ID), Partition: j.Spec.Partition,
		Nodes: r.Nodes, CoresPerNode: r.CoresPerNode, GPUsPerNode: r.GPUsPerNode, MemoryMB: r.MemoryMB,
		Walltime: r.Walltime, Account: j.Spec.Allocation,
	}, nil
}

// poll asks the scheduler about a QUEUED or RUNNING job and records what
// changed.
func (r *Reconciler) poll(ctx context.Context, j *domain.Job, res *PassResult) error {
	ref := SchedulerRef{ID: j.SchedulerRef.ID, SubmittedAt: j.SchedulerRef.SubmittedAt}
	st, err := r.app.sched.Status(ctx, ref)
	if errors.Is(err, ErrUnknownJob) {
		r.mu.Lock()
		r.unknown[j.ID]++
		n := r.unknown[j.ID]
		r.mu.Unlock()
		if n < r.cfg.LostAfter {
			r.log.WarnContext(ctx, "reconciler: scheduler does not know the job", "job_id", j.ID, "scheduler_job_id", ref.ID, "times", n)
			return nil
		}
		st = SchedulerStatus{Phase: PhaseFailed, ErrorCode: ErrorCodeLost,
			Reason: fmt.Sprintf("the scheduler no longer knows job %s", ref.ID)}
	} else if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	return r.apply(ctx, j, st, res)
}

// apply records the status st of the polled job j (or samples its metrics
// while it keeps running).
func (r *Reconciler) apply(ctx context.Context, j *domain.Job, st SchedulerStatus, res *PassResult) error {
	r.mu.Lock()
	delete(r.unknown, j.ID)
	r.mu.Unlock()
	if j.Status == domain.StatusRunning && st.Phase == PhaseRunning {
		return r.sample(ctx, j, &st, res)
	}
	return r.record(ctx, j, &st, res)
}

// sample records a job.metrics_recorded of the RUNNING job j when its last
// one (or its start) is SampleInterval old. It is written with j's version,
// so two replicas polling at once record it once.
func (r *Reconciler) sample(ctx context.Context, j *domain.Job, st *SchedulerStatus, res *PassResult) error {
	a := r.app
	now := a.now()
	due := func(cur *domain.Job) bool {
		last := cur.StartedAt
		if cur.LastSampleAt.After(last) {
			last = cur.LastSampleAt
		}
		return r.cfg.SampleInterval > 0 && !last.IsZero() && now.Sub(last) >= r.cfg.SampleInterval
	}
	if !due(j) {
		return nil
	}
	_, err := a.repo.Transition(ctx, j.ID, j.Version, func(cur *domain.Job) ([]OutboxRecord, error) {
		if cur.Status != domain.StatusRunning || !due(cur) {
			return nil, errSkip
		}
		cur.LastSampleAt = now
		rec, err := a.runningSample(ctx, cur, st, now)
		if err != nil {
			return nil, err
		}
		return []OutboxRecord{rec}, nil
	})
	if errors.Is(err, errSkip) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("record metrics sample: %w", err)
	}
	res.Samples++
	return nil
}

// record applies the transitions that st implies for j, if any, with j's
// version.
func (r *Reconciler) record(ctx context.Context, j *domain.Job, st *SchedulerStatus, res *PassResult) (err error) {
	a := r.app
	if st.Phase == PhaseQueued {
		// Still waiting: no transition, at most a new detail.
		return r.recordDetail(ctx, j, st.Reason)
	}
	probe := j.Clone()
	trs, err := a.applyStatus(probe, st)
	if err != nil {
		return err
	}
	if len(trs) == 0 {
		return nil
	}
	ctx, end := jobContext(ctx, j, "record job status")
	defer func() { end(err) }()
	stored, err := a.repo.Transition(ctx, j.ID, j.Version, func(cur *domain.Job) ([]OutboxRecord, error) {
		trs, err := a.applyStatus(cur, st)
		if err != nil {
			return nil, err
		}
		return a.outboxFor(ctx, cur, trs, a.systemChange(st))
	})
	if err != nil {
		return fmt.Errorf("record %s: %w", st.Phase, err)
	}
	res.Applied += len(trs)
	r.log.InfoContext(ctx, "job status changed", "job_id", j.ID, "from_status", string(j.Status),
		"to_status", string(stored.Status), "scheduler_state", st.State)
	a.changed(stored)
	return nil
}

// recordDetail stores the scheduler's reason why the QUEUED job j waits
// when it changed, with j's version. It is no transition and emits no event.
func (r *Reconciler) recordDetail(ctx context.Context, j *domain.Job, detail string) error {
	if j.SchedulerDetail == detail || !j.Clone().SetSchedulerDetail(detail) {
		return nil
	}
	stored, err := r.app.repo.Transition(ctx, j.ID, j.Version, func(cur *domain.Job) ([]OutboxRecord, error) {
		if !cur.SetSchedulerDetail(detail) {
			return nil, errSkip
		}
		return nil, nil
	})
	if errors.Is(err, errSkip) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("record scheduler detail: %w", err)
	}
	r.log.InfoContext(ctx, "job waits", "job_id", j.ID, "scheduler_job_id", j.SchedulerRef.ID, "detail", detail)
	r.app.changed(stored)
	return nil
}

// applyStatus maps a scheduler report onto the job: none, one or (for a
// job that ended between two polls after starting) two transitions.
func (a *App) applyStatus(j *domain.Job, st *SchedulerStatus) ([]domain.Transition, error) {
	now := a.now()
	or := func(t time.Time) time.Time {
		if t.IsZero() {
			return now
		}
		return t
	}
	var trs []domain.Transition
	run := func(at time.Time) error {
		if j.Status != domain.StatusQueued {
			return nil
		}
		tr, err := j.MarkRunning(at)
		if err == nil {
			trs = append(trs, tr)
		}
		return err
	}
	var (
		tr  domain.Transition
		err error
	)
	switch st.Phase {
	case PhaseQueued:
		return nil, nil // still waiting; a requeued RUNNING job stays RUNNING
	case PhaseRunning:
		if err := run(or(st.StartTime)); err != nil || len(trs) == 0 {
			return nil, err
		}
		j.SetTransitionSource(trs[0].Sequence, domain.ActorScheduler, cmp.Or(st.Code, st.State))
		trs[0].Actor, trs[0].SchedulerCode = domain.ActorScheduler, cmp.Or(st.Code, st.State)
		return trs, nil
	case PhaseCompleted:
		if err := run(or(st.StartTime)); err != nil {
			return nil, err
		}
		tr, err = j.Complete(st.ExitCode, or(st.EndTime), a.cfg.Rates)
	case PhaseFailed:
		if !st.StartTime.IsZero() {
			if err := run(st.StartTime); err != nil {
				return nil, err
			}
		}
		code := st.ErrorCode
		if code == "" {
			code = ErrorCodeNonZeroExit
		}
		detail := st.Reason
		if detail == "" {
			detail = "job ended in scheduler state " + st.State
			if st.ExitCode != nil {
				detail += fmt.Sprintf(" with exit code %d", *st.ExitCode)
			}
		}
		tr, err = j.Fail(code, domain.FailureMessage(code, detail), st.ExitCode, or(st.EndTime), a.cfg.Rates)
	case PhaseCancelled:
		reason := "cancelled at the scheduler"
		if st.Reason != "" {
			reason += ": " + st.Reason
		}
		tr, err = j.Cancel(a.sched.Name(), reason, or(st.EndTime), a.cfg.Rates)
	default:
		return nil, fmt.Errorf("unknown scheduler phase %d", st.Phase)
	}
	if err != nil {
		return nil, err
	}
	trs = append(trs, tr)
	// The scheduler reported the last transition; a RUNNING before it is
	// implied (the job ended between two polls), with no code of its own.
	actor := domain.ActorScheduler
	if st.ErrorCode == ErrorCodeLost {
		actor = domain.ActorOrchestrator
	}
	for i := range trs {
		code := ""
		if i == len(trs)-1 {
			code = cmp.Or(st.Code, st.State)
		}
		j.SetTransitionSource(trs[i].Sequence, actor, code)
		trs[i].Actor, trs[i].SchedulerCode = actor, code
	}
	return trs, nil
}
