package domain

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"slices"
	"time"
)

// SchedulerRef identifies a job at its scheduler; the submit time is part of
// the identity because Slurm reuses job ids.
type SchedulerRef struct {
	// Scheduler is the backend name, "local" or "slurm".
	Scheduler   string
	ID          string
	SubmittedAt time.Time
}

// IsZero reports whether the job has not reached a scheduler.
func (r SchedulerRef) IsZero() bool { return r.ID == "" }

// Transition is one recorded status change. Sequence numbers a job's
// transitions from 1 (the creation, From "") without gaps; EventID is the id
// of the lifecycle event published for it.
type Transition struct {
	Sequence int64
	From     Status
	To       Status
	At       time.Time
	Reason   string
	EventID  string
	// Actor is who caused the transition: the user for a submission or a
	// cancellation, ActorScheduler or ActorOrchestrator for the changes the
	// fleet records itself. Empty in transitions stored before it existed
	// (see TransitionActor).
	Actor string `json:",omitempty"`
	// SchedulerCode is the scheduler's own code for the transition (Slurm's
	// state reason or state, e.g. OUT_OF_MEMORY); empty when it gave none.
	SchedulerCode string `json:",omitempty"`
	// ErrorCode is the job's error code set by a transition into FAILED.
	ErrorCode string `json:",omitempty"`
}

// DispatchClaim marks a SUBMITTED job that one orchestrator replica is
// handing to the scheduler, so that no other replica does the same.
type DispatchClaim struct {
	Token string
	At    time.Time
	// Uncertain is when the first earlier attempt whose outcome is unknown
	// (it timed out, or its replica died before recording the result)
	// started; zero when no attempt was made. The scheduler may hold the
	// job already, so the next attempt looks for it before submitting.
	Uncertain time.Time
}

// Job is the aggregate: one submitted job with its whole history.
type Job struct {
	ID    string
	Owner string
	Spec  Spec
	// IdempotencyKey is unique per Owner; RequestHash fingerprints the
	// request made with it.
	IdempotencyKey string
	RequestHash    string
	CorrelationID  string
	// TraceParent is the W3C traceparent of the submission; the changes the
	// reconciler records later continue that trace. Empty without tracing.
	TraceParent string

	Status       Status
	SchedulerRef SchedulerRef
	ExitCode     *int32
	ErrorCode    string
	ErrorMessage string
	CancelledBy  string
	// ResubmittedFrom is the id of the job this one was created from by a
	// resubmission; empty for a job submitted anew.
	ResubmittedFrom string `json:",omitempty"`
	// SchedulerDetail is the scheduler's current reason why the QUEUED job
	// waits, with what to do about it (e.g. a per-user job limit); empty when
	// it gives none. Every transition clears it.
	SchedulerDetail string `json:",omitempty"`
	Cost            Cost

	CreatedAt  time.Time
	UpdatedAt  time.Time
	QueuedAt   time.Time
	StartedAt  time.Time
	FinishedAt time.Time
	// LastSampleAt is when the latest metrics sample of the running job was
	// recorded; zero before the first.
	LastSampleAt time.Time

	// Sequence is the number of the last transition in History.
	Sequence int64
	History  []Transition
	// Version is the optimistic-concurrency version of the stored job; the
	// repository sets it to 1 on create and increments it on every write.
	Version  int64
	Dispatch DispatchClaim
}

// NewJob creates a job in status SUBMITTED with its first transition
// (sequence 1). The spec must have been validated.
func NewJob(id, owner string, spec Spec, idempotencyKey, correlationID string, cost Cost, now time.Time) *Job {
	now = now.UTC()
	return &Job{
		ID: id, Owner: owner, Spec: spec,
		IdempotencyKey: idempotencyKey,
		RequestHash:    spec.Hash(),
		CorrelationID:  correlationID,
		Status:         StatusSubmitted,
		Cost:           cost,
		CreatedAt:      now,
		UpdatedAt:      now,
		Sequence:       1,
		History:        []Transition{{Sequence: 1, To: StatusSubmitted, At: now, Actor: owner}},
	}
}

// Clone returns a deep copy.
func (j *Job) Clone() *Job {
	c := *j
	c.Spec.Environment = cloneMap(j.Spec.Environment)
	c.Spec.Tags = slices.Clone(j.Spec.Tags)
	c.History = slices.Clone(j.History)
	if j.ExitCode != nil {
		e := *j.ExitCode
		c.ExitCode = &e
	}
	return &c
}

func cloneMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Hash fingerprints the spec, so that a retried submission can be told from
// a different request reusing an idempotency key.
func (s Spec) Hash() string {
	b, err := json.Marshal(s) // map keys are sorted by encoding/json
	if err != nil {
		panic(err) // a Spec of plain values always marshals
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// LastTransition returns the most recent transition.
func (j *Job) LastTransition() Transition { return j.History[len(j.History)-1] }

// SetEventID records the lifecycle event id of the transition seq.
func (j *Job) SetEventID(seq int64, eventID string) error {
	for i := range j.History {
		if j.History[i].Sequence == seq {
			j.History[i].EventID = eventID
			return nil
		}
	}
	return errors.New("no transition with that sequence")
}

// transition applies from -> to when legal and appends it to the history.
func (j *Job) transition(to Status, at time.Time, reason string) (Transition, error) {
	if err := CheckTransition(j.Status, to); err != nil {
		return Transition{}, err
	}
	at = at.UTC()
	j.Sequence++
	t := Transition{Sequence: j.Sequence, From: j.Status, To: to, At: at, Reason: reason}
	j.History = append(j.History, t)
	j.Status = to
	j.UpdatedAt = at
	j.SchedulerDetail = ""
	if to.Terminal() {
		j.FinishedAt = at
	}
	return t, nil
}

// SetSchedulerDetail records the scheduler's reason why the QUEUED job
// waits. It reports whether the detail changed; a job in any other status
// keeps none.
func (j *Job) SetSchedulerDetail(detail string) bool {
	if j.Status != StatusQueued || j.SchedulerDetail == detail {
		return false
	}
	j.SchedulerDetail = detail
	return true
}

// MarkQueued records that the scheduler accepted the job.
func (j *Job) MarkQueued(ref SchedulerRef, at time.Time) (Transition, error) {
	if ref.ID == "" {
		return Transition{}, errors.New("mark queued: empty scheduler job id")
	}
	t, err := j.transition(StatusQueued, at, "accepted by "+ref.Scheduler+" as "+ref.ID)
	if err != nil {
		return t, err
	}
	j.SchedulerRef = ref
	j.QueuedAt = t.At
	j.Dispatch = DispatchClaim{}
	return t, nil
}

// MarkRunning records that the job started; startedAt is the scheduler's
// start time when known.
func (j *Job) MarkRunning(startedAt time.Time) (Transition, error) {
	t, err := j.transition(StatusRunning, startedAt, "")
	if err == nil {
		j.StartedAt = t.At
	}
	return t, err
}

// Complete records a successful end; rates reprice the job by its run time.
func (j *Job) Complete(exitCode *int32, at time.Time, rates Rates) (Transition, error) {
	t, err := j.transition(StatusCompleted, at, "")
	if err == nil {
		j.ExitCode = cloneInt(exitCode)
		j.reprice(rates)
	}
	return t, err
}

// Fail records a failed job with a machine readable code.
func (j *Job) Fail(code, message string, exitCode *int32, at time.Time, rates Rates) (Transition, error) {
	if code == "" {
		return Transition{}, errors.New("fail: empty error code")
	}
	t, err := j.transition(StatusFailed, at, message)
	if err == nil {
		j.History[len(j.History)-1].ErrorCode = code
		t.ErrorCode = code
		j.ErrorCode, j.ErrorMessage = code, message
		j.ExitCode = cloneInt(exitCode)
		j.Dispatch = DispatchClaim{}
		j.reprice(rates)
	}
	return t, err
}

// Cancel records a cancellation by actor with reason.
func (j *Job) Cancel(actor, reason string, at time.Time, rates Rates) (Transition, error) {
	t, err := j.transition(StatusCancelled, at, reason)
	if err == nil {
		j.History[len(j.History)-1].Actor = actor
		t.Actor = actor
		j.CancelledBy = actor
		j.Dispatch = DispatchClaim{}
		j.reprice(rates)
	}
	return t, err
}

// reprice replaces the walltime estimate by the cost of the actual run
// time once the job has finished; a job that never ran costs nothing.
func (j *Job) reprice(r Rates) {
	if j.StartedAt.IsZero() {
		j.Cost = Cost{}
		return
	}
	j.Cost = r.Estimate(j.Spec.Resources, j.FinishedAt.Sub(j.StartedAt))
}

// QueueWait is the time from acceptance to start (or to the end, for a job
// that never started).
func (j *Job) QueueWait() time.Duration {
	end := j.StartedAt
	if end.IsZero() {
		end = j.FinishedAt
	}
	if end.IsZero() {
		return 0
	}
	return max(0, end.Sub(j.CreatedAt))
}

// RunTime is the time from start to end; zero for a job that never started.
func (j *Job) RunTime() time.Duration {
	if j.StartedAt.IsZero() || j.FinishedAt.IsZero() {
		return 0
	}
	return max(0, j.FinishedAt.Sub(j.StartedAt))
}

func cloneInt(p *int32) *int32 {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}
