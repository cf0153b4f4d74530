package app

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/domain"
)

// SubmitInput is the input of SubmitJob.
type SubmitInput struct {
	IdempotencyKey string
	Spec           domain.Spec
	// ResubmittedFrom is the earlier job a resubmission copies (see
	// ResubmitJob); empty for a new submission.
	ResubmittedFrom string
}

// SubmitJob validates the request, applies defaults and stores the job in
// status SUBMITTED together with its job.submitted and audit events. The
// same idempotency key from the same user returns the job created first
// (replayed = true) when the request is the same, and an error wrapping
// domain.ErrIdempotencyKeyReused when it differs. Every field violation is
// reported at once, as a *domain.ValidationError, and nothing is written.
func (a *App) SubmitJob(ctx context.Context, actor Actor, in SubmitInput) (job *domain.Job, replayed bool, err error) {
	if actor.UserID == "" {
		return nil, false, domain.ErrUnauthenticated
	}
	spec := in.Spec
	spec.ApplyDefaults()
	var ve []domain.FieldViolation
	if err := domain.ValidateIdempotencyKey(in.IdempotencyKey); err != nil {
		ve = append(ve, violationsOf(err)...)
	}
	if err := spec.Validate(a.cat, "spec"); err != nil {
		ve = append(ve, violationsOf(err)...)
	}
	if len(ve) > 0 {
		return nil, false, &domain.ValidationError{Violations: ve}
	}
	if !a.mayCharge(actor, spec.Allocation) {
		return nil, false, fmt.Errorf("%w: you may not charge allocation %s", domain.ErrPermissionDenied, spec.Allocation)
	}

	// No look-up of the key first: Create refuses a stored (user, key) with
	// ErrDuplicateIdempotencyKey, and only then is the first job read.
	now := a.now()
	cost := a.cfg.Rates.Estimate(spec.Resources, spec.Resources.Walltime)
	j := domain.NewJob(a.newID(), actor.UserID, spec, in.IdempotencyKey, a.correlationID(ctx, nil), cost, now)
	// NewJob fingerprinted the spec (RequestHash): not again.
	hash := requestHash(j.RequestHash, in.ResubmittedFrom)
	if j.CorrelationID == "" {
		j.CorrelationID = j.ID
	}
	if in.ResubmittedFrom != "" {
		j.ResubmittedFrom, j.RequestHash = in.ResubmittedFrom, hash
		j.History[0].Reason = "resubmitted from job " + in.ResubmittedFrom
	}
	j.TraceParent = traceParent(ctx)
	out, err := a.outboxFor(ctx, j, j.History, a.userChange(actor, events.AuditActionSubmit))
	if err != nil {
		return nil, false, err
	}
	if err := a.repo.Create(ctx, j, out); err != nil {
		if errors.Is(err, ErrDuplicateIdempotencyKey) {
			// A retry, or a concurrent one that won the race: answer as a
			// replay.
			if j, ok, rerr := a.replay(ctx, actor, in.IdempotencyKey, hash); rerr != nil || ok {
				return j, ok, rerr
			}
		}
		return nil, false, fmt.Errorf("submit job: %w", err)
	}
	// Create stored exactly j at version 1 (the JobRepository contract): no
	// need to read it back.
	stored := j
	stored.Version = 1
	// Debug, not Info: every call already leaves an INFO "grpc call" line
	// (method, code, duration, trace and correlation ids), and the job's
	// job.submitted event and audit record; a second line per submission
	// is a write to the log per call on the hottest path.
	a.log.DebugContext(ctx, "job submitted", "job_id", j.ID, "user_id", actor.UserID,
		"tacc_system", spec.System, "partition", spec.Partition, "agent", string(spec.Agent))
	a.changed(stored)
	return stored, false, nil
}

// replay returns the job stored under (user, key), if any.
func (a *App) replay(ctx context.Context, actor Actor, key, hash string) (*domain.Job, bool, error) {
	j, err := a.repo.GetByIdempotencyKey(ctx, actor.UserID, key)
	switch {
	case errors.Is(err, domain.ErrNotFound):
		return nil, false, nil
	case err != nil:
		return nil, false, fmt.Errorf("submit job: look up idempotency key: %w", err)
	case j.RequestHash != hash:
		return nil, false, fmt.Errorf("submit job: key %q belongs to job %s: %w", key, j.ID, domain.ErrIdempotencyKeyReused)
	}
	return j, true, nil
}

func violationsOf(err error) []domain.FieldViolation {
	var ve *domain.ValidationError
	if errors.As(err, &ve) {
		return ve.Violations
	}
	return nil
}

// GetJob returns a job the actor may see. A job of another user is
// reported as not found, so its existence does not leak.
func (a *App) GetJob(ctx context.Context, actor Actor, id string) (*domain.Job, error) {
	if id == "" {
		return nil, domain.Invalid("job_id", "required")
	}
	j, err := a.repo.Get(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("get job %s: %w", id, err)
	}
	if !actor.canSee(j) {
		return nil, fmt.Errorf("get job %s: %w", id, domain.ErrNotFound)
	}
	return j, nil
}

