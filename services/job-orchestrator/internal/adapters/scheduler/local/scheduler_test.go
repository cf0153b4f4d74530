package local_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/cosmic-horizons/fleet/libs/testinfra"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/adapters/scheduler/local"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/adapters/scheduler/schedulertest"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/app"
)

// Secrets in the test process's environment, as the service has its own.
const (
	testSecret   = "SECRET-hs256-of-the-service"
	testTokenKey = "TOKEN_KEY-of-the-service"
	reexecMarker = "LOCAL_SCHEDULER_TEST_REEXEC"
)

func TestMain(m *testing.M) {
	// /proc/<pid>/environ shows the environment a process was started with,
	// not later os.Setenv calls, so the test binary starts itself again with
	// the secrets in its environment.
	if os.Getenv(reexecMarker) == "" {
		env := append(os.Environ(), reexecMarker+"=1",
			"AUTH_HS256_SECRET="+testSecret, "PAGE_TOKEN_KEY="+testTokenKey)
		err := syscall.Exec("/proc/self/exe", os.Args, env)
		fmt.Fprintln(os.Stderr, "re-exec the test binary:", err)
		os.Exit(2)
	}
	if root := os.Getenv(crashChildRoot); root != "" {
		runCrashChild(root)
		return
	}
	dir, err := os.MkdirTemp("", "local-scheduler-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	supervisorBin = filepath.Join(dir, "job-supervisor")
	build := exec.Command("go", "build", "-o", supervisorBin, supervisorPackage)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build the job supervisor:", err)
		_ = os.RemoveAll(dir)
		os.Exit(2)
	}
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		_ = os.RemoveAll(dir)
		os.Exit(code)
	}))
}

// supervisorPackage is the dedicated job supervisor; TestMain builds it to
// supervisorBin. The isolation tests start jobs under it, the other tests
// under the test binary itself (the fallback); both must behave alike.
const supervisorPackage = "github.com/cosmic-horizons/fleet/services/job-orchestrator/cmd/job-supervisor"

var supervisorBin string

// workRoot returns a new work root that job users can reach (t.TempDir's
// parent is private to root).
func workRoot(t testing.TB) string { return testinfra.DirFor(t, testinfra.Searchable) }

// sharedDir returns a new directory every job user can write, like a
// shared scratch directory.
func sharedDir(t *testing.T) string { return testinfra.DirFor(t, testinfra.Shared) }

func newScheduler(t *testing.T, root string, maxConcurrent int) *local.Scheduler {
	t.Helper()
	s, err := local.New(local.Config{
		WorkRoot:      root,
		Logger:        slog.New(slog.NewTextHandler(io.Discard, nil)),
		MaxConcurrent: maxConcurrent,
		KillGrace:     2 * time.Second,
	})
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, s.Close(ctx))
	})
	return s
}

func TestContract(t *testing.T) {
	t.Parallel()
	schedulertest.Run(t, func(t *testing.T) app.Scheduler {
		return newScheduler(t, workRoot(t), 1)
	}, schedulertest.Options{
		WorkDir:        sharedDir,
		Capacity:       1,
		TimeLimit:      2 * time.Second,
		TimeoutOverrun: 30 * time.Second,
		WaitTimeout:    30 * time.Second,
		PollInterval:   50 * time.Millisecond,
		UnknownID:      "no-such-job",
		LocalProcesses: true,
	})
}

func submit(t *testing.T, s *local.Scheduler, id, script string, mutate ...func(*app.SubmitRequest)) app.SchedulerRef {
	t.Helper()
	req := app.SubmitRequest{JobID: id, Name: "unit", Script: script}
	for _, m := range mutate {
		m(&req)
	}
	ref, err := s.Submit(context.Background(), req)
	require.NoError(t, err)
	return ref
}

func waitTerminal(t *testing.T, s app.Scheduler, ref app.SchedulerRef) app.SchedulerStatus {
	t.Helper()
	var st app.SchedulerStatus
	require.Eventually(t, func() bool {
		var err error
		st, err = s.Status(context.Background(), ref)
		require.NoError(t, err)
		return st.Phase.Terminal()
	}, 30*time.Second, 20*time.Millisecond)
	return st
}

