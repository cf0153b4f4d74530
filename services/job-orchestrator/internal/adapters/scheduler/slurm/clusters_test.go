package slurm_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/telemetry"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/adapters/scheduler/slurm"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/app"
)

func TestClustersRouteBySystem(t *testing.T) {
	t.Parallel()
	frontera, fsrv := startFake(t)
	vista, vsrv := startFake(t)
	frontera.setFixture(t, http.MethodPost, "/slurm/v0.0.42/job/submit", "submit_ok.json")
	frontera.set(http.MethodGet, "/slurm/v0.0.42/job/34", http.StatusOK, withJobID(t, "job_running.json", 34))
	frontera.setFixture(t, http.MethodDelete, "/slurm/v0.0.42/job/34", "delete_ok.json")
	vista.setFixture(t, http.MethodPost, "/slurm/v0.0.42/job/submit", "submit_held.json")
	vista.setFixture(t, http.MethodGet, "/slurm/v0.0.42/job/33", "job_pending_held.json")
	vista.set(http.MethodGet, "/slurm/v0.0.42/jobs", http.StatusOK, fixture(t, "job_pending_held.json"))
	frontera.set(http.MethodGet, "/slurm/v0.0.42/jobs", http.StatusOK, withJobID(t, "job_running.json", 34))

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	down := "http://" + ln.Addr().String()
	require.NoError(t, ln.Close())

	cfg := func(url string) slurm.Config {
		return slurm.Config{BaseURL: url, UserName: "fleetjob", Token: telemetry.Secret(testToken), HTTPTimeout: 5 * time.Second}
	}
	c, err := slurm.NewClusters(map[string]slurm.Config{"frontera": cfg(fsrv.URL), "vista": cfg(vsrv.URL), "lonestar6": cfg(down)},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	t.Cleanup(c.Close)
	ctx := context.Background()
	req := func(system string) app.SubmitRequest {
		return app.SubmitRequest{JobID: "j-" + system, System: system, Script: "#!/bin/sh\n", WorkDir: "/tmp"}
	}

	fref, err := c.Submit(ctx, req("frontera"))
	require.NoError(t, err)
	require.Equal(t, "frontera:34", fref.ID)
	vref, err := c.Submit(ctx, req("vista"))
	require.NoError(t, err)
	require.Equal(t, "vista:33", vref.ID)
	require.Len(t, frontera.recorded(http.MethodPost), 1, "frontera's job went to frontera")
	require.Len(t, vista.recorded(http.MethodPost), 1, "vista's job went to vista")
	_, err = c.Submit(ctx, req("stampede3"))
	require.ErrorContains(t, err, `system "stampede3" has no slurm cluster`)

	st, err := c.Status(ctx, vref)
	require.NoError(t, err)
	require.Equal(t, app.PhaseQueued, st.Phase)
	st, err = c.Status(ctx, fref)
	require.NoError(t, err)
	require.Equal(t, app.PhaseRunning, st.Phase)

	require.NoError(t, c.Cancel(ctx, fref))
	require.Len(t, frontera.recorded(http.MethodDelete), 1, "the cancel reached frontera")
	require.Empty(t, vista.recorded(http.MethodDelete), "and not vista")

	// One request per cluster; the cluster that is down leaves its jobs out.
	lref := app.SchedulerRef{ID: "lonestar6:7"}
	sts, err := c.StatusMany(ctx, []app.SchedulerRef{fref, vref, lref})
	require.NoError(t, err)
	require.Equal(t, app.PhaseRunning, sts[fref.ID].Phase)
	require.Equal(t, app.PhaseQueued, sts[vref.ID].Phase)
	require.NotContains(t, sts, lref.ID)
	_, err = c.Status(ctx, lref)
	require.ErrorIs(t, err, app.ErrSchedulerUnavailable, "the down cluster's job is kept, not lost")

	_, err = c.Status(ctx, app.SchedulerRef{ID: "34"})
	require.ErrorIs(t, err, app.ErrUnknownJob, "a reference without a cluster")
}
