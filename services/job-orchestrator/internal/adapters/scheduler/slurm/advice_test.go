package slurm_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/adapters/scheduler/slurm"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/app"
)

func TestReasonsCarryWhatToDo(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, state, reason string
		exit                any
		phase               app.Phase
		want                []string
	}{
		{name: "timeout", state: "TIMEOUT", reason: "TimeLimit", exit: exitObject(0, 15), phase: app.PhaseFailed,
			want: []string{"TimeLimit", "ask for a longer walltime"}},
		{name: "out of memory", state: "OUT_OF_MEMORY", reason: "OutOfMemory", exit: exitObject(0, 9), phase: app.PhaseFailed,
			want: []string{"OutOfMemory", "ask for more memory"}},
		{name: "node failure", state: "NODE_FAIL", reason: "NodeDown", exit: exitObject(0, 9), phase: app.PhaseFailed,
			want: []string{"NodeDown", "not the job itself: submit it again"}},
		{name: "preempted", state: "PREEMPTED", reason: "None", exit: exitObject(0, 15), phase: app.PhaseFailed,
			want: []string{"higher priority took the nodes"}},
		{name: "script error", state: "FAILED", reason: "NonZeroExitCode", exit: exitObject(3, 0), phase: app.PhaseFailed,
			want: []string{"NonZeroExitCode", ".err and .out files"}},
		{name: "QOS job limit", state: "PENDING", reason: "QOSMaxJobsPerUserLimit", phase: app.PhaseQueued,
			want: []string{"QOSMaxJobsPerUserLimit", "as many jobs as your QOS allows"}},
		{name: "nodes not available", state: "PENDING", reason: "ReqNodeNotAvail", phase: app.PhaseQueued,
			want: []string{"ReqNodeNotAvail", "down, drained or reserved"}},
		{name: "allocation exhausted", state: "PENDING", reason: "AssocGrpBillingMinutes", phase: app.PhaseQueued,
			want: []string{"no service units left"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var doc map[string]any
			require.NoError(t, json.Unmarshal(fixture(t, "job_completed.json"), &doc))
			job := doc["jobs"].([]any)[0].(map[string]any)
			job["job_state"] = []string{tc.state}
			job["state_reason"] = tc.reason
			if tc.exit != nil {
				job["exit_code"] = tc.exit
			}
			body, err := json.Marshal(doc)
			require.NoError(t, err)
			f, srv := startFake(t)
			f.set(http.MethodGet, "/slurm/v0.0.42/job/34", http.StatusOK, body)
			s := newBackend(t, srv.URL, nil)
			st, err := s.Status(context.Background(), app.SchedulerRef{ID: "34"})
			require.NoError(t, err)
			require.Equal(t, tc.phase, st.Phase)
			for _, w := range tc.want {
				require.Contains(t, st.Reason, w)
			}
			require.NotEmpty(t, slurm.Advice(tc.state, tc.reason))
		})
	}

	t.Run("recorded TIMEOUT of 24.11", func(t *testing.T) {
		t.Parallel()
		f, srv := startFake(t)
		f.setFixture(t, http.MethodGet, "/slurm/v0.0.42/job/40", "job_timeout.json")
		s := newBackend(t, srv.URL, nil)
		st, err := s.Status(context.Background(), app.SchedulerRef{ID: "40"})
		require.NoError(t, err)
		require.Equal(t, "TimeLimit (signal 15): The job reached its time limit: ask for a longer walltime, "+
			"or save progress (checkpoint) and resume in a new job.", st.Reason)
	})
	t.Run("completed jobs get no advice", func(t *testing.T) {
		t.Parallel()
		f, srv := startFake(t)
		f.setFixture(t, http.MethodGet, "/slurm/v0.0.42/job/34", "job_completed.json")
		s := newBackend(t, srv.URL, nil)
		st, err := s.Status(context.Background(), app.SchedulerRef{ID: "34"})
		require.NoError(t, err)
		require.Empty(t, st.Reason)
	})
}
