package slurm_test

import (
	"bytes"
	"context"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/telemetry"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/adapters/scheduler/slurm"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/app"
)

func TestAPIVersionNegotiation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		served     []string
		configured string
		want       string
		wantErr    string
	}{
		{name: "24.11 serves 40 to 42: the newest", served: []string{"v0.0.40", "v0.0.41", "v0.0.42"}, want: "v0.0.42"},
		{name: "24.05 serves 39 to 41", served: []string{"v0.0.39", "v0.0.40", "v0.0.41"}, want: "v0.0.41"},
		{name: "a newer slurmrestd: the newest both know", served: []string{"v0.0.41", "v0.0.42", "v0.0.43"}, want: "v0.0.42"},
		{name: "configured version served", served: []string{"v0.0.40", "v0.0.41", "v0.0.42"}, configured: "v0.0.40", want: "v0.0.40"},
		{name: "configured version not served", served: []string{"v0.0.41", "v0.0.42"}, configured: "v0.0.40",
			wantErr: "does not serve the configured API version v0.0.40"},
		{name: "22.05 serves only removed versions", served: []string{"v0.0.36", "v0.0.37", "v0.0.38"},
			wantErr: "serves none of the API versions"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, srv := startFake(t)
			f.set(http.MethodGet, "/openapi/v3", http.StatusOK, servedSpec(tc.served...))
			if tc.want != "" {
				f.setFixture(t, http.MethodGet, "/slurm/"+tc.want+"/job/34", "job_completed.json")
			}
			var logs bytes.Buffer
			s, err := slurm.New(slurm.Config{BaseURL: srv.URL, UserName: "fleetjob", Token: telemetry.Secret(testToken),
				APIVersion: tc.configured, Logger: newJSONLogger(&logs)})
			require.NoError(t, err)
			t.Cleanup(s.Close)
			_, err = s.Status(context.Background(), app.SchedulerRef{ID: "34"})
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				require.Empty(t, f.recorded(http.MethodGet), "no job request is sent")
				return
			}
			require.NoError(t, err)
			got, err := s.APIVersion(context.Background())
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
			gets := f.recorded(http.MethodGet)
			require.Len(t, gets, 1)
			require.Equal(t, "/slurm/"+tc.want+"/job/34", gets[0].path)
			require.Contains(t, logs.String(), `"msg":"slurmrestd API version chosen"`)
			require.Contains(t, logs.String(), `"version":"`+tc.want+`"`)
		})
	}

	t.Run("chosen once, asked again after a failure", func(t *testing.T) {
		t.Parallel()
		f, srv := startFake(t)
		f.set(http.MethodGet, "/openapi/v3", http.StatusServiceUnavailable, []byte(`{"errors":[]}`))
		f.setFixture(t, http.MethodGet, "/slurm/v0.0.42/job/34", "job_completed.json")
		s := newBackend(t, srv.URL, nil)
		_, err := s.Status(context.Background(), app.SchedulerRef{ID: "34"})
		require.ErrorIs(t, err, app.ErrSchedulerUnavailable)
		f.set(http.MethodGet, "/openapi/v3", http.StatusOK, servedSpec("v0.0.42"))
		for range 3 {
			_, err = s.Status(context.Background(), app.SchedulerRef{ID: "34"})
			require.NoError(t, err)
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		specReads := 0
		for _, r := range f.requests {
			if r.path == "/openapi/v3" {
				specReads++
			}
		}
		require.Equal(t, 2, specReads, "one failed read, then one that is kept")
	})
}
