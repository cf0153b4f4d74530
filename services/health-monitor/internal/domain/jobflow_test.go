package domain_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/services/health-monitor/internal/domain"
)

var flowStart = time.Date(2026, 11, 29, 9, 0, 0, 0, time.UTC)

func newFlow(t *testing.T, mutate func(*domain.JobFlowConfig)) *domain.JobFlow {
	t.Helper()
	cfg := domain.JobFlowConfig{Window: time.Hour, FailureRatio: 0.5, MinFinished: 4, MaxJobs: 100}
	if mutate != nil {
		mutate(&cfg)
	}
	f, err := domain.NewJobFlow(cfg)
	require.NoError(t, err)
	return f
}

// runJob sends job through submitted, queued, running and to final (empty: stays running).
func runJob(f *domain.JobFlow, job, system string, at time.Time, final, code string) {
	f.Observe(domain.JobTransition{JobID: job, System: system, To: domain.JobSubmitted, At: at})
	f.Observe(domain.JobTransition{JobID: job, To: domain.JobQueued, At: at.Add(time.Second)})
	f.Observe(domain.JobTransition{JobID: job, To: domain.JobRunning, At: at.Add(2 * time.Second)})
	if final != "" {
		f.Observe(domain.JobTransition{JobID: job, To: final, At: at.Add(time.Minute), ErrorCode: code})
	}
}

func TestJobFlowCountsEachJobOnce(t *testing.T) {
	f := newFlow(t, nil)
	runJob(f, "a", "frontera", flowStart, domain.JobCompleted, "")
	runJob(f, "b", "vista", flowStart, domain.JobFailed, "TIMEOUT")
	runJob(f, "c", "vista", flowStart, "", "")
	f.Observe(domain.JobTransition{JobID: "d", System: "frontera", To: domain.JobSubmitted, At: flowStart})
	f.Observe(domain.JobTransition{JobID: "e", System: "frontera", To: domain.JobSubmitted, At: flowStart.Add(time.Minute)})
	f.Observe(domain.JobTransition{JobID: "e", To: domain.JobCancelled, At: flowStart.Add(2 * time.Minute)})
	// Redelivered and stale transitions change nothing.
	runJob(f, "b", "vista", flowStart, domain.JobFailed, "TIMEOUT")
	f.Observe(domain.JobTransition{JobID: "a", To: domain.JobRunning, At: flowStart.Add(time.Hour)})
	f.Observe(domain.JobTransition{JobID: "x", To: "PAUSED", At: flowStart})

	c := f.Component(flowStart.Add(10 * time.Minute))
	require.Equal(t, domain.JobFlowComponentID, c.ID)
	require.Equal(t, domain.TypeScheduler, c.Type)
	require.Equal(t, domain.StatusHealthy, c.Status, c.Detail)
	require.Equal(t, map[string]float64{
		"active_jobs": 1, "pending_jobs": 1, "submitted_jobs": 5, "started_jobs": 3,
		"completed_jobs": 1, "failed_jobs": 1, "cancelled_jobs": 1, "failure_ratio": 0.5,
		"failed_jobs.vista": 1, "oldest_pending_seconds": 600, "window_seconds": 3600,
	}, c.Metrics)
	require.Equal(t, "1 running, 1 waiting; in the last 1h0m0s 2 finished, 1 failed", c.Detail)
}

func TestJobFlowDegradesWhenMostJobsFail(t *testing.T) {
	f := newFlow(t, nil)
	runJob(f, "ok", "frontera", flowStart, domain.JobCompleted, "")
	for i := range 2 {
		runJob(f, fmt.Sprintf("t%d", i), "frontera", flowStart, domain.JobFailed, "TIMEOUT")
	}
	now := flowStart.Add(5 * time.Minute)
	require.Equal(t, domain.StatusHealthy, f.Component(now).Status, "3 finished is below the minimum of 4")

	runJob(f, "oom", "lonestar6", flowStart, domain.JobFailed, "OUT_OF_MEMORY")
	c := f.Component(now)
	require.Equal(t, domain.StatusDegraded, c.Status)
	require.Equal(t, "3 of 4 jobs finished in the last 1h0m0s failed (TIMEOUT 2, OUT_OF_MEMORY 1)", c.Detail)
	require.InDelta(t, 0.75, c.Metrics["failure_ratio"], 1e-9)

	// Once the failures leave the window the flow is healthy again, and the
	// finished jobs are forgotten.
	later := flowStart.Add(time.Minute + time.Hour + time.Second)
	c = f.Component(later)
	require.Equal(t, domain.StatusHealthy, c.Status, c.Detail)
	require.Zero(t, c.Metrics["failed_jobs"])
	require.Zero(t, c.Metrics["submitted_jobs"])
}

func TestJobFlowDegradesWhenNothingStarts(t *testing.T) {
	f := newFlow(t, nil)
	f.Observe(domain.JobTransition{JobID: "w", System: "vista", To: domain.JobSubmitted, At: flowStart})
	f.Observe(domain.JobTransition{JobID: "w", To: domain.JobQueued, At: flowStart.Add(time.Second)})
	require.Equal(t, domain.StatusHealthy, f.Component(flowStart.Add(59*time.Minute)).Status, "waiting less than the window")

	c := f.Component(flowStart.Add(2 * time.Hour))
	require.Equal(t, domain.StatusDegraded, c.Status)
	require.Equal(t, "no job started in the last 1h0m0s; 1 waiting, the oldest for 2h0m0s", c.Detail)

	runJob(f, "s", "vista", flowStart.Add(110*time.Minute), "", "")
	require.Equal(t, domain.StatusHealthy, f.Component(flowStart.Add(2*time.Hour)).Status, "a job started within the window")
}

func TestJobFlowBoundsItsMemory(t *testing.T) {
	f := newFlow(t, func(c *domain.JobFlowConfig) { c.MaxJobs = 3 })
	for i := range 5 {
		f.Observe(domain.JobTransition{JobID: fmt.Sprintf("j%d", i), To: domain.JobSubmitted, At: flowStart})
	}
	c := f.Component(flowStart)
	require.EqualValues(t, 3, c.Metrics["pending_jobs"])
	require.EqualValues(t, 2, c.Metrics["untracked_jobs"])
}

func TestJobFlowConfigIsValidated(t *testing.T) {
	_, err := domain.NewJobFlow(domain.JobFlowConfig{FailureRatio: 1.5})
	require.ErrorContains(t, err, "window 0s: must be positive")
	require.ErrorContains(t, err, "failure ratio 1.5: must be in (0, 1]")
	require.ErrorContains(t, err, "minimum finished 0")
	require.ErrorContains(t, err, "max jobs 0")
	require.NoError(t, domain.DefaultJobFlowConfig().Validate())
}
