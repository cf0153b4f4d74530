package local

import (
	"os"
	"time"

	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/app"
)

// File names inside a job directory (owned by the job's user while it runs).
const (
	scriptFile = "job.sh"
	stdoutFile = "stdout.log"
	stderrFile = "stderr.log"
	tmpDir     = "tmp"
)

// The scheduler's own files of a job, in <WorkRoot>/.state/<job id>, a
// directory no job can read or write: a job must not rewrite the record the
// scheduler trusts after a restart, nor plant a link where it writes.
const (
	stateRoot   = ".state"
	requestFile = "request.json"
	stateFile   = "state.json"
)

// The backend's own state names, reported in SchedulerStatus.State.
const (
	StateQueued    = "QUEUED"
	StateRunning   = "RUNNING"
	StateCompleted = "COMPLETED"
	StateFailed    = "FAILED"
	StateTimeout   = "TIMEOUT"
	StateCancelled = "CANCELLED"
	StateLost      = "LOST"
)

// record is the persistent state of one job (state.json).
type record struct {
	JobID       string    `json:"job_id"`
	Name        string    `json:"name,omitempty"`
	State       string    `json:"state"`
	SubmittedAt time.Time `json:"submitted_at"`
	StartedAt   time.Time `json:"started_at,omitzero"`
	EndedAt     time.Time `json:"ended_at,omitzero"`
	PID         int       `json:"pid,omitempty"`
	ExitCode    *int32    `json:"exit_code,omitempty"`
	ErrorCode   string    `json:"error_code,omitempty"`
	Reason      string    `json:"reason,omitempty"`
	CPUTimeNS   *int64    `json:"cpu_time_ns,omitempty"`
	MaxRSSBytes *int64    `json:"max_rss_bytes,omitempty"`
	// UID and GID the job ran under; 0 in single-user mode.
	UID int `json:"uid,omitempty"`
	GID int `json:"gid,omitempty"`
	// Cgroup is the name of the job's cgroup below CgroupParent; empty
	// when the job ran without one.
	Cgroup string `json:"cgroup,omitempty"`
}

func (r *record) terminal() bool {
	switch r.State {
	case StateQueued, StateRunning:
		return false
	}
	return true
}

func (r *record) status() app.SchedulerStatus {
	st := app.SchedulerStatus{
		State:      r.State,
		Reason:     r.Reason,
		ErrorCode:  r.ErrorCode,
		ExitCode:   r.ExitCode,
		SubmitTime: r.SubmittedAt,
		StartTime:  r.StartedAt,
		EndTime:    r.EndedAt,
	}
	switch r.State {
	case StateQueued:
		st.Phase = app.PhaseQueued
	case StateRunning:
		st.Phase = app.PhaseRunning
	case StateCompleted:
		st.Phase = app.PhaseCompleted
	case StateCancelled:
		st.Phase = app.PhaseCancelled
	default: // FAILED, TIMEOUT, LOST
		st.Phase = app.PhaseFailed
	}
	if !r.StartedAt.IsZero() {
		if host, err := os.Hostname(); err == nil {
			st.NodeList = []string{host}
		}
	}
	if r.CPUTimeNS != nil {
		d := time.Duration(*r.CPUTimeNS)
		st.CPUTime = &d
	}
	if r.MaxRSSBytes != nil {
		v := *r.MaxRSSBytes
		st.MaxRSSBytes = &v
	}
	return st
}

// StreamFile names a job's stdout or stderr file within its directory
// (<WorkRoot>/<job id>), for reading the job's output (adapters/outputdir).
func StreamFile(_ string, stream app.OutputStream) string {
	switch stream {
	case app.StreamStdout:
		return stdoutFile
	case app.StreamStderr:
		return stderrFile
	}
	return ""
}