func TestOutputFilesAndResourceUse(t *testing.T) {
	t.Parallel()
	root := workRoot(t)
	s := newScheduler(t, root, 2)
	// Busy-loop for a moment so the job accrues measurable CPU time.
	ref := submit(t, s, "usage", "#!/bin/bash\necho out-line\necho err-line >&2\nend=$((SECONDS+1))\nwhile [ $SECONDS -lt $end ]; do :; done\n")
	st := waitTerminal(t, s, ref)

	require.Equal(t, app.PhaseCompleted, st.Phase)
	require.Equal(t, local.StateCompleted, st.State)
	require.NotNil(t, st.CPUTime)
	require.Positive(t, *st.CPUTime)
	require.NotNil(t, st.MaxRSSBytes)
	require.Greater(t, *st.MaxRSSBytes, int64(1024*1024), "max RSS is reported in bytes")
	require.NotEmpty(t, st.NodeList)

	out, err := os.ReadFile(filepath.Join(root, "usage", "stdout.log"))
	require.NoError(t, err)
	require.Equal(t, "out-line\n", string(out))
	errOut, err := os.ReadFile(filepath.Join(root, "usage", "stderr.log"))
	require.NoError(t, err)
	require.Equal(t, "err-line\n", string(errOut))

	fi, err := os.Stat(filepath.Join(root, "usage", "job.sh"))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), fi.Mode().Perm())
}

func TestEnvironmentIsMinimal(t *testing.T) {
	t.Setenv("FLEET_SERVICE_SECRET", "do-not-leak")
	root := workRoot(t)
	wd := sharedDir(t)
	s := newScheduler(t, root, 1)
	ref := submit(t, s, "env", "#!/bin/bash\nenv > env.txt\n", func(r *app.SubmitRequest) {
		r.WorkDir = wd
		r.Environment = map[string]string{"MY_VAR": "1", "PATH": "/usr/bin:/bin"}
	})
	st := waitTerminal(t, s, ref)
	require.Equal(t, app.PhaseCompleted, st.Phase)

	data, err := os.ReadFile(filepath.Join(wd, "env.txt"))
	require.NoError(t, err, "the job runs in its WorkDir")
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		k, v, _ := strings.Cut(line, "=")
		got[k] = v
	}
	require.NotContains(t, got, "FLEET_SERVICE_SECRET")
	require.Equal(t, "1", got["MY_VAR"])
	require.Equal(t, "/usr/bin:/bin", got["PATH"], "the request may set PATH")
	require.Equal(t, "env", got["FLEET_JOB_ID"])
	require.Equal(t, filepath.Join(root, "env"), got["HOME"])
	require.Equal(t, wd, got["FLEET_WORK_DIR"])
}

func TestTimeoutKillsProcessGroup(t *testing.T) {
	t.Parallel()
	root := workRoot(t)
	s := newScheduler(t, root, 1)
	// The script ignores SIGTERM, so only SIGKILL after the grace ends it.
	script := "#!/bin/bash\ntrap '' TERM\nsleep 300 &\necho $! > child.pid\nwhile true; do sleep 1; done\n"
	ref := submit(t, s, "stubborn", script, func(r *app.SubmitRequest) { r.Walltime = time.Second })
	st := waitTerminal(t, s, ref)

	require.Equal(t, app.PhaseFailed, st.Phase)
	require.Equal(t, app.ErrorCodeTimeout, st.ErrorCode)
	require.Equal(t, local.StateTimeout, st.State)
	require.NotNil(t, st.ExitCode)
	require.Equal(t, int32(128+9), *st.ExitCode, "killed by SIGKILL after the grace period")
	require.GreaterOrEqual(t, st.EndTime.Sub(st.StartTime), 3*time.Second, "walltime plus the grace period")

	data, err := os.ReadFile(filepath.Join(root, "stubborn", "child.pid"))
	require.NoError(t, err)
	pid := strings.TrimSpace(string(data))
	require.Eventually(t, func() bool {
		stat, err := os.ReadFile("/proc/" + pid + "/stat")
		return err != nil || strings.Contains(string(stat), ") Z")
	}, 5*time.Second, 20*time.Millisecond, "the script's child is killed with it")
}

