package domain_test

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/domain"
)

// TestTransitionTable covers every (from, to) pair of statuses, including
// self transitions.
func TestTransitionTable(t *testing.T) {
	t.Parallel()
	S, Q, R := domain.StatusSubmitted, domain.StatusQueued, domain.StatusRunning
	C, F, X := domain.StatusCompleted, domain.StatusFailed, domain.StatusCancelled
	legal := map[[2]domain.Status]bool{
		{S, Q}: true, {S, F}: true, {S, X}: true,
		{Q, R}: true, {Q, F}: true, {Q, X}: true,
		{R, C}: true, {R, F}: true, {R, X}: true,
	}
	all := domain.Statuses()
	require.Len(t, all, 6)
	n := 0
	for _, from := range all {
		for _, to := range all {
			n++
			want := legal[[2]domain.Status{from, to}]
			t.Run(string(from)+"->"+string(to), func(t *testing.T) {
				t.Parallel()
				require.Equal(t, want, domain.CanTransition(from, to))
				err := domain.CheckTransition(from, to)
				if want {
					require.NoError(t, err)
					return
				}
				require.ErrorIs(t, err, domain.ErrIllegalTransition)
				var te *domain.TransitionError
				require.True(t, errors.As(err, &te))
				require.Equal(t, from, te.From)
				require.Equal(t, to, te.To)
			})
		}
	}
	require.Equal(t, 36, n)
}

func TestStatusPredicates(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		status   domain.Status
		terminal bool
		active   bool
	}{
		{name: "submitted", status: domain.StatusSubmitted, active: true},
		{name: "queued", status: domain.StatusQueued, active: true},
		{name: "running", status: domain.StatusRunning, active: true},
		{name: "completed", status: domain.StatusCompleted, terminal: true},
		{name: "failed", status: domain.StatusFailed, terminal: true},
		{name: "cancelled", status: domain.StatusCancelled, terminal: true},
		{name: "unknown", status: "PAUSED"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.terminal, tt.status.Terminal())
			require.Equal(t, tt.active, tt.status.Active())
		})
	}
}

func TestJobLifecycle(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	spec := validSpec()
	rates := domain.DefaultRates()
	j := domain.NewJob("job-1", "alice", spec, "key-1", "corr", rates.Estimate(spec.Resources, spec.Resources.Walltime), t0)
	require.Equal(t, domain.StatusSubmitted, j.Status)
	require.Equal(t, int64(1), j.Sequence)

	_, err := j.MarkRunning(t0)
	require.ErrorIs(t, err, domain.ErrIllegalTransition, "SUBMITTED -> RUNNING skips QUEUED")
	require.Equal(t, domain.StatusSubmitted, j.Status, "a rejected transition changes nothing")
	require.Len(t, j.History, 1)

	_, err = j.MarkQueued(domain.SchedulerRef{Scheduler: "local", ID: "42", SubmittedAt: t0}, t0.Add(time.Second))
	require.NoError(t, err)
	_, err = j.MarkRunning(t0.Add(time.Minute))
	require.NoError(t, err)
	exit := int32(0)
	tr, err := j.Complete(&exit, t0.Add(31*time.Minute), rates)
	require.NoError(t, err)
	require.Equal(t, int64(4), tr.Sequence)
	require.Equal(t, domain.StatusRunning, tr.From)
	require.Equal(t, domain.StatusCompleted, j.Status)
	require.Equal(t, time.Minute, j.QueueWait())
	require.Equal(t, 30*time.Minute, j.RunTime())
	// 2 nodes * 0.5 h, 2 GPUs per node.
	require.InDelta(t, 1.0, j.Cost.NodeHours, 1e-9)
	require.InDelta(t, 2.0, j.Cost.GPUHours, 1e-9)
	for i, h := range j.History {
		require.Equal(t, int64(i+1), h.Sequence, "sequence has no gaps")
	}
	_, err = j.Cancel("alice", "too late", t0.Add(time.Hour), rates)
	require.ErrorIs(t, err, domain.ErrIllegalTransition)
}

func TestCostEstimate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		res       domain.Resources
		d         time.Duration
		nodeHours float64
		gpuHours  float64
		usd       float64
	}{
		{name: "cpu only", res: domain.Resources{Nodes: 4}, d: 2 * time.Hour, nodeHours: 8, usd: 0.8},
		{name: "gpus", res: domain.Resources{Nodes: 2, GPUsPerNode: 3}, d: 10 * time.Hour, nodeHours: 20, gpuHours: 60, usd: 2 + 21},
		{name: "zero", res: domain.Resources{Nodes: 1}, d: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := domain.DefaultRates().Estimate(tt.res, tt.d)
			require.InDelta(t, tt.nodeHours, c.NodeHours, 1e-9)
			require.InDelta(t, tt.gpuHours, c.GPUHours, 1e-9)
			require.InDelta(t, tt.usd, c.USD, 1e-9)
		})
	}
	require.Error(t, domain.Rates{USDPerGPUHour: -1}.Validate())
}
