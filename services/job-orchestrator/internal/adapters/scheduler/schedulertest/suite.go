package schedulertest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/app"
)

// Options adapts the suite to a backend.
type Options struct {
	// Capacity is how many one-core jobs fill the scheduler, so that one
	// more stays pending (local: MaxConcurrent; Slurm: CPUs of the node).
	// Required.
	Capacity int
	// TimeLimit is the walltime of the time-limit case. Slurm counts whole
	// minutes, so Slurm needs at least one minute and the case is slow; it
	// runs in parallel with the other cases. Required.
	TimeLimit time.Duration
	// TimeoutOverrun is how much longer than TimeLimit that job would run if
	// nothing stopped it. Default: TimeLimit plus 30s, which outlasts
	// slurmctld's periodic time-limit check.
	TimeoutOverrun time.Duration
	// WaitTimeout bounds each wait for a state (the time-limit case waits
	// TimeLimit + TimeoutOverrun + WaitTimeout). Default 2 minutes.
	WaitTimeout time.Duration
	// PollInterval between Status calls while waiting. Default 250ms.
	PollInterval time.Duration
	// WorkDir returns a new directory the backend's job user can write.
	// Default: t.TempDir().
	WorkDir func(t *testing.T) string
	// UnknownID is a scheduler id that was never issued. Required.
	UnknownID string
	// LocalProcesses says jobs run on this host, so the suite can check that
	// a cancelled job's processes are gone.
	LocalProcesses bool
	// Request adjusts every request before it is submitted (partition, ...).
	Request func(*app.SubmitRequest)
	// Verify, when set, checks a job's final status with the scheduler's
	// own tools (for Slurm: scontrol show job).
	Verify func(t *testing.T, ref app.SchedulerRef, st app.SchedulerStatus)
	// CountByName, when set, counts with the scheduler's own tools the jobs
	// it holds for req (for Slurm: squeue --name).
	CountByName func(t *testing.T, req app.SubmitRequest) int
}

func (o Options) withDefaults(t *testing.T) Options {
	t.Helper()
	require.Positive(t, o.Capacity, "Options.Capacity is required")
	require.Positive(t, o.TimeLimit, "Options.TimeLimit is required")
	require.NotEmpty(t, o.UnknownID, "Options.UnknownID is required")
	if o.TimeoutOverrun == 0 {
		o.TimeoutOverrun = o.TimeLimit + 30*time.Second
	}
	if o.WaitTimeout == 0 {
		o.WaitTimeout = 2 * time.Minute
	}
	if o.PollInterval == 0 {
		o.PollInterval = 250 * time.Millisecond
	}
	if o.WorkDir == nil {
		o.WorkDir = func(t *testing.T) string { return t.TempDir() }
	}
	return o
}

// Run runs the contract suite. newScheduler is called once per case and
// must return a ready backend; it registers its own cleanup with t.
func Run(t *testing.T, newScheduler func(t *testing.T) app.Scheduler, opts Options) {
	t.Helper()
	opts = opts.withDefaults(t)
	h := &harness{opts: opts, newScheduler: newScheduler}

	// Runs alone first: it relies on the scheduler being otherwise idle.
	t.Run("job cancelled while pending", h.cancelPending)

	cases := []struct {
		name string
		run  func(t *testing.T)
	}{
		{name: "job that exits 0 completes", run: h.completes},
		{name: "job that exits 3 fails with NON_ZERO_EXIT", run: h.failsNonZero},
		{name: "job past its time limit fails with TIMEOUT (slow on slurm)", run: h.timesOut},
		{name: "job cancelled while running", run: h.cancelRunning},
		{name: "unknown reference", run: h.unknown},
		{name: "a resubmission returns the job already held", run: h.resubmit},
		{name: "environment arrives verbatim and is never executed", run: h.environment},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t)
		})
	}
}

type harness struct {
	opts         Options
	newScheduler func(t *testing.T) app.Scheduler
}

func (h *harness) request(t *testing.T, workDir, name, body string) app.SubmitRequest {
	t.Helper()
	req := app.SubmitRequest{
		JobID:        "ct-" + name + "-" + randomSuffix(t),
		Name:         "contract-" + name,
		Script:       "#!/bin/bash\nset -u\n" + body + "\n",
		Environment:  map[string]string{},
		WorkDir:      workDir,
		Nodes:        1,
		CoresPerNode: 1,
		MemoryMB:     64,
		Walltime:     10 * time.Minute,
	}
	if h.opts.Request != nil {
		h.opts.Request(&req)
	}
	return req
}

