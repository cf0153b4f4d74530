package slurm_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/telemetry"
	"github.com/cosmic-horizons/fleet/libs/testinfra"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/adapters/scheduler/schedulertest"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/adapters/scheduler/slurm"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/app"
)

// TestSlurmContract runs the scheduler contract suite against the real Slurm
// 24.11 of the local stack (`eval "$(tools/stack/stack.sh env)"`), once per
// API version the backend speaks (v0.0.40, v0.0.41, v0.0.42). Jobs run as
// SLURM_USER, so every job's WorkDir is a fresh directory under the system
// temporary directory with mode 01777 (world-writable, sticky), which that
// user can write and the test can read. The time-limit case takes about two
// minutes: Slurm counts time limits in whole minutes and slurmctld checks
// them every 30 seconds.
func TestSlurmContract(t *testing.T) {
	t.Parallel()
	baseURL, user, token := os.Getenv("SLURMRESTD_URL"), os.Getenv("SLURM_USER"), os.Getenv("SLURM_JWT_TOKEN")
	if baseURL == "" || (!strings.HasPrefix(baseURL, "unix:") && (user == "" || token == "")) {
		testinfra.Unavailable(t, "SLURMRESTD_URL, SLURM_USER and SLURM_JWT_TOKEN are unset (tools/stack/stack.sh env)")
	}
	_, err := exec.LookPath(slurmTool("scontrol"))
	require.NoError(t, err, "scontrol verifies what the backend reports")

	t.Run("negotiated", func(t *testing.T) {
		var logs strings.Builder
		s, err := slurm.New(slurm.Config{BaseURL: baseURL, UserName: user, Token: telemetry.Secret(token),
			Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		require.NoError(t, err)
		defer s.Close()
		v, err := s.APIVersion(context.Background())
		require.NoError(t, err)
		require.Equal(t, slurm.SupportedVersions[0], v, "Slurm 24.11 serves v0.0.42, the newest the backend speaks")
		require.Contains(t, logs.String(), "slurmrestd API version chosen")
		require.Contains(t, logs.String(), "version="+v)
	})
	// One version after the other: each run fills the node.
	for _, version := range slurm.SupportedVersions {
		t.Run(version, func(t *testing.T) {
			newScheduler := func(t *testing.T) app.Scheduler {
				s, err := slurm.New(slurm.Config{
					BaseURL:    baseURL,
					UserName:   user,
					Token:      telemetry.Secret(token),
					APIVersion: version,
					Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
				})
				require.NoError(t, err)
				t.Cleanup(s.Close)
				got, err := s.APIVersion(context.Background())
				require.NoError(t, err)
				require.Equal(t, version, got)
				return s
			}
			schedulertest.Run(t, newScheduler, schedulertest.Options{
				Capacity:       clusterCPUs(t),
				TimeLimit:      time.Minute,
				TimeoutOverrun: 2 * time.Minute,
				WaitTimeout:    3 * time.Minute,
				PollInterval:   time.Second,
				WorkDir:        sharedWorkDir,
				UnknownID:      "67108000",
				LocalProcesses: true, // the stack's Slurm node is this host (its daemons run chrooted)
				Verify:         verifyWithScontrol,
				CountByName:    countWithSqueue,
			})
		})
	}
}

// slurmTool is the path of a Slurm command of the stack's cluster:
// SLURM_BIN_DIR holds wrappers that run Slurm 24.11's tools in its root
// file system; without it the tool is looked up in PATH.
func slurmTool(name string) string {
	if dir := os.Getenv("SLURM_BIN_DIR"); dir != "" {
		return filepath.Join(dir, name)
	}
	return name
}

// countWithSqueue counts the jobs slurmctld holds under req's job name.
func countWithSqueue(t *testing.T, req app.SubmitRequest) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	name := req.Name + "-" + req.JobID
	out, err := exec.CommandContext(ctx, slurmTool("squeue"), "--noheader", "--states=all", "--name", name, "--format", "%i").CombinedOutput()
	require.NoError(t, err, "squeue --name %s: %s", name, out)
	return len(strings.Fields(string(out)))
}

// sharedWorkDir makes a directory the Slurm job user can write.
func sharedWorkDir(t *testing.T) string { return testinfra.DirFor(t, testinfra.Shared) }

// clusterCPUs is the number of CPUs of the default partition (sinfo's
// allocated/idle/other/total), which one-core jobs fill.
func clusterCPUs(t *testing.T) int {
	t.Helper()
	out, err := exec.Command(slurmTool("sinfo"), "-h", "-o", "%C").Output()
	require.NoError(t, err, "sinfo")
	fields := strings.Split(strings.TrimSpace(strings.Split(string(out), "\n")[0]), "/")
	require.Len(t, fields, 4, "sinfo %%C output %q", out)
	n, err := strconv.Atoi(fields[3])
	require.NoError(t, err)
	return n
}

// verifyWithScontrol checks that Slurm's own view of the job agrees with the
// status the backend reported.
func verifyWithScontrol(t *testing.T, ref app.SchedulerRef, st app.SchedulerStatus) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, slurmTool("scontrol"), "show", "job", "-o", ref.ID).CombinedOutput()
	require.NoError(t, err, "scontrol show job %s: %s", ref.ID, out)
	fields := map[string]string{}
	for _, f := range strings.Fields(string(out)) {
		if k, v, ok := strings.Cut(f, "="); ok {
			fields[k] = v
		}
	}
	require.Equal(t, ref.ID, fields["JobId"])
	require.Equal(t, st.State, fields["JobState"], "scontrol agrees on the state")
	if st.ExitCode != nil {
		code, sig, ok := strings.Cut(fields["ExitCode"], ":")
		require.True(t, ok, "ExitCode %q", fields["ExitCode"])
		want := code
		if sig != "0" {
			s, err := strconv.Atoi(sig)
			require.NoError(t, err)
			want = strconv.Itoa(128 + s)
		}
		require.Equal(t, want, strconv.Itoa(int(*st.ExitCode)), "scontrol agrees on the exit code (%s)", fields["ExitCode"])
	}
	t.Logf("scontrol: JobId=%s JobState=%s ExitCode=%s", fields["JobId"], fields["JobState"], fields["ExitCode"])
}