// TestTimeoutTerminatesTheScript: at its walltime the script gets SIGTERM
// (its supervisor must not pass on an ignored SIGTERM), so a script that
// traps it ends at once with its own exit status, before the grace ends.
func TestTimeoutTerminatesTheScript(t *testing.T) {
	t.Parallel()
	root := workRoot(t)
	s := newScheduler(t, root, 1)
	script := "#!/bin/sh\ntrap 'echo terminated; exit 7' TERM\necho started\nwhile true; do sleep 1; done\n"
	ref := submit(t, s, "terminated", script, func(r *app.SubmitRequest) { r.Walltime = time.Second })
	st := waitTerminal(t, s, ref)

	require.Equal(t, app.PhaseFailed, st.Phase)
	require.Equal(t, app.ErrorCodeTimeout, st.ErrorCode)
	require.NotNil(t, st.ExitCode)
	require.Equal(t, int32(7), *st.ExitCode, "the script's TERM trap ran (not SIGKILL after the grace)")
	out, err := os.ReadFile(filepath.Join(root, "terminated", "stdout.log"))
	require.NoError(t, err)
	require.Equal(t, "started\nterminated\n", string(out))
}

func TestQueueOrderAndLimit(t *testing.T) {
	t.Parallel()
	s := newScheduler(t, workRoot(t), 1)
	first := submit(t, s, "first", "#!/bin/bash\nsleep 0.5\n")
	second := submit(t, s, "second", "#!/bin/bash\nexit 0\n")

	st, err := s.Status(context.Background(), second)
	require.NoError(t, err)
	require.Equal(t, app.PhaseQueued, st.Phase)
	require.True(t, st.StartTime.IsZero())

	a := waitTerminal(t, s, first)
	b := waitTerminal(t, s, second)
	require.False(t, b.StartTime.Before(a.EndTime), "the second job starts after the first ends")
}

func TestSubmitRejectsBadRequests(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		req  app.SubmitRequest
	}{
		{name: "empty job id", req: app.SubmitRequest{Script: "#!/bin/sh\n"}},
		{name: "path in job id", req: app.SubmitRequest{JobID: "../escape", Script: "#!/bin/sh\n"}},
		{name: "dot job id", req: app.SubmitRequest{JobID: "..", Script: "#!/bin/sh\n"}},
		{name: "script without #!", req: app.SubmitRequest{JobID: "a", Script: "echo hi\n"}},
		{name: "NUL in script", req: app.SubmitRequest{JobID: "a", Script: "#!/bin/sh\n\x00"}},
		{name: "bad env name", req: app.SubmitRequest{JobID: "a", Script: "#!/bin/sh\n", Environment: map[string]string{"A=B": "x"}}},
		{name: "env name with space", req: app.SubmitRequest{JobID: "a", Script: "#!/bin/sh\n", Environment: map[string]string{"A B": "x"}}},
		{name: "NUL in env value", req: app.SubmitRequest{JobID: "a", Script: "#!/bin/sh\n", Environment: map[string]string{"A": "x\x00y"}}},
		{name: "negative walltime", req: app.SubmitRequest{JobID: "a", Script: "#!/bin/sh\n", Walltime: -time.Second}},
		{name: "relative work dir", req: app.SubmitRequest{JobID: "a", Script: "#!/bin/sh\n", WorkDir: "rel"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			root := workRoot(t)
			s := newScheduler(t, root, 1)
			_, err := s.Submit(context.Background(), tc.req)
			require.Error(t, err)
			entries, err := os.ReadDir(root)
			require.NoError(t, err)
			require.Len(t, entries, 1, "nothing but the scheduler's state directory")
			require.Equal(t, ".state", entries[0].Name())
			entries, err = os.ReadDir(filepath.Join(root, ".state"))
			require.NoError(t, err)
			require.Empty(t, entries, "nothing was written")
		})
	}
}

func TestDuplicateJobID(t *testing.T) {
	t.Parallel()
	s := newScheduler(t, workRoot(t), 1)
	submit(t, s, "dup", "#!/bin/sh\nexit 0\n")
	_, err := s.Submit(context.Background(), app.SubmitRequest{JobID: "dup", Script: "#!/bin/sh\n"})
	require.ErrorIs(t, err, local.ErrJobExists)
}

