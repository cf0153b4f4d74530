package domain

import "fmt"

// Actors of the transitions the fleet records itself (see Transition.Actor).
const (
	// ActorScheduler: the scheduler reported the change (started, ended,
	// refused the job, cancelled it on its side).
	ActorScheduler = "scheduler"
	// ActorOrchestrator: the orchestrator made the change (handed the job
	// to the scheduler, declared it lost).
	ActorOrchestrator = "orchestrator"
)

// failureReasons say, for each error code of a FAILED job, what happened
// and what to do about it, in words a researcher understands without
// knowing the scheduler. The keys are the error codes of package app.
var failureReasons = map[string]string{
	"NON_ZERO_EXIT":     "The job's script or command ended with an error (a non-zero exit code); read its standard error output for the cause.",
	"TIMEOUT":           "The job ran longer than its walltime and was stopped; resubmit with a longer walltime, or make it save its progress and resume.",
	"OUT_OF_MEMORY":     "The job ran out of memory on a node: it used more than the memory it asked for; resubmit with more memory_mb.",
	"NODE_FAIL":         "A compute node running the job failed, not the job itself; resubmit it unchanged.",
	"BOOT_FAIL":         "The compute nodes for the job could not be started; resubmit it unchanged, and tell the system's support if it happens again.",
	"DEADLINE":          "The job could not finish before its deadline; resubmit it with a later deadline or a shorter walltime.",
	"PREEMPTED":         "A job of higher priority took the job's nodes; resubmit it, or use a partition whose jobs are not preempted.",
	"SUBMIT_FAILED":     "The scheduler refused the job when it was handed over; check the partition, allocation and resources it asks for.",
	"LOST_BY_SCHEDULER": "The scheduler no longer knows the job (it may have been purged or the scheduler restarted); resubmit it.",
}

// FailureReason returns the sentence that explains error code to a
// researcher; an unknown code gets a generic sentence naming it.
func FailureReason(code string) string {
	if s, ok := failureReasons[code]; ok {
		return s
	}
	return fmt.Sprintf("The job failed (%s).", code)
}

// FailureMessage is the reason recorded for a job that failed with code:
// FailureReason's sentence, then the scheduler's own words (detail) when
// it gave any.
func FailureMessage(code, detail string) string {
	s := FailureReason(code)
	if detail != "" {
		s += " Scheduler: " + detail
	}
	return s
}

// SetTransitionSource records who caused transition seq and the
// scheduler's own code for it.
func (j *Job) SetTransitionSource(seq int64, actor, schedulerCode string) {
	for i := range j.History {
		if j.History[i].Sequence == seq {
			j.History[i].Actor, j.History[i].SchedulerCode = actor, schedulerCode
		}
	}
}

// TransitionActor returns who caused t, also for a transition stored
// before actors were recorded: the owner created the job, whoever
// cancelled it cancelled it, and the scheduler made every other change.
func (j *Job) TransitionActor(t Transition) string {
	switch {
	case t.Actor != "":
		return t.Actor
	case t.Sequence == 1:
		return j.Owner
	case t.To == StatusCancelled && j.CancelledBy != "":
		return j.CancelledBy
	case t.To == StatusQueued:
		return ActorOrchestrator
	}
	return ActorScheduler
}
