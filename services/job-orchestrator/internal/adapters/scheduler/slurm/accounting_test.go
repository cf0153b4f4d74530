package slurm_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/telemetry"
	"github.com/cosmic-horizons/fleet/libs/testinfra"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/adapters/scheduler/slurm"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/app"
)

// TestSlurmAccounting runs a job that burns CPU and holds memory on the
// stack's Slurm 24.11 and compares the backend's accounting record (and the
// CPU time and max RSS its final status carries) with `sacct` for the same
// job, and the efficiencies with seff's formulas over sacct's numbers.
func TestSlurmAccounting(t *testing.T) {
	// Not parallel: it runs before the tests that fill a cluster's node.
	baseURL, user, token := os.Getenv("SLURMRESTD_URL"), os.Getenv("SLURM_USER"), os.Getenv("SLURM_JWT_TOKEN")
	if baseURL == "" || user == "" || token == "" {
		testinfra.Unavailable(t, "SLURMRESTD_URL, SLURM_USER and SLURM_JWT_TOKEN are unset (tools/stack/stack.sh env)")
	}
	s, err := slurm.New(slurm.Config{BaseURL: baseURL, UserName: user, Token: telemetry.Secret(token),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	t.Cleanup(s.Close)
	ctx := context.Background()

	// About a second of CPU in the shell, then ~30 MB resident in the
	// shell (a variable) for 4 s, long enough for the 1 s samples.
	script := "#!/bin/sh\n" +
		"i=0; while [ $i -lt 1500000 ]; do i=$((i+1)); done\n" +
		"x=$(head -c 30000000 /dev/zero | tr '\\0' a); sleep 4; echo ${#x}\n" +
		"exit 2\n"
	ref, err := s.Submit(ctx, app.SubmitRequest{JobID: "acct-" + strconv.FormatInt(time.Now().UnixNano(), 36), Name: "acct",
		Script: script, WorkDir: sharedWorkDir(t), Partition: "normal", Nodes: 1, CoresPerNode: 1, MemoryMB: 256,
		Walltime: 5 * time.Minute})
	require.NoError(t, err)
	var st app.SchedulerStatus
	require.Eventually(t, func() bool {
		st, err = s.Status(ctx, ref)
		return err == nil && st.Phase.Terminal() && st.CPUTime != nil
	}, 3*time.Minute, time.Second, "job %s ends and has an accounting record", ref.ID)
	require.Equal(t, app.PhaseFailed, st.Phase)
	require.Equal(t, int32(2), *st.ExitCode)

	u, err := s.Accounting(ctx, ref)
	require.NoError(t, err)
	acct := sacct(t, ref.ID)
	t.Logf("sacct: %v", acct)
	t.Logf("backend: state=%s exit=%d elapsed=%s cpu=%s maxrss=%d cpus=%d mem=%dMB cpu_eff=%.2f%% mem_eff=%.2f%%",
		u.State, u.Exit.Code, u.Elapsed, u.CPUTime, u.MaxRSS, u.CPUs, u.MemoryMB, u.CPUEfficiency(), u.MemoryEfficiency())

	require.Equal(t, acct["State"], u.State)
	require.Equal(t, acct["ExitCode"], strconv.Itoa(int(u.Exit.Code))+":0")
	require.Equal(t, acct["ElapsedRaw"], strconv.FormatInt(int64(u.Elapsed.Seconds()), 10))
	require.Equal(t, acct["AllocCPUS"], strconv.FormatInt(u.CPUs, 10))
	require.Equal(t, acct["ReqMem"], strconv.FormatInt(u.MemoryMB, 10)+"M")
	totalCPU := parseSacctDuration(t, acct["TotalCPU"])
	require.Equal(t, totalCPU.Milliseconds(), u.CPUTime.Milliseconds(), "TotalCPU %s", acct["TotalCPU"])
	require.Greater(t, u.CPUTime, 500*time.Millisecond, "the loop burned CPU")
	maxRSS := acct["MaxRSS"]
	require.NotEmpty(t, maxRSS, "MaxRSS sampled (JobAcctGatherFrequency=task=1)")
	rss, err := strconv.ParseInt(maxRSS, 10, 64)
	require.NoError(t, err)
	require.Equal(t, rss, u.MaxRSS)
	require.Equal(t, u.CPUTime, *st.CPUTime, "the final status carries the CPU time")
	require.Equal(t, u.MaxRSS, *st.MaxRSSBytes, "and the max RSS")

	// seff: CPU efficiency = TotalCPU / (Elapsed × AllocCPUS); memory
	// efficiency = MaxRSS / allocated memory.
	elapsed, _ := strconv.ParseFloat(acct["ElapsedRaw"], 64)
	cpus, _ := strconv.ParseFloat(acct["AllocCPUS"], 64)
	// sacct prints TotalCPU in milliseconds: within 1 ms of CPU time.
	require.InDelta(t, totalCPU.Seconds()/(elapsed*cpus)*100, u.CPUEfficiency(), 0.1/(elapsed*cpus))
	require.InDelta(t, float64(rss)/(256*1024*1024)*100, u.MemoryEfficiency(), 0.001)
	require.Greater(t, u.MemoryEfficiency(), 5.0, "about 30 MB of 256 MB")
}

// sacct returns the job line (not its steps) of `sacct -j id` with raw
// numbers: MaxRSS in bytes is the largest of the steps'.
func sacct(t *testing.T, id string) map[string]string {
	t.Helper()
	const format = "JobID,State,ExitCode,ElapsedRaw,TotalCPU,MaxRSS,AllocCPUS,ReqMem"
	out, err := exec.Command(slurmTool("sacct"), "-j", id, "-o", format, "-P", "-n", "--noconvert").CombinedOutput()
	require.NoError(t, err, "sacct: %s", out)
	names := strings.Split(format, ",")
	job := map[string]string{}
	var maxRSS int64 = -1
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		vals := strings.Split(line, "|")
		require.Len(t, vals, len(names), "sacct line %q", line)
		if vals[0] == id {
			for i, n := range names {
				job[n] = vals[i]
			}
		}
		if v, err := strconv.ParseInt(vals[5], 10, 64); err == nil && v > maxRSS {
			maxRSS = v
		}
	}
	require.NotEmpty(t, job, "sacct has job %s: %s", id, out)
	if maxRSS >= 0 {
		job["MaxRSS"] = strconv.FormatInt(maxRSS, 10)
	}
	return job
}

// parseSacctDuration reads sacct's [DD-[HH:]]MM:SS.mmm.
func parseSacctDuration(t *testing.T, s string) time.Duration {
	t.Helper()
	var days int64
	if d, rest, ok := strings.Cut(s, "-"); ok {
		n, err := strconv.ParseInt(d, 10, 64)
		require.NoError(t, err)
		days, s = n, rest
	}
	parts := strings.Split(s, ":")
	require.True(t, len(parts) >= 2 && len(parts) <= 3, "duration %q", s)
	sec, err := strconv.ParseFloat(parts[len(parts)-1], 64)
	require.NoError(t, err)
	var h, m int64
	m, err = strconv.ParseInt(parts[len(parts)-2], 10, 64)
	require.NoError(t, err)
	if len(parts) == 3 {
		h, err = strconv.ParseInt(parts[0], 10, 64)
		require.NoError(t, err)
	}
	return time.Duration(days)*24*time.Hour + time.Duration(h)*time.Hour + time.Duration(m)*time.Minute +
		time.Duration(sec*float64(time.Second)+0.5)
}
