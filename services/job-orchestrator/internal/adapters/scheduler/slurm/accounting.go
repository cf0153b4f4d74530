package slurm

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/app"
)

// Usage is a finished job's accounting record as slurmdbd keeps it
// (GET /slurmdb/{version}/job/{id}, the data of `sacct`), with the
// efficiencies that `seff` computes from it.
type Usage struct {
	State    string   // the job's final state, e.g. COMPLETED, TIMEOUT
	Reason   string   // the state reason, empty for "None"
	Exit     ExitInfo // the job's exit code
	Elapsed  time.Duration
	CPUTime  time.Duration // user + system time of every step (sacct TotalCPU)
	MaxRSS   int64         // largest resident set of any step, bytes (sacct MaxRSS); -1 unknown
	CPUs     int64         // allocated CPUs (sacct AllocCPUS)
	MemoryMB int64         // allocated memory of the job, MB (sacct ReqMem for the whole job)
}

// CPUEfficiency is seff's "CPU Efficiency": CPU time over elapsed time
// times allocated CPUs, in percent; 0 when the job used no wall time.
func (u Usage) CPUEfficiency() float64 {
	wall := u.Elapsed.Seconds() * float64(u.CPUs)
	if wall <= 0 {
		return 0
	}
	return u.CPUTime.Seconds() / wall * 100
}

// MemoryEfficiency is seff's "Memory Efficiency": max RSS over allocated
// memory, in percent; 0 when either is unknown.
func (u Usage) MemoryEfficiency() float64 {
	if u.MaxRSS <= 0 || u.MemoryMB <= 0 {
		return 0
	}
	return float64(u.MaxRSS) / float64(u.MemoryMB*1024*1024) * 100
}

// dbJob is the part of a slurmdbd job record the backend reads.
type dbJob struct {
	JobID int64 `json:"job_id"`
	State struct {
		Current json.RawMessage `json:"current"`
		Reason  string          `json:"reason"`
	} `json:"state"`
	ExitCode json.RawMessage `json:"exit_code"`
	Time     struct {
		Elapsed    int64           `json:"elapsed"`
		Submission json.RawMessage `json:"submission"`
	} `json:"time"`
	TRES struct {
		Allocated []tres `json:"allocated"`
	} `json:"tres"`
	Steps []struct {
		Time struct {
			Total struct {
				Seconds      int64 `json:"seconds"`
				Microseconds int64 `json:"microseconds"`
			} `json:"total"`
		} `json:"time"`
		TRES struct {
			Requested struct {
				Max []tres `json:"max"`
			} `json:"requested"`
		} `json:"tres"`
	} `json:"steps"`
}

type tres struct {
	Type  string `json:"type"`
	Count int64  `json:"count"`
}

func tresCount(list []tres, typ string) (int64, bool) {
	for _, t := range list {
		if t.Type == typ {
			return t.Count, true
		}
	}
	return 0, false
}

// Accounting reads the accounting record of the job of ref from slurmdbd.
// A job slurmdbd does not know (yet) is app.ErrUnknownJob.
func (s *Scheduler) Accounting(ctx context.Context, ref app.SchedulerRef) (Usage, error) {
	if !numericID.MatchString(ref.ID) {
		return Usage{}, fmt.Errorf("id %q is not a slurm job id: %w", ref.ID, app.ErrUnknownJob)
	}
	full, err := s.client.path(ctx, apiSlurmDB, "/job/"+ref.ID)
	if err != nil {
		return Usage{}, fmt.Errorf("accounting of slurm job %s: %w", ref.ID, err)
	}
	var resp struct {
		Errors []ErrorEntry `json:"errors"`
		Jobs   []dbJob      `json:"jobs"`
	}
	status, err := s.client.send(ctx, http.MethodGet, full, nil, &resp)
	if err != nil {
		return Usage{}, fmt.Errorf("accounting of slurm job %s: %w", ref.ID, err)
	}
	if status >= 300 {
		return Usage{}, fmt.Errorf("accounting of slurm job %s: %w", ref.ID,
			classify(&APIError{Method: http.MethodGet, Path: full, StatusCode: status, Errors: resp.Errors}))
	}
	want, _ := strconv.ParseInt(ref.ID, 10, 64)
	for _, j := range resp.Jobs {
		if j.JobID != want {
			continue
		}
		if !ref.SubmittedAt.IsZero() {
			if sub, err := parseUnixTime(j.Time.Submission); err == nil && !sub.IsZero() && sub.Unix() != ref.SubmittedAt.Unix() {
				continue // an older job under a reused id
			}
		}
		return usageOf(j)
	}
	return Usage{}, fmt.Errorf("accounting of slurm job %s: not in slurmdbd: %w", ref.ID, app.ErrUnknownJob)
}

func usageOf(j dbJob) (Usage, error) {
	state, err := jobState(j.State.Current)
	if err != nil {
		return Usage{}, err
	}
	exit, err := ParseExitCode(j.ExitCode)
	if err != nil {
		return Usage{}, err
	}
	u := Usage{State: state, Exit: exit, Elapsed: time.Duration(j.Time.Elapsed) * time.Second, MaxRSS: -1}
	if j.State.Reason != "None" {
		u.Reason = j.State.Reason
	}
	u.CPUs, _ = tresCount(j.TRES.Allocated, "cpu")
	u.MemoryMB, _ = tresCount(j.TRES.Allocated, "mem")
	for _, st := range j.Steps {
		u.CPUTime += time.Duration(st.Time.Total.Seconds)*time.Second + time.Duration(st.Time.Total.Microseconds)*time.Microsecond
		if rss, ok := tresCount(st.TRES.Requested.Max, "mem"); ok && rss > u.MaxRSS {
			u.MaxRSS = rss
		}
	}
	return u, nil
}

// withUsage adds the accounting record's CPU time and max RSS to the
// status of a job that ended. Without a record (slurmdbd down, or not
// told yet) the status goes out without them.
func (s *Scheduler) withUsage(ctx context.Context, ref app.SchedulerRef, st app.SchedulerStatus) app.SchedulerStatus {
	if !st.Phase.Terminal() {
		return st
	}
	u, err := s.Accounting(ctx, ref)
	if err != nil {
		s.log.DebugContext(ctx, "no accounting record for ended slurm job", "slurm_job_id", ref.ID, "error", err)
		return st
	}
	cpu := u.CPUTime
	st.CPUTime = &cpu
	if u.MaxRSS >= 0 {
		rss := u.MaxRSS
		st.MaxRSSBytes = &rss
	}
	return st
}
