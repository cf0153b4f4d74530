package service_test

import (
	"context"
	"encoding/json"
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

	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/kafkabus/kafkabustest"
	"github.com/cosmic-horizons/fleet/libs/outbox/relaytest"
	"github.com/cosmic-horizons/fleet/libs/service/servicetest"
	"github.com/cosmic-horizons/fleet/libs/telemetry"
	"github.com/cosmic-horizons/fleet/libs/testinfra"
	jobpb "github.com/cosmic-horizons/fleet/proto/fleet/job/v1"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/adapters/scheduler/slurm"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/app"
)

// slurmPartition is the partition of the local stack's Slurm.
const slurmPartition = "normal"

// slurmStack is how the tests reach the local stack's Slurm
// (`eval "$(tools/stack/stack.sh env)"`).
type slurmStack struct {
	url, user, token string
}

func requireSlurm(t *testing.T) slurmStack {
	t.Helper()
	s := slurmStack{url: os.Getenv("SLURMRESTD_URL"), user: os.Getenv("SLURM_USER"), token: os.Getenv("SLURM_JWT_TOKEN")}
	if s.url == "" || s.user == "" || s.token == "" {
		testinfra.Unavailable(t, "SLURMRESTD_URL, SLURM_USER and SLURM_JWT_TOKEN are unset (tools/stack/stack.sh env)")
	}
	for _, tool := range []string{"scontrol", "squeue", "sinfo"} {
		_, err := exec.LookPath(slurmTool(tool))
		require.NoError(t, err, "%s checks Slurm's own view", tool)
	}
	return s
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

// orchestratorEnv is the Slurm part of the orchestrator's environment: the
// backend, a job directory the job user can write (mode 01777, as jobs run
// as SLURM_USER) and a catalogue whose frontera has the stack's partition.
func (s slurmStack) orchestratorEnv(t *testing.T) map[string]string {
	t.Helper()
	cat := map[string]any{"systems": []any{map[string]any{
		"name": "frontera",
		"partitions": []any{map[string]any{
			"name": slurmPartition, "max_nodes": 1, "max_walltime": "2h",
			"cores_per_node": 1, "gpus_per_node": 0, "memory_mb": 1024,
		}},
	}}}
	b, err := json.Marshal(cat)
	require.NoError(t, err)
	catFile := filepath.Join(t.TempDir(), "catalogue.json")
	require.NoError(t, os.WriteFile(catFile, b, 0o600))
	return map[string]string{
		"SCHEDULER":             "slurm",
		"SLURMRESTD_URL":        s.url,
		"SLURM_USER":            s.user,
		"SLURM_JWT_TOKEN":       s.token,
		"JOB_WORK_DIR":          sharedDir(t),
		"SYSTEM_CATALOGUE_FILE": catFile,
		"RECONCILE_INTERVAL":    "250ms",
	}
}

// sharedDir makes a directory the Slurm job user can write.
func sharedDir(t *testing.T) string { return testinfra.DirFor(t, testinfra.Shared) }

// holdPending fills the node with one-core blockers submitted straight to
// Slurm, so that the next job stays PENDING until release cancels them.
func (s slurmStack) holdPending(t *testing.T) func() {
	t.Helper()
	sched, err := slurm.New(slurm.Config{BaseURL: s.url, UserName: s.user, Token: telemetry.Secret(s.token),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	ctx := context.Background()
	wd := sharedDir(t)
	var refs []app.SchedulerRef
	release := func() {
		for _, ref := range refs {
			_ = sched.Cancel(ctx, ref)
		}
		for _, ref := range refs {
			require.Eventually(t, func() bool {
				st, err := sched.Status(ctx, ref)
				return err == nil && st.Phase.Terminal()
			}, time.Minute, 250*time.Millisecond, "blocker %s ends", ref.ID)
		}
		refs = nil
		sched.Close()
	}
	t.Cleanup(release)
	for i := range nodeCPUs(t) {
		ref, err := sched.Submit(ctx, app.SubmitRequest{
			JobID: "e2e-blocker-" + strconv.Itoa(i), Name: "blocker", Script: "#!/bin/sh\nsleep 600\n",
			WorkDir: wd, Partition: slurmPartition, Nodes: 1, CoresPerNode: 1, Walltime: 15 * time.Minute,
		})
		require.NoError(t, err)
		refs = append(refs, ref)
	}
	for _, ref := range refs {
		require.Eventually(t, func() bool {
			st, err := sched.Status(ctx, ref)
			return err == nil && st.Phase == app.PhaseRunning
		}, 2*time.Minute, 250*time.Millisecond, "blocker %s runs", ref.ID)
	}
	return release
}

// nodeCPUs is the CPU count of the stack's partition (sinfo's
// allocated/idle/other/total).
func nodeCPUs(t *testing.T) int {
	t.Helper()
	out, err := exec.Command(slurmTool("sinfo"), "-h", "-p", slurmPartition, "-o", "%C").Output()
	require.NoError(t, err, "sinfo")
	fields := strings.Split(strings.TrimSpace(strings.Split(string(out), "\n")[0]), "/")
	require.Len(t, fields, 4, "sinfo %%C output %q", out)
	n, err := strconv.Atoi(fields[3])
	require.NoError(t, err)
	return n
}

// scontrolJob returns the fields of `scontrol show job -o id`.
func scontrolJob(t *testing.T, id string) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, slurmTool("scontrol"), "show", "job", "-o", id).CombinedOutput()
	require.NoError(t, err, "scontrol show job %s: %s", id, out)
	fields := map[string]string{}
	for _, f := range strings.Fields(string(out)) {
		if k, v, ok := strings.Cut(f, "="); ok {
			fields[k] = v
		}
	}
	require.Equal(t, id, fields["JobId"], "scontrol show job %s: %s", id, out)
	return fields
}

// squeueState is the state squeue reports for a job Slurm still lists.
func squeueState(t *testing.T, id string) string {
	t.Helper()
	out, err := exec.Command(slurmTool("squeue"), "-h", "-j", id, "-o", "%T").CombinedOutput()
	require.NoError(t, err, "squeue -j %s: %s", id, out)
	return strings.TrimSpace(string(out))
}

// slurmStateOf is the Slurm job state that the status GetJob reports maps
// back to.
func slurmStateOf(t *testing.T, job *jobpb.Job) string {
	t.Helper()
	switch job.GetStatus() {
	case jobpb.JobStatus_JOB_STATUS_COMPLETED:
		return "COMPLETED"
	case jobpb.JobStatus_JOB_STATUS_CANCELLED:
		return "CANCELLED"
	case jobpb.JobStatus_JOB_STATUS_FAILED:
		switch job.GetErrorCode() {
		case "NON_ZERO_EXIT":
			return "FAILED"
		case "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL":
			return job.GetErrorCode()
		}
	}
	require.FailNow(t, "no Slurm state for job", "%v", job)
	return ""
}

// verifySlurm checks that `scontrol show job` agrees with GetJob: the state
// and, when GetJob reports one, the exit code (scontrol's "code:signal",
// where a signal counts as 128+signal).
func verifySlurm(t *testing.T, job *jobpb.Job) {
	t.Helper()
	id := job.GetSchedulerJobId()
	require.NotEmpty(t, id, "a job that reached Slurm has its id")
	want := slurmStateOf(t, job)
	var fields map[string]string
	// A cancel is recorded by the fleet at once, by Slurm a moment later.
	require.Eventually(t, func() bool {
		fields = scontrolJob(t, id)
		return fields["JobState"] == want
	}, 30*time.Second, 250*time.Millisecond, "scontrol agrees on the state of %s: want %s", id, want)
	if job.ExitCode != nil {
		code, sig, ok := strings.Cut(fields["ExitCode"], ":")
		require.True(t, ok, "ExitCode %q", fields["ExitCode"])
		if sig != "0" {
			s, err := strconv.Atoi(sig)
			require.NoError(t, err)
			code = strconv.Itoa(128 + s)
		}
		require.Equal(t, code, strconv.Itoa(int(job.GetExitCode())), "scontrol agrees on the exit code (%s)", fields["ExitCode"])
	}
	t.Logf("scontrol: JobId=%s JobState=%s ExitCode=%s Reason=%s", id, fields["JobState"], fields["ExitCode"], fields["Reason"])
}

// TestSlurmEndToEnd runs the end-to-end table on the stack's real
// Slurm. It takes about 2-3 minutes: the cancelled-while-pending case runs
// alone first (it fills the node), then the others run in parallel, and the
// time-limit case dominates, since Slurm counts time limits in minutes and
// slurmctld checks them every 30 seconds (a 1-minute limit ends as TIMEOUT
// 60-90 s after the start).
func TestSlurmEndToEnd(t *testing.T) {
	t.Parallel()
	s := requireSlurm(t)
	runEndToEnd(t, backend{
		env:       s.orchestratorEnv(t),
		partition: slurmPartition,
		timeLimit: time.Minute, overrun: 2 * time.Minute,
		wait: 4 * time.Minute,
		// CPU time and max RSS come from slurmdbd's record of the job.
		accounting:  true,
		holdPending: s.holdPending,
		pending: func(t *testing.T, job *jobpb.Job) {
			id := job.GetSchedulerJobId()
			require.NotEmpty(t, id)
			for range 4 {
				require.Equal(t, "PENDING", squeueState(t, id), "squeue: the job waits for the blockers")
				require.Equal(t, "PENDING", scontrolJob(t, id)["JobState"])
				time.Sleep(500 * time.Millisecond)
			}
		},
		verify: verifySlurm,
	})
}

// stackScript is the local-stack script, which owns the Slurm daemons.
func stackScript(t *testing.T, args ...string) {
	t.Helper()
	script, err := filepath.Abs("../../../../tools/stack/stack.sh")
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	out, err := exec.CommandContext(ctx, script, args...).CombinedOutput()
	require.NoError(t, err, "stack.sh %v:\n%s", args, out)
	t.Logf("stack.sh %s took %s", strings.Join(args, " "), time.Since(start).Round(time.Millisecond))
}

// TestOutageSlurmRestart restarts the stack's Slurm (slurmctld, slurmd,
// slurmrestd, through tools/stack/stack.sh down/up) while one job runs and
// submits another while Slurm is down. Both jobs are kept, the reconciler
// logs its failed calls and retries them, and once Slurm is back both
// complete with each transition applied once. It stops the shared Slurm,
// so it runs alone (make test runs TestOutage* after the others).
func TestOutageSlurmRestart(t *testing.T) {
	s := requireSlurm(t)
	prefix := kafkabustest.Prefix(t, testinfra.KafkaBrokers(t), "orchtest-")
	vars := env(t, prefix, stateDir(t))
	for k, v := range s.orchestratorEnv(t) {
		vars[k] = v
	}
	p := servicetest.RunBinary(t, "../../cmd/job-orchestrator", vars)
	c := client(t, p.GRPCAddr)
	user := relaytest.RandomName(t, "user-")
	ctx := authed(t, user)
	h := &e2eHarness{b: backend{wait: 4 * time.Minute}, c: c, user: user}
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			stackScript(t, "up", "--components", "slurm")
		}
	})

	submit := func(script string) string {
		resp, err := c.SubmitJob(ctx, &jobpb.SubmitJobRequest{IdempotencyKey: relaytest.RandomName(t, "k-"),
			Spec: customSpecOn(slurmPartition, script, 10*time.Minute)})
		require.NoError(t, err)
		return resp.GetJob().GetJobId()
	}
	running := submit("#!/bin/sh\nsleep 20\necho done\n")
	h.await(t, running, "RUNNING", func(j *jobpb.Job) bool { return j.GetStatus() == jobpb.JobStatus_JOB_STATUS_RUNNING })

	stackScript(t, "down", "--components", "slurm")
	during := submit("#!/bin/sh\nsleep 1\n")
	require.Eventually(t, func() bool {
		return strings.Count(p.Output(), "will retry") >= 2
	}, time.Minute, 250*time.Millisecond, "the reconciler logs the failed calls and retries")
	for id, want := range map[string]jobpb.JobStatus{running: jobpb.JobStatus_JOB_STATUS_RUNNING, during: jobpb.JobStatus_JOB_STATUS_SUBMITTED} {
		j, err := c.GetJob(ctx, &jobpb.GetJobRequest{JobId: id})
		require.NoError(t, err)
		require.Equal(t, want, j.GetJob().GetStatus(), "job %s is kept while Slurm is down", id)
	}

	stackScript(t, "up", "--components", "slurm")
	restarted = true
	for _, id := range []string{running, during} {
		job := h.await(t, id, "COMPLETED", func(j *jobpb.Job) bool { return j.GetStatus() == jobpb.JobStatus_JOB_STATUS_COMPLETED })
		require.Equal(t, int32(0), job.GetExitCode())
		verifySlurm(t, job)

		var lc []events.Event
		require.Eventually(t, func() bool {
			lc = lifecycleOf(t, prefix, events.TopicJobLifecycle, id)
			return len(lc) >= len(completed)
		}, 30*time.Second, 100*time.Millisecond)
		require.Equal(t, completed, types(lc), "each transition of %s once, in order", id)
		seen := map[string]int{}
		for i, e := range lc {
			require.EqualValues(t, i+1, e.Sequence)
			seen[e.EventID]++
		}
		require.Len(t, seen, len(completed), "no event of %s published twice", id)
		require.Len(t, lifecycleOf(t, prefix, events.TopicAuditTrail, id), len(completed))
		_, final := splitMetrics(t, lifecycleOf(t, prefix, events.TopicJobMetrics, id))
		require.NotNil(t, final, "one final metrics event")
	}
}
