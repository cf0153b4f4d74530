package slurm_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/telemetry"
	"github.com/cosmic-horizons/fleet/libs/testinfra"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/adapters/scheduler/slurm"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/app"
)

// TestSlurmTwoClusters routes jobs to the stack's two Slurm 24.11 clusters
// (frontera and vista, each its own slurmctld and slurmrestd) by system,
// checks with each cluster's own squeue where every job runs, cancels one
// on its cluster only, and polls both with one request per cluster.
func TestSlurmTwoClusters(t *testing.T) {
	// Not parallel: it runs before the tests that fill a cluster's node.
	user := os.Getenv("SLURM_USER")
	clusters := map[string]slurm.Config{}
	bins := map[string]string{}
	for _, name := range []string{"frontera", "vista"} {
		up := strings.ToUpper(name)
		url, token, bin := os.Getenv("SLURMRESTD_URL_"+up), os.Getenv("SLURM_JWT_TOKEN_"+up), os.Getenv("SLURM_BIN_DIR_"+up)
		if url == "" || token == "" || bin == "" || user == "" {
			testinfra.Unavailable(t, "SLURMRESTD_URL_"+up+", SLURM_JWT_TOKEN_"+up+" and SLURM_BIN_DIR_"+up+
				" are unset (tools/stack/stack.sh env with FLEET_STACK_SLURM_CLUSTERS=\"frontera vista\")")
		}
		clusters[name] = slurm.Config{BaseURL: url, UserName: user, Token: telemetry.Secret(token)}
		bins[name] = bin
	}
	c, err := slurm.NewClusters(clusters, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	t.Cleanup(c.Close)
	ctx := context.Background()
	wd := sharedWorkDir(t)
	suffix := strings.ReplaceAll(time.Now().Format("150405.000000"), ".", "")

	refs := map[string]app.SchedulerRef{}
	for _, system := range []string{"frontera", "vista"} {
		ref, err := c.Submit(ctx, app.SubmitRequest{JobID: "two-" + system + "-" + suffix, Name: "two", System: system,
			Script: "#!/bin/sh\nsleep 120\n", WorkDir: wd, Partition: "normal", Nodes: 1, CoresPerNode: 1, MemoryMB: 64,
			Walltime: 5 * time.Minute})
		require.NoError(t, err)
		require.True(t, strings.HasPrefix(ref.ID, system+":"), "ref %s names its cluster", ref.ID)
		refs[system] = ref
		t.Cleanup(func() { _ = c.Cancel(context.Background(), ref) })
	}
	squeue := func(system, ref string) string {
		_, id, _ := strings.Cut(ref, ":")
		out, err := exec.Command(filepath.Join(bins[system], "squeue"), "-h", "--states=all", "-j", id, "-o", "%j %T").CombinedOutput()
		require.NoError(t, err, "%s squeue: %s", system, out)
		return strings.TrimSpace(string(out))
	}
	for system, ref := range refs {
		require.Eventually(t, func() bool {
			st, err := c.Status(ctx, ref)
			return err == nil && st.Phase == app.PhaseRunning
		}, 2*time.Minute, 500*time.Millisecond, "%s job runs", system)
		require.Equal(t, "two-two-"+system+"-"+suffix+" RUNNING", squeue(system, ref.ID), "%s's own squeue sees its job", system)
	}

	sts, err := c.StatusMany(ctx, []app.SchedulerRef{refs["frontera"], refs["vista"]})
	require.NoError(t, err)
	require.Equal(t, app.PhaseRunning, sts[refs["frontera"].ID].Phase)
	require.Equal(t, app.PhaseRunning, sts[refs["vista"].ID].Phase)

	require.NoError(t, c.Cancel(ctx, refs["frontera"]))
	require.Eventually(t, func() bool {
		return strings.HasSuffix(squeue("frontera", refs["frontera"].ID), " CANCELLED")
	}, time.Minute, 500*time.Millisecond, "frontera's job is cancelled on frontera")
	require.True(t, strings.HasSuffix(squeue("vista", refs["vista"].ID), " RUNNING"), "vista's job keeps running")
	st, err := c.Status(ctx, refs["frontera"])
	require.NoError(t, err)
	require.Equal(t, app.PhaseCancelled, st.Phase)
}
