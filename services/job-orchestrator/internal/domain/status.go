package domain

// Status is a job's place in its lifecycle.
type Status string

// The job statuses. COMPLETED, FAILED and CANCELLED are terminal.
const (
	StatusSubmitted Status = "SUBMITTED"
	StatusQueued    Status = "QUEUED"
	StatusRunning   Status = "RUNNING"
	StatusCompleted Status = "COMPLETED"
	StatusFailed    Status = "FAILED"
	StatusCancelled Status = "CANCELLED"
)

// Statuses returns every status in lifecycle order.
func Statuses() []Status {
	return []Status{StatusSubmitted, StatusQueued, StatusRunning, StatusCompleted, StatusFailed, StatusCancelled}
}

// Valid reports whether s is one of the statuses.
func (s Status) Valid() bool {
	switch s {
	case StatusSubmitted, StatusQueued, StatusRunning, StatusCompleted, StatusFailed, StatusCancelled:
		return true
	}
	return false
}

// Terminal reports whether no transition leaves s.
func (s Status) Terminal() bool {
	return s == StatusCompleted || s == StatusFailed || s == StatusCancelled
}

// Active reports whether the job still needs the scheduler's attention.
func (s Status) Active() bool { return s.Valid() && !s.Terminal() }

// legal is the state machine. Beyond the main path
// SUBMITTED -> QUEUED -> RUNNING -> COMPLETED | FAILED and CANCELLED from
// every non-terminal status, exactly two shortcuts are legal:
//
//   - SUBMITTED -> FAILED: the scheduler refused the submission.
//   - QUEUED -> FAILED: the job ended without ever starting (for example
//     BOOT_FAIL, or a job the scheduler lost while pending).
//
// QUEUED -> COMPLETED is NOT legal: a job that finished between two polls
// has run, so it is recorded as QUEUED -> RUNNING -> COMPLETED (two
// transitions in one commit, RUNNING dated by the scheduler's start time),
// and consumers always see RUNNING before COMPLETED. The same holds for a
// job that failed after it started. Self transitions and every transition
// out of a terminal status are illegal; an idempotent cancel of a cancelled
// job is handled by the use case, not by the state machine.
var legal = map[Status]map[Status]bool{
	StatusSubmitted: {StatusQueued: true, StatusFailed: true, StatusCancelled: true},
	StatusQueued:    {StatusRunning: true, StatusFailed: true, StatusCancelled: true},
	StatusRunning:   {StatusCompleted: true, StatusFailed: true, StatusCancelled: true},
}

// CanTransition reports whether from -> to is legal.
func CanTransition(from, to Status) bool { return legal[from][to] }

// CheckTransition returns a *TransitionError when from -> to is illegal.
func CheckTransition(from, to Status) error {
	if !CanTransition(from, to) {
		return &TransitionError{From: from, To: to}
	}
	return nil
}
