package domain

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// JobFlowComponentID is the component the job flow is reported as.
const JobFlowComponentID = "jobs"

// Job phases as they appear on job-lifecycle (the to_status of each event).
const (
	JobSubmitted = "SUBMITTED"
	JobQueued    = "QUEUED"
	JobRunning   = "RUNNING"
	JobCompleted = "COMPLETED"
	JobFailed    = "FAILED"
	JobCancelled = "CANCELLED"
)

// JobTransition is one job-lifecycle event as the job flow needs it.
type JobTransition struct {
	JobID string
	// System is the TACC system; only job.submitted carries it.
	System string
	// To is the status the job entered, one of the Job* constants.
	To string
	// At is when the transition happened (the event's occurred_at).
	At time.Time
	// ErrorCode is set on FAILED.
	ErrorCode string
}

// JobFlowConfig tunes what the job flow calls degraded.
type JobFlowConfig struct {
	// Window is how far back the counts of submitted, started and finished
	// jobs reach.
	Window time.Duration
	// FailureRatio: the flow is degraded when at least this share of the
	// jobs that finished in the window (completed or failed; cancellations
	// do not count) failed...
	FailureRatio float64
	// MinFinished: ...and at least this many finished, so that one failure
	// among two jobs raises nothing.
	MinFinished int
	// MaxJobs bounds the jobs held in memory; beyond it new jobs are
	// counted as untracked instead.
	MaxJobs int
}

// DefaultJobFlowConfig is one hour, half failed among at least 10, 200,000 jobs.
func DefaultJobFlowConfig() JobFlowConfig {
	return JobFlowConfig{Window: time.Hour, FailureRatio: 0.5, MinFinished: 10, MaxJobs: 200_000}
}

// Validate reports settings that cannot work.
func (c JobFlowConfig) Validate() error {
	var errs []error
	if c.Window <= 0 {
		errs = append(errs, fmt.Errorf("window %s: must be positive", c.Window))
	}
	if c.FailureRatio <= 0 || c.FailureRatio > 1 {
		errs = append(errs, fmt.Errorf("failure ratio %g: must be in (0, 1]", c.FailureRatio))
	}
	if c.MinFinished < 1 {
		errs = append(errs, fmt.Errorf("minimum finished %d: must be at least 1", c.MinFinished))
	}
	if c.MaxJobs < 1 {
		errs = append(errs, fmt.Errorf("max jobs %d: must be at least 1", c.MaxJobs))
	}
	return errors.Join(errs...)
}

// jobRecord is what the flow knows about one job.
type jobRecord struct {
	system    string
	status    string
	submitted time.Time
	waiting   time.Time // when it entered SUBMITTED or QUEUED
	started   time.Time
	ended     time.Time
	errorCode string
}

// JobFlow follows jobs through the lifecycle and judges whether the
// schedulers are doing their work: how many jobs wait and run, how many
// finished recently and how many of those failed, and whether anything
// starts at all. It holds the jobs that have not finished plus those that
// finished within the window. A transition seen twice counts once, and an
// older transition arriving after a newer one of the same job is ignored,
// so at-least-once delivery does not skew it. It is not safe for
// concurrent use.
type JobFlow struct {
	cfg       JobFlowConfig
	jobs      map[string]*jobRecord
	untracked int64
}

// NewJobFlow returns an empty job flow.
func NewJobFlow(cfg JobFlowConfig) (*JobFlow, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("job flow: %w", err)
	}
	return &JobFlow{cfg: cfg, jobs: make(map[string]*jobRecord)}, nil
}

// phase orders the statuses; a transition to a lower phase than the job's
// current one is stale.
func phase(status string) int {
	switch status {
	case JobSubmitted:
		return 1
	case JobQueued:
		return 2
	case JobRunning:
		return 3
	case JobCompleted, JobFailed, JobCancelled:
		return 4
	default:
		return 0
	}
}

// Observe applies one transition. Unknown statuses are ignored.
func (f *JobFlow) Observe(t JobTransition) {
	p := phase(t.To)
	if p == 0 || t.JobID == "" {
		return
	}
	r, ok := f.jobs[t.JobID]
	if !ok {
		if len(f.jobs) >= f.cfg.MaxJobs {
			f.untracked++
			return
		}
		r = &jobRecord{}
		f.jobs[t.JobID] = r
	}
	if t.System != "" {
		r.system = t.System
	}
	if phase(r.status) >= p {
		return // a duplicate or a stale transition
	}
	r.status = t.To
	switch t.To {
	case JobSubmitted:
		r.submitted, r.waiting = t.At, t.At
	case JobQueued:
		if r.waiting.IsZero() {
			r.waiting = t.At
		}
	case JobRunning:
		r.started = t.At
	default:
		r.ended, r.errorCode = t.At, t.ErrorCode
	}
}