var (
	errAlreadyCancelled = errors.New("job already cancelled")
	errRefChanged       = errors.New("job reached the scheduler meanwhile")
)

// CancelJob cancels a job that has not finished: at the scheduler first
// (when the job reached it), then in the store with job.cancelled and audit
// events. It is idempotent: a CANCELLED job is returned unchanged. A
// COMPLETED or FAILED job gives a *domain.TransitionError. Only the owner
// or an admin may cancel; others get domain.ErrNotFound.
func (a *App) CancelJob(ctx context.Context, actor Actor, id, reason string) (*domain.Job, error) {
	var ve []domain.FieldViolation
	if id == "" {
		ve = append(ve, domain.FieldViolation{Field: "job_id", Description: "required"})
	}
	if utf8.RuneCountInString(reason) > domain.MaxReasonLen || !utf8.ValidString(reason) {
		ve = append(ve, domain.FieldViolation{Field: "reason", Description: fmt.Sprintf("at most %d characters of UTF-8", domain.MaxReasonLen)})
	}
	if len(ve) > 0 {
		return nil, &domain.ValidationError{Violations: ve}
	}
	for range 5 {
		j, err := a.GetJob(ctx, actor, id)
		if err != nil {
			if errors.Is(err, domain.ErrNotFound) {
				a.auditDenied(ctx, actor, id, events.AuditActionCancel)
			}
			return nil, fmt.Errorf("cancel: %w", err)
		}
		switch {
		case j.Status == domain.StatusCancelled:
			return j, nil
		case j.Status.Terminal():
			return nil, fmt.Errorf("cancel job %s: %w", id, &domain.TransitionError{From: j.Status, To: domain.StatusCancelled})
		}
		ref := j.SchedulerRef
		if !ref.IsZero() {
			if err := a.sched.Cancel(ctx, SchedulerRef{ID: ref.ID, SubmittedAt: ref.SubmittedAt}); err != nil {
				if errors.Is(err, ErrSchedulerUnavailable) {
					return nil, fmt.Errorf("cancel job %s at scheduler: %w: %w", id, domain.ErrUnavailable, err)
				}
				return nil, fmt.Errorf("cancel job %s at scheduler: %w", id, err)
			}
		}
		stored, err := a.repo.Transition(ctx, id, AnyVersion, func(cur *domain.Job) ([]OutboxRecord, error) {
			if cur.Status == domain.StatusCancelled {
				return nil, errAlreadyCancelled
			}
			if cur.SchedulerRef != ref {
				return nil, errRefChanged
			}
			tr, err := cur.Cancel(actor.UserID, reason, a.now(), a.cfg.Rates)
			if err != nil {
				return nil, err
			}
			return a.outboxFor(ctx, cur, []domain.Transition{tr}, a.userChange(actor, events.AuditActionCancel))
		})
		switch {
		case errors.Is(err, errAlreadyCancelled), errors.Is(err, errRefChanged):
			continue
		case err != nil:
			return nil, fmt.Errorf("cancel job %s: %w", id, err)
		}
		a.log.InfoContext(ctx, "job cancelled", "job_id", id, "user_id", actor.UserID, "from_status", string(j.Status))
		a.changed(stored)
		return stored, nil
	}
	return nil, fmt.Errorf("cancel job %s: job kept changing: %w", id, domain.ErrUnavailable)
}

// auditDenied records, when job id exists but actor may not touch it, the
// refused command as an audit.action_recorded with outcome DENIED. The job
// itself is not changed, and the caller still gets NotFound (the job's
// existence is not revealed); a failure to record it is only logged.
func (a *App) auditDenied(ctx context.Context, actor Actor, id string, action events.AuditAction) {
	j, err := a.repo.Get(ctx, id)
	if err != nil || actor.canSee(j) {
		return
	}
	a.auditJob(ctx, actor, id, action, events.AuditOutcomeDenied, map[string]string{"refused": "not the job's owner"},
		"refused command not audited")
}

// WatchJob calls send with the job's transitions in sequence order: first
// the recorded ones when replay is set, then each new one as it is
// committed (by this process or another replica). It returns nil after
// sending the transition into a terminal status (at once, for a job
// already terminal and no replay), or ctx's error.
func (a *App) WatchJob(ctx context.Context, actor Actor, id string, replay bool, send func(domain.Transition) error) error {
	changed, unsubscribe := a.notifier.subscribe(id)
	defer unsubscribe()
	j, err := a.GetJob(ctx, actor, id)
	if err != nil {
		return fmt.Errorf("watch: %w", err)
	}
	var last int64
	if !replay {
		last = j.Sequence
	}
	ticker := time.NewTicker(a.cfg.WatchPollInterval)
	defer ticker.Stop()
	for {
		for _, h := range j.History {
			if h.Sequence > last {
				if err := send(h); err != nil {
					return fmt.Errorf("watch job %s: send: %w", id, err)
				}
				last = h.Sequence
			}
		}
		if j.Status.Terminal() {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		case <-ticker.C:
		}
		if j, err = a.repo.Get(ctx, id); err != nil {
			return fmt.Errorf("watch job %s: %w", id, err)
		}
	}
}
