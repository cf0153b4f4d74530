package app

import (
	"context"
	"errors"
	"time"
)

// Scheduler is the port to the batch system that runs jobs: the local
// backend (child processes) or Slurm through slurmrestd. Every adapter
// passes the same contract suite.
type Scheduler interface {
	// Name identifies the backend in events and logs: "local" or "slurm".
	Name() string
	// Submit hands a job to the scheduler and returns its reference.
	Submit(ctx context.Context, req SubmitRequest) (SchedulerRef, error)
	// Status returns the current state of the referenced job. A job the
	// scheduler no longer knows returns ErrUnknownJob.
	Status(ctx context.Context, ref SchedulerRef) (SchedulerStatus, error)
	// Cancel asks the scheduler to stop the job. Cancelling a job that has
	// already ended is not an error.
	Cancel(ctx context.Context, ref SchedulerRef) error
}

// BulkStatuser is a Scheduler that reports many jobs with one request, so
// that a reconciler pass costs one request per cluster instead of one per
// job. StatusMany returns the status of each ref it found, by ref ID; a ref
// it did not find is absent (it may have ended and been purged, or its id
// been reused), and the caller asks Status for it before declaring it lost.
// An error means the scheduler could not be asked at all.
type BulkStatuser interface {
	StatusMany(ctx context.Context, refs []SchedulerRef) (map[string]SchedulerStatus, error)
}

// ErrUnknownJob is returned by Status for a job the scheduler does not know,
// including a reused id whose submit time does not match.
var ErrUnknownJob = errors.New("scheduler does not know the job")

// ErrSchedulerUnavailable wraps failures to reach the scheduler; callers
// keep the job and retry later.
var ErrSchedulerUnavailable = errors.New("scheduler unavailable")

// SubmitRequest is everything a backend needs to run one job. Script is the
// complete batch script; it is written to a file and never interpolated
// into a shell command line.
type SubmitRequest struct {
	JobID        string // the fleet's job id, also used as the scheduler job name suffix
	System       string // the TACC system (cluster) the job runs on
	Name         string
	Script       string // full script text beginning with #!
	Environment  map[string]string
	WorkDir      string // stdout/stderr files are written here
	Partition    string
	Nodes        int32
	CoresPerNode int32
	GPUsPerNode  int32
	MemoryMB     int64
	Walltime     time.Duration
	Account      string // allocation / project; may be empty
	// Resubmit says an earlier submission of this job, started no earlier
	// than NotBefore, may have reached the scheduler without its answer
	// reaching us. The backend must then return the job it already holds
	// under JobID instead of starting a second one.
	Resubmit  bool
	NotBefore time.Time
}

// SchedulerRef identifies a job at the scheduler. Slurm reuses job ids, so
// the submit time is part of the identity.
type SchedulerRef struct {
	ID          string
	SubmittedAt time.Time
}

// Phase is a scheduler state mapped onto the fleet's job lifecycle.
type Phase int

const (
	PhaseQueued    Phase = iota + 1 // pending, configuring
	PhaseRunning                    // running, completing (not terminal)
	PhaseCompleted                  // exit code 0
	PhaseFailed                     // non-zero exit, timeout, out of memory, node failure, ...
	PhaseCancelled
)

// Terminal reports whether the phase is final.
func (p Phase) Terminal() bool { return p >= PhaseCompleted }

func (p Phase) String() string {
	switch p {
	case PhaseQueued:
		return "queued"
	case PhaseRunning:
		return "running"
	case PhaseCompleted:
		return "completed"
	case PhaseFailed:
		return "failed"
	case PhaseCancelled:
		return "cancelled"
	}
	return "unknown"
}

// Error codes of failed jobs.
const (
	ErrorCodeNonZeroExit = "NON_ZERO_EXIT"
	ErrorCodeTimeout     = "TIMEOUT"
	ErrorCodeOutOfMemory = "OUT_OF_MEMORY"
	ErrorCodeNodeFail    = "NODE_FAIL"
	ErrorCodeBootFail    = "BOOT_FAIL"
	ErrorCodeDeadline    = "DEADLINE"
	ErrorCodePreempted   = "PREEMPTED"
	ErrorCodeSubmit      = "SUBMIT_FAILED"
	ErrorCodeLost        = "LOST_BY_SCHEDULER"
)

// SchedulerStatus is what a backend reports about one job.
type SchedulerStatus struct {
	Phase     Phase
	State     string // the backend's own state name, e.g. PENDING, TIMEOUT
	Reason    string // the backend's reason text, if any
	ErrorCode string // set when Phase is PhaseFailed
	ExitCode  *int32 // set once the job ended, when the backend knows it
	// Times reported by the backend; zero when not reached or unknown.
	SubmitTime, StartTime, EndTime time.Time
	NodeList                       []string
	// Resource use, when the backend measures it.
	CPUTime     *time.Duration
	MaxRSSBytes *int64
	// Code is the backend's own code for the state (Slurm's state reason,
	// such as TimeLimit or OutOfMemory, else its state); "" means State.
	Code string
}