func TestRestart(t *testing.T) {
	t.Parallel()
	root := workRoot(t)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))

	first, err := local.New(local.Config{WorkRoot: root, Logger: logger, MaxConcurrent: 1, KillGrace: time.Second})
	require.NoError(t, err)
	done := submit(t, first, "done", "#!/bin/sh\nexit 4\n")
	waitTerminal(t, first, done)
	blocker := submit(t, first, "blocker", "#!/bin/sh\nsleep 300\n")
	queued := submit(t, first, "queued", "#!/bin/sh\nexit 0\n")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, first.Close(ctx))

	// A job recorded as running whose process is gone (the service died).
	dead := exec.Command("true")
	require.NoError(t, dead.Run())
	writeRunningState(t, root, "vanished", dead.Process.Pid)

	// A job recorded as running whose process group still runs.
	orphan := exec.Command("sleep", "300")
	orphan.Env = []string{"FLEET_JOB_ID=orphan"}
	orphan.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	require.NoError(t, orphan.Start())
	orphanDone := make(chan struct{})
	go func() {
		_ = orphan.Wait()
		close(orphanDone)
	}()
	writeRunningState(t, root, "orphan", orphan.Process.Pid)

	second := newScheduler(t, root, 1)

	st, err := second.Status(ctx, done)
	require.NoError(t, err)
	require.Equal(t, app.PhaseFailed, st.Phase, "the recorded outcome survives")
	require.Equal(t, int32(4), *st.ExitCode)

	st, err = second.Status(ctx, blocker)
	require.NoError(t, err)
	require.Equal(t, app.PhaseFailed, st.Phase, "running at shutdown")
	require.Equal(t, app.ErrorCodeLost, st.ErrorCode)

	st = waitTerminal(t, second, queued)
	require.Equal(t, app.PhaseCompleted, st.Phase, "a queued job runs after the restart")

	st, err = second.Status(ctx, app.SchedulerRef{ID: "vanished"})
	require.NoError(t, err)
	require.Equal(t, app.PhaseFailed, st.Phase)
	require.Equal(t, app.ErrorCodeLost, st.ErrorCode)

	st, err = second.Status(ctx, app.SchedulerRef{ID: "orphan"})
	require.NoError(t, err)
	require.Equal(t, app.PhaseRunning, st.Phase)
	require.NoError(t, second.Cancel(ctx, app.SchedulerRef{ID: "orphan"}))
	select {
	case <-orphanDone:
	case <-time.After(10 * time.Second):
		require.Fail(t, "the orphaned process was not killed")
	}
	st, err = second.Status(ctx, app.SchedulerRef{ID: "orphan"})
	require.NoError(t, err)
	require.Equal(t, app.PhaseCancelled, st.Phase)

	_, err = second.Status(ctx, app.SchedulerRef{ID: "never"})
	require.ErrorIs(t, err, app.ErrUnknownJob)
}

func writeRunningState(t *testing.T, root, id string, pid int) {
	t.Helper()
	dir := filepath.Join(root, id)
	require.NoError(t, os.Mkdir(dir, 0o700))
	data, err := json.Marshal(map[string]any{
		"job_id": id, "state": local.StateRunning, "pid": pid,
		"submitted_at": time.Now().UTC(), "started_at": time.Now().UTC(),
	})
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "state.json"), data, 0o600))
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cfg     local.Config
		wantErr string
	}{
		{name: "valid", cfg: local.Config{WorkRoot: "/tmp/x"}},
		{name: "missing root", cfg: local.Config{}, wantErr: "WorkRoot is required"},
		{name: "relative root", cfg: local.Config{WorkRoot: "jobs"}, wantErr: "absolute"},
		{name: "negative concurrency", cfg: local.Config{WorkRoot: "/tmp/x", MaxConcurrent: -1}, wantErr: "MaxConcurrent"},
		{name: "negative grace", cfg: local.Config{WorkRoot: "/tmp/x", KillGrace: -time.Second}, wantErr: "KillGrace"},
		{name: "relative supervisor", cfg: local.Config{WorkRoot: "/tmp/x", SupervisorPath: "job-supervisor"}, wantErr: "SupervisorPath"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.cfg.WithDefaults().Validate()
			if tc.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.wantErr)
		})
	}
}

// A configured supervisor that is missing or not executable is refused
// before anything is created.
func TestNewRefusesBadSupervisor(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	notExec := filepath.Join(dir, "not-executable")
	require.NoError(t, os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644))
	for _, tc := range []struct{ name, path, wantErr string }{
		{name: "missing", path: filepath.Join(dir, "missing"), wantErr: "no such file"},
		{name: "not executable", path: notExec, wantErr: "not an executable file"},
		{name: "directory", path: dir, wantErr: "not an executable file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := filepath.Join(dir, "root-"+strings.ReplaceAll(tc.name, " ", "-"))
			_, err := local.New(local.Config{WorkRoot: root, SingleUser: true, SupervisorPath: tc.path,
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			require.ErrorContains(t, err, tc.wantErr)
			require.NoDirExists(t, root)
		})
	}
}