func (h *harness) submit(t *testing.T, s app.Scheduler, req app.SubmitRequest) app.SchedulerRef {
	t.Helper()
	ref, err := s.Submit(context.Background(), req)
	require.NoError(t, err, "submit %s", req.JobID)
	require.NotEmpty(t, ref.ID)
	t.Logf("submitted %s as %s", req.JobID, ref.ID)
	return ref
}

// waitFor polls Status until done reports true and returns that status.
func (h *harness) waitFor(t *testing.T, s app.Scheduler, ref app.SchedulerRef, timeout time.Duration,
	what string, done func(app.SchedulerStatus) bool) app.SchedulerStatus {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last app.SchedulerStatus
	var lastErr error
	for {
		st, err := s.Status(context.Background(), ref)
		if err == nil {
			last, lastErr = st, nil
			if done(st) {
				return st
			}
		} else {
			lastErr = err
		}
		if time.Now().After(deadline) {
			require.FailNowf(t, "timed out waiting", "job %s: waited %s for %s; last status %+v, last error %v",
				ref.ID, timeout, what, last, lastErr)
		}
		time.Sleep(h.opts.PollInterval)
	}
}

func (h *harness) waitTerminal(t *testing.T, s app.Scheduler, ref app.SchedulerRef, timeout time.Duration) app.SchedulerStatus {
	t.Helper()
	return h.waitFor(t, s, ref, timeout, "a terminal phase", func(st app.SchedulerStatus) bool { return st.Phase.Terminal() })
}

func (h *harness) verify(t *testing.T, ref app.SchedulerRef, st app.SchedulerStatus) {
	t.Helper()
	if h.opts.Verify != nil {
		h.opts.Verify(t, ref, st)
	}
}

// resubmit submits a job, then submits it again as a Resubmit, as the
// orchestrator does after an attempt whose answer was lost: the backend
// must answer with the job it holds, not start a second one.
func (h *harness) resubmit(t *testing.T) {
	s := h.newScheduler(t)
	wd := h.opts.WorkDir(t)
	before := time.Now()
	req := h.request(t, wd, "resubmit", "sleep 30\nexit 0")
	ref := h.submit(t, s, req)
	t.Cleanup(func() { _ = s.Cancel(context.Background(), ref) })

	again := req
	again.Resubmit, again.NotBefore = true, before
	ref2, err := s.Submit(context.Background(), again)
	require.NoError(t, err)
	require.Equal(t, ref.ID, ref2.ID, "the job already held")
	require.Equal(t, ref.SubmittedAt.Unix(), ref2.SubmittedAt.Unix())
	if h.opts.CountByName != nil {
		require.Equal(t, 1, h.opts.CountByName(t, req), "jobs the scheduler holds for %s", req.JobID)
	}
	require.NoError(t, s.Cancel(context.Background(), ref))
}

func (h *harness) completes(t *testing.T) {
	s := h.newScheduler(t)
	wd := h.opts.WorkDir(t)
	req := h.request(t, wd, "ok", fmt.Sprintf("echo hello\nprintf done > %s\nexit 0", shellPath(wd, "done")))
	ref := h.submit(t, s, req)
	require.False(t, ref.SubmittedAt.IsZero(), "a reference carries the submit time")

	st := h.waitTerminal(t, s, ref, h.opts.WaitTimeout)
	require.Equal(t, app.PhaseCompleted, st.Phase, "status %+v", st)
	require.Empty(t, st.ErrorCode)
	require.NotNil(t, st.ExitCode)
	require.Equal(t, int32(0), *st.ExitCode)
	require.False(t, st.SubmitTime.IsZero(), "submit time")
	require.False(t, st.StartTime.IsZero(), "start time")
	require.False(t, st.EndTime.IsZero(), "end time")
	require.False(t, st.StartTime.Before(st.SubmitTime.Truncate(time.Second)), "start %s before submit %s", st.StartTime, st.SubmitTime)
	require.False(t, st.EndTime.Before(st.StartTime.Truncate(time.Second)), "end %s before start %s", st.EndTime, st.StartTime)
	require.Equal(t, ref.SubmittedAt.Unix(), st.SubmitTime.Unix())
	require.FileExists(t, filepath.Join(wd, "done"))
	h.verify(t, ref, st)

	// Terminal states are stable and cancelling an ended job is not an error.
	require.NoError(t, s.Cancel(context.Background(), ref))
	again, err := s.Status(context.Background(), ref)
	require.NoError(t, err)
	require.Equal(t, app.PhaseCompleted, again.Phase)
}