// Component reports the flow at now, dropping the jobs that finished before
// the window. Its metrics: active_jobs, pending_jobs, oldest_pending_seconds,
// and over the window submitted_jobs, started_jobs, completed_jobs,
// failed_jobs, cancelled_jobs and failure_ratio; failed_jobs.<system> per
// system, and untracked_jobs when MaxJobs was reached.
func (f *JobFlow) Component(now time.Time) Component {
	since := now.Add(-f.cfg.Window)
	var active, pending, submitted, started, completed, failed, cancelled int
	var oldestWait time.Time
	codes := map[string]int{}
	failedBySystem := map[string]int{}
	for id, r := range f.jobs {
		if !r.ended.IsZero() && r.ended.Before(since) {
			delete(f.jobs, id)
			continue
		}
		if r.submitted.After(since) {
			submitted++
		}
		if r.started.After(since) {
			started++
		}
		switch r.status {
		case JobSubmitted, JobQueued:
			pending++
			if !r.waiting.IsZero() && (oldestWait.IsZero() || r.waiting.Before(oldestWait)) {
				oldestWait = r.waiting
			}
		case JobRunning:
			active++
		case JobCompleted:
			completed++
		case JobFailed:
			failed++
			codes[cmp.Or(r.errorCode, "UNKNOWN")]++
			if r.system != "" {
				failedBySystem[r.system]++
			}
		case JobCancelled:
			cancelled++
		}
	}
	m := map[string]float64{
		"active_jobs": float64(active), "pending_jobs": float64(pending),
		"submitted_jobs": float64(submitted), "started_jobs": float64(started),
		"completed_jobs": float64(completed), "failed_jobs": float64(failed), "cancelled_jobs": float64(cancelled),
		"window_seconds": f.cfg.Window.Seconds(),
	}
	var oldest time.Duration
	if !oldestWait.IsZero() {
		oldest = max(now.Sub(oldestWait), 0)
		m["oldest_pending_seconds"] = oldest.Seconds()
	}
	finished := completed + failed
	ratio := 0.0
	if finished > 0 {
		ratio = float64(failed) / float64(finished)
		m["failure_ratio"] = ratio
	}
	for sys, n := range failedBySystem {
		m["failed_jobs."+sys] = float64(n)
	}
	if f.untracked > 0 {
		m["untracked_jobs"] = float64(f.untracked)
	}

	c := Component{ID: JobFlowComponentID, Type: TypeScheduler, Status: StatusHealthy, Checked: now, Metrics: m}
	window := f.cfg.Window.String()
	var problems []string
	if finished >= f.cfg.MinFinished && ratio >= f.cfg.FailureRatio {
		problems = append(problems, fmt.Sprintf("%d of %d jobs finished in the last %s failed (%s)",
			failed, finished, window, topCodes(codes, 3)))
	}
	if pending > 0 && started == 0 && oldest > f.cfg.Window {
		problems = append(problems, fmt.Sprintf("no job started in the last %s; %d waiting, the oldest for %s",
			window, pending, oldest.Round(time.Second)))
	}
	if len(problems) > 0 {
		c.Status = StatusDegraded
		c.Detail = strings.Join(problems, "; ")
	} else {
		c.Detail = fmt.Sprintf("%d running, %d waiting; in the last %s %d finished, %d failed",
			active, pending, window, finished, failed)
	}
	return c
}

// topCodes renders the n most frequent error codes, "TIMEOUT 3, NON_ZERO_EXIT 2".
func topCodes(codes map[string]int, n int) string {
	keys := slices.SortedFunc(maps.Keys(codes), func(a, b string) int {
		if c := cmp.Compare(codes[b], codes[a]); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	parts := make([]string, 0, n)
	for _, k := range keys[:min(n, len(keys))] {
		parts = append(parts, fmt.Sprintf("%s %d", k, codes[k]))
	}
	return strings.Join(parts, ", ")
}