func (h *harness) failsNonZero(t *testing.T) {
	s := h.newScheduler(t)
	wd := h.opts.WorkDir(t)
	ref := h.submit(t, s, h.request(t, wd, "exit3", "echo failing >&2\nexit 3"))

	st := h.waitTerminal(t, s, ref, h.opts.WaitTimeout)
	require.Equal(t, app.PhaseFailed, st.Phase, "status %+v", st)
	require.Equal(t, app.ErrorCodeNonZeroExit, st.ErrorCode)
	require.NotNil(t, st.ExitCode)
	require.Equal(t, int32(3), *st.ExitCode)
	require.False(t, st.EndTime.IsZero())
	h.verify(t, ref, st)
}

func (h *harness) timesOut(t *testing.T) {
	s := h.newScheduler(t)
	wd := h.opts.WorkDir(t)
	sleep := h.opts.TimeLimit + h.opts.TimeoutOverrun
	req := h.request(t, wd, "timeout", fmt.Sprintf("sleep %d\nprintf finished > %s",
		int(sleep.Seconds()), shellPath(wd, "finished")))
	req.Walltime = h.opts.TimeLimit
	ref := h.submit(t, s, req)

	st := h.waitTerminal(t, s, ref, sleep+h.opts.WaitTimeout)
	require.Equal(t, app.PhaseFailed, st.Phase, "status %+v", st)
	require.Equal(t, app.ErrorCodeTimeout, st.ErrorCode)
	require.NoFileExists(t, filepath.Join(wd, "finished"), "the job was stopped before its end")
	h.verify(t, ref, st)
}

func (h *harness) cancelPending(t *testing.T) {
	s := h.newScheduler(t)
	wd := h.opts.WorkDir(t)
	ctx := context.Background()

	blockers := make([]app.SchedulerRef, 0, h.opts.Capacity)
	for i := range h.opts.Capacity {
		ref := h.submit(t, s, h.request(t, wd, "blocker"+strconv.Itoa(i), "sleep 600"))
		blockers = append(blockers, ref)
		t.Cleanup(func() { _ = s.Cancel(context.Background(), ref) })
	}
	for _, ref := range blockers {
		h.waitFor(t, s, ref, h.opts.WaitTimeout, "blocker running", func(st app.SchedulerStatus) bool {
			return st.Phase == app.PhaseRunning
		})
	}

	ran := filepath.Join(wd, "pending-ran")
	ref := h.submit(t, s, h.request(t, wd, "pending", "printf ran > "+shellPath(wd, "pending-ran")))
	for range 4 {
		st, err := s.Status(ctx, ref)
		require.NoError(t, err)
		require.Equal(t, app.PhaseQueued, st.Phase, "the scheduler is full, the job must wait: %+v", st)
		time.Sleep(500 * time.Millisecond)
	}
	require.NoError(t, s.Cancel(ctx, ref))
	st := h.waitTerminal(t, s, ref, h.opts.WaitTimeout)
	require.Equal(t, app.PhaseCancelled, st.Phase, "status %+v", st)
	require.Empty(t, st.ErrorCode)
	h.verify(t, ref, st)
	require.NoError(t, s.Cancel(ctx, ref), "cancel is idempotent")

	for _, b := range blockers {
		require.NoError(t, s.Cancel(ctx, b))
	}
	for _, b := range blockers {
		bst := h.waitTerminal(t, s, b, h.opts.WaitTimeout)
		require.Equal(t, app.PhaseCancelled, bst.Phase, "blocker status %+v", bst)
	}
	require.NoFileExists(t, ran, "a job cancelled while pending never runs")
}

func (h *harness) cancelRunning(t *testing.T) {
	s := h.newScheduler(t)
	wd := h.opts.WorkDir(t)
	ctx := context.Background()
	body := fmt.Sprintf("sleep 600 &\necho $! > %s\necho $$ > %s\nwait",
		shellPath(wd, "child.pid"), shellPath(wd, "leader.pid"))
	ref := h.submit(t, s, h.request(t, wd, "running", body))

	h.waitFor(t, s, ref, h.opts.WaitTimeout, "running", func(st app.SchedulerStatus) bool {
		return st.Phase == app.PhaseRunning
	})
	var pids []int
	if h.opts.LocalProcesses {
		require.Eventually(t, func() bool {
			pids = readPIDs(wd, "leader.pid", "child.pid")
			return len(pids) == 2
		}, h.opts.WaitTimeout, h.opts.PollInterval, "the job writes its pids")
	}

	require.NoError(t, s.Cancel(ctx, ref))
	st := h.waitTerminal(t, s, ref, h.opts.WaitTimeout)
	require.Equal(t, app.PhaseCancelled, st.Phase, "status %+v", st)
	require.Empty(t, st.ErrorCode)
	require.False(t, st.StartTime.IsZero())
	h.verify(t, ref, st)
	require.NoError(t, s.Cancel(ctx, ref), "cancel is idempotent")

	for _, pid := range pids {
		require.Eventually(t, func() bool { return !processAlive(pid) }, h.opts.WaitTimeout, h.opts.PollInterval,
			"process %d of the cancelled job is gone", pid)
	}
}

func (h *harness) unknown(t *testing.T) {
	s := h.newScheduler(t)
	ctx := context.Background()
	unknown := app.SchedulerRef{ID: h.opts.UnknownID, SubmittedAt: time.Now().Add(-time.Hour)}
	_, err := s.Status(ctx, unknown)
	require.ErrorIs(t, err, app.ErrUnknownJob)
	require.ErrorIs(t, s.Cancel(ctx, unknown), app.ErrUnknownJob)
	_, err = s.Status(ctx, app.SchedulerRef{ID: h.opts.UnknownID})
	require.ErrorIs(t, err, app.ErrUnknownJob)

	// A known id with another submit time is another job (a reused id).
	wd := h.opts.WorkDir(t)
	ref := h.submit(t, s, h.request(t, wd, "reused", "exit 0"))
	require.False(t, ref.SubmittedAt.IsZero())
	reused := app.SchedulerRef{ID: ref.ID, SubmittedAt: ref.SubmittedAt.Add(-time.Hour)}
	_, err = s.Status(ctx, reused)
	require.ErrorIs(t, err, app.ErrUnknownJob)
	require.ErrorIs(t, s.Cancel(ctx, reused), app.ErrUnknownJob)
	st := h.waitTerminal(t, s, ref, h.opts.WaitTimeout)
	require.Equal(t, app.PhaseCompleted, st.Phase, "the real job is untouched: %+v", st)
}

func (h *harness) environment(t *testing.T) {
	s := h.newScheduler(t)
	wd := h.opts.WorkDir(t)
	marker := filepath.Join(wd, "pwned")
	canary := filepath.Join(wd, "canary")
	require.NoError(t, os.Mkdir(canary, 0o755))

	env := map[string]string{
		"FLEET_T_PLAIN":    "hello world",
		"FLEET_T_SUBST":    "$(touch " + marker + ")",
		"FLEET_T_BACKTICK": "`touch " + marker + "`",
		"FLEET_T_SEMI":     "x; touch " + marker + "; rm -rf " + canary,
		"FLEET_T_AND":      "x && touch " + marker + " || touch " + marker,
		"FLEET_T_NEWLINE":  "first\ntouch " + marker + "\nlast",
		"FLEET_T_QUOTES":   `'"; touch ` + marker + `; echo "'`,
		"FLEET_T_DOLLAR":   "${HOME} $PATH $$",
		"FLEET_T_UNICODE":  "Ωmega · 雪",
	}
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var body strings.Builder
	for _, k := range append(keys, "FLEET_JOB_ID") {
		fmt.Fprintf(&body, "printf '%%s' \"$%s\" > %s\n", k, shellPath(wd, "env."+k))
	}
	req := h.request(t, wd, "env", body.String())
	req.Name = "env-$(touch " + marker + ")"
	for k, v := range env {
		req.Environment[k] = v
	}
	ref := h.submit(t, s, req)
	st := h.waitTerminal(t, s, ref, h.opts.WaitTimeout)
	require.Equal(t, app.PhaseCompleted, st.Phase, "status %+v", st)

	for _, k := range keys {
		got, err := os.ReadFile(filepath.Join(wd, "env."+k))
		require.NoError(t, err, "the job wrote %s", k)
		require.Equal(t, env[k], string(got), "value of %s", k)
	}
	got, err := os.ReadFile(filepath.Join(wd, "env.FLEET_JOB_ID"))
	require.NoError(t, err)
	require.Equal(t, req.JobID, string(got))
	require.NoFileExists(t, marker, "a value was executed by a shell")
	require.DirExists(t, canary, "a value was executed by a shell")
}

// shellPath renders dir/name for a script line. Paths come from the suite
// (temporary directories), never from user input; they are still quoted.
func shellPath(dir, name string) string {
	return "'" + strings.ReplaceAll(filepath.Join(dir, name), "'", `'\''`) + "'"
}

func randomSuffix(t *testing.T) string {
	t.Helper()
	b := make([]byte, 5)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return hex.EncodeToString(b)
}

func readPIDs(dir string, names ...string) []int {
	var pids []int
	for _, n := range names {
		data, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			return nil
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil || pid <= 0 {
			return nil
		}
		pids = append(pids, pid)
	}
	return pids
}

// processAlive reports whether pid exists and is not a zombie.
func processAlive(pid int) bool {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return false
	}
	return s[i+2] != 'Z' && s[i+2] != 'X'
}
