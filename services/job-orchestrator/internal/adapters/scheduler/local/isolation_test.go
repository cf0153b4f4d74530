package local_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/adapters/scheduler/local"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/app"
)

// newIsolated starts a scheduler with cfg's limits on a fresh work root.
func newIsolated(t *testing.T, cfg local.Config) (*local.Scheduler, string) {
	t.Helper()
	if cfg.WorkRoot == "" {
		cfg.WorkRoot = workRoot(t)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.MaxConcurrent == 0 {
		cfg.MaxConcurrent = 2
	}
	if cfg.KillGrace == 0 {
		cfg.KillGrace = 2 * time.Second
	}
	if cfg.SupervisorPath == "" {
		cfg.SupervisorPath = supervisorBin
	}
	s, err := local.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		require.NoError(t, s.Close(ctx))
	})
	return s, cfg.WorkRoot
}

// jobProcesses returns the pids of the processes on the host whose
// environment carries FLEET_JOB_ID=id (read as root, so from any uid),
// and, when cmdline is set, whose command line is exactly it.
func jobProcesses(t *testing.T, id string, cmdline ...string) []int {
	t.Helper()
	return procsOf(id, cmdline...)
}

// uniqueID returns a job id no other test run uses, for tests that look
// for a job's processes on the host.
func uniqueID(prefix string) string {
	return prefix + "-" + strconv.Itoa(os.Getpid()) + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(data)
}

// The attack of issue 14: a job reads the service's environment through
// /proc/$PPID/environ and leaves a process behind in a new session.
func TestExploitServiceEnvironmentAndSetsidSurvivor(t *testing.T) {
	t.Parallel()
	own := readFile(t, "/proc/self/environ")
	require.Contains(t, own, testSecret, "the service's environment holds a secret to steal")
	require.Contains(t, own, testTokenKey)
	s, root := newIsolated(t, local.Config{})
	script := "#!/bin/bash\ntr '\\0' '\\n' </proc/$PPID/environ | grep -E 'SECRET|TOKEN_KEY'; setsid sleep 777 & sleep 1\n"
	id := uniqueID("exploit")
	ref := submit(t, s, id, script, func(r *app.SubmitRequest) { r.Walltime = time.Minute })

	require.Eventually(t, func() bool { return len(jobProcesses(t, id, "sleep", "777")) == 1 },
		10*time.Second, 20*time.Millisecond, "the job starts sleep 777 in its own session")
	st := waitTerminal(t, s, ref)

	out := readFile(t, filepath.Join(root, id, "stdout.log"))
	require.NotContains(t, out, testSecret)
	require.NotContains(t, out, testTokenKey)
	require.Empty(t, out, "the job printed nothing of the service's environment")
	require.Contains(t, readFile(t, filepath.Join(root, id, "stderr.log")), "Permission denied")
	require.Empty(t, jobProcesses(t, id, "sleep", "777"), "sleep 777 is gone once the job has ended")
	require.Empty(t, jobProcesses(t, id), "no process of the job is left")
	require.Equal(t, app.PhaseCompleted, st.Phase, "the job itself exits 0 (grep found nothing)")
}

// A job's directory and the scheduler's records are closed to other jobs,
// and each job runs under a uid of its own, not the service's.
func TestJobCannotReadAnotherJobsFiles(t *testing.T) {
	t.Parallel()
	s, root := newIsolated(t, local.Config{MaxConcurrent: 2})
	victim := submit(t, s, "victim", "#!/bin/bash\nid -u\necho victim-private-data > $HOME/secret.txt\nsleep 30\n")
	require.Eventually(t, func() bool {
		_, err := os.Stat(filepath.Join(root, "victim", "secret.txt"))
		return err == nil
	}, 10*time.Second, 20*time.Millisecond)

	snoop := "#!/bin/bash\nid -u\n" +
		"cat " + root + "/victim/secret.txt\n" +
		"ls " + root + "/victim\n" +
		"ls " + root + "\n" +
		"cat " + root + "/.state/victim/request.json\n" +
		"echo overwritten > " + root + "/victim/secret.txt\n" +
		"exit 0\n"
	thief := submit(t, s, "thief", snoop)
	st := waitTerminal(t, s, thief)
	require.Equal(t, app.PhaseCompleted, st.Phase)
	require.NoError(t, s.Cancel(context.Background(), victim))

	out := readFile(t, filepath.Join(root, "thief", "stdout.log"))
	require.NotContains(t, out, "victim-private-data")
	require.NotContains(t, out, "secret.txt")
	require.NotContains(t, out, "job.sh")
	require.NotContains(t, out, "victim\n", "the work root cannot be listed")
	require.Equal(t, 5, strings.Count(readFile(t, filepath.Join(root, "thief", "stderr.log")), "Permission denied"),
		"every read and the write are refused")
	require.Equal(t, "victim-private-data\n", readFile(t, filepath.Join(root, "victim", "secret.txt")))

	thiefUID := strings.TrimSpace(out)
	victimUID := strings.TrimSpace(readFile(t, filepath.Join(root, "victim", "stdout.log")))
	require.NotEqual(t, victimUID, thiefUID, "two running jobs never share a uid")
	for _, u := range []string{victimUID, thiefUID} {
		n, err := strconv.Atoi(u)
		require.NoError(t, err)
		require.NotEqual(t, os.Geteuid(), n)
		require.GreaterOrEqual(t, n, local.DefaultFirstUID)
		require.LessOrEqual(t, n, local.DefaultLastUID)
	}
}

// A fork bomb stays within the process limit and ends with its job.
func TestForkBombIsBoundedByProcessLimit(t *testing.T) {
	t.Parallel()
	const limit = 40
	s, _ := newIsolated(t, local.Config{MaxProcesses: limit})
	id := uniqueID("bomb")
	ref := submit(t, s, id, "#!/bin/bash\nbomb() { bomb | bomb & }\nbomb\nsleep 3\n",
		func(r *app.SubmitRequest) { r.Walltime = 20 * time.Second })

	peak := 0
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		peak = max(peak, len(jobProcesses(t, id)))
		st, err := s.Status(context.Background(), ref)
		require.NoError(t, err)
		if st.Phase.Terminal() {
			break
		}
	}
	t.Logf("peak of %d processes (limit %d)", peak, limit)
	require.GreaterOrEqual(t, peak, 10, "the bomb did multiply")
	require.LessOrEqual(t, peak, limit)

	st := waitTerminal(t, s, ref)
	require.True(t, st.Phase.Terminal())
	require.Empty(t, jobProcesses(t, id), "nothing of the bomb is left")
}

// A job over its memory limit is killed and ends FAILED with OUT_OF_MEMORY.
func TestMemoryLimitEndsOutOfMemory(t *testing.T) {
	t.Parallel()
	s, _ := newIsolated(t, local.Config{})
	// tail holds its whole input, one 300 MiB line, in memory.
	ref := submit(t, s, "hog", "#!/bin/bash\nhead -c 300M /dev/zero | tail >/dev/null\n",
		func(r *app.SubmitRequest) { r.MemoryMB = 32; r.Walltime = time.Minute })
	st := waitTerminal(t, s, ref)
	require.Equal(t, app.PhaseFailed, st.Phase)
	require.Equal(t, app.ErrorCodeOutOfMemory, st.ErrorCode, "reason: %s", st.Reason)
	require.Contains(t, st.Reason, "memory limit of 32 MiB")

	// The same job within its limit completes.
	ok := submit(t, s, "fits", "#!/bin/bash\nhead -c 1M /dev/zero | tail >/dev/null\n",
		func(r *app.SubmitRequest) { r.MemoryMB = 64 })
	require.Equal(t, app.PhaseCompleted, waitTerminal(t, s, ok).Phase)
}

// The job's cgroup and rlimits carry the request's cores and memory and
// the configured process, open file and file size limits.
func TestResourceLimitsApplied(t *testing.T) {
	t.Parallel()
	s, root := newIsolated(t, local.Config{MaxProcesses: 77, MaxOpenFiles: 99, MaxFileSize: 1 << 20})
	script := `#!/bin/bash
ulimit -n; ulimit -f; ulimit -u
while IFS=: read -r _ ctrl path; do
  case "$ctrl" in
    cpu) cat /sys/fs/cgroup/cpu$path/cpu.cfs_quota_us ;;
    memory) cat /sys/fs/cgroup/memory$path/memory.limit_in_bytes ;;
    pids) cat /sys/fs/cgroup/pids$path/pids.max ;;
  esac
done < <(sort -t: -k2 /proc/self/cgroup)
head -c 2M /dev/zero > big.bin
echo "head exit $?"
`
	ref := submit(t, s, "limits", script, func(r *app.SubmitRequest) {
		r.Nodes, r.CoresPerNode, r.MemoryMB = 1, 2, 48
	})
	waitTerminal(t, s, ref)
	out := readFile(t, filepath.Join(root, "limits", "stdout.log"))
	require.Equal(t, "99\n1024\n77\n200000\n"+strconv.Itoa(48<<20)+"\n77\nhead exit 153\n", out,
		"nofile, fsize (KiB), nproc, cpu quota (2 cores), memory, pids.max, then SIGXFSZ")
	fi, err := os.Stat(filepath.Join(root, "limits", "big.bin"))
	require.NoError(t, err)
	require.Equal(t, int64(1<<20), fi.Size(), "writing stops at the file size limit")
}

// Cancel and walltime kill processes that left the job's process group.
func TestCancelKillsDaemonizedProcesses(t *testing.T) {
	t.Parallel()
	s, _ := newIsolated(t, local.Config{})
	script := "#!/bin/bash\n(setsid bash -c 'trap \"\" TERM HUP; exec sleep 778' &)\nsleep 300\n"
	id, idWT := uniqueID("daemon"), uniqueID("daemon-wt")
	ref := submit(t, s, id, script)
	require.Eventually(t, func() bool { return len(jobProcesses(t, id, "sleep", "778")) == 1 },
		10*time.Second, 20*time.Millisecond)
	require.NoError(t, s.Cancel(context.Background(), ref))
	st, err := s.Status(context.Background(), ref)
	require.NoError(t, err)
	require.Equal(t, app.PhaseCancelled, st.Phase)
	require.Empty(t, jobProcesses(t, id), "the daemonized sleep is gone when Cancel returns")

	wt := submit(t, s, idWT, script, func(r *app.SubmitRequest) { r.Walltime = time.Second })
	st = waitTerminal(t, s, wt)
	require.Equal(t, app.ErrorCodeTimeout, st.ErrorCode)
	require.Empty(t, jobProcesses(t, idWT), "the daemonized sleep is gone at the walltime")
}

// privileges is a Privileges that answers err.
type privileges struct{ err error }

func (p privileges) CanIsolate() error { return p.err }

func TestRefusesToStartUnisolated(t *testing.T) {
	t.Parallel()
	notRoot := privileges{err: errors.New("uid 1000 lacks CAP_SETUID")}

	t.Run("no privileges", func(t *testing.T) {
		t.Parallel()
		root := filepath.Join(workRoot(t), "jobs")
		_, err := local.New(local.Config{WorkRoot: root, Privileges: notRoot})
		require.ErrorIs(t, err, local.ErrNotIsolated)
		require.ErrorContains(t, err, "lacks CAP_SETUID")
		require.ErrorContains(t, err, "single-user mode")
		require.NoDirExists(t, root, "a refused start creates nothing")
	})
	t.Run("no cgroups", func(t *testing.T) {
		t.Parallel()
		_, err := local.New(local.Config{WorkRoot: workRoot(t), CgroupRoot: t.TempDir()})
		require.ErrorIs(t, err, local.ErrNotIsolated)
		require.ErrorContains(t, err, "cgroup")
	})
	t.Run("work root out of reach of job users", func(t *testing.T) {
		t.Parallel()
		private := t.TempDir() // mode 0700
		_, err := local.New(local.Config{WorkRoot: filepath.Join(private, "jobs")})
		require.ErrorIs(t, err, local.ErrNotIsolated)
		require.ErrorContains(t, err, "cannot reach")
	})
	t.Run("single-user mode runs jobs as the service's user and says so", func(t *testing.T) {
		t.Parallel()
		var logs bytes.Buffer
		s, root := newIsolated(t, local.Config{SingleUser: true, Privileges: notRoot,
			Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		require.Contains(t, logs.String(), "unisolated")
		ref := submit(t, s, "single", "#!/bin/bash\nid -u\n")
		require.Equal(t, app.PhaseCompleted, waitTerminal(t, s, ref).Phase)
		require.Equal(t, strconv.Itoa(os.Geteuid())+"\n", readFile(t, filepath.Join(root, "single", "stdout.log")))
	})
}

// crashChildRoot, set in the environment of the test binary, makes it run
// runCrashChild instead of the tests.
const crashChildRoot = "LOCAL_SCHEDULER_TEST_CRASH_ROOT"

// runCrashChild starts a scheduler on root and a job that leaves a
// process in a session of its own, prints READY once both run, and waits
// to be killed: a service that dies with a job running.
func runCrashChild(root string) {
	s, err := local.New(local.Config{WorkRoot: root, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	id := os.Getenv(crashChildRoot + "_JOB")
	script, ready := "#!/bin/bash\n(setsid sleep 779 &)\nsleep 300\n", []string{"sleep", "779"}
	if sc := os.Getenv(crashChildRoot + "_SCRIPT"); sc != "" {
		script, ready = sc, nil // ready once a process of the job runs
	}
	_, err = s.Submit(context.Background(), app.SubmitRequest{JobID: id, Name: "adopted", Script: script})
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	for {
		if pids := procsOf(id, ready...); len(pids) == 1 {
			fmt.Println("READY")
			select {}
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A job that outlives the service that started it (SIGKILL) is adopted by
// the next one: it is running while its cgroup has members, and Cancel
// kills all of them, the one in its own session too.
func TestAdoptedJobIsKilledThroughItsCgroup(t *testing.T) {
	t.Parallel()
	root := workRoot(t)
	id := uniqueID("adopted")
	child := exec.Command("/proc/self/exe", "-test.run=^$")
	child.Env = append(os.Environ(), crashChildRoot+"="+root, crashChildRoot+"_JOB="+id)
	out, err := child.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, child.Start())
	line, _ := bufio.NewReader(out).ReadString('\n')
	require.Equal(t, "READY\n", line)
	require.NoError(t, child.Process.Kill())
	_ = child.Wait()
	require.Len(t, jobProcesses(t, id, "sleep", "779"), 1, "the job outlives its service")

	var rec struct {
		Cgroup string `json:"cgroup"`
		UID    int    `json:"uid"`
	}
	require.NoError(t, json.Unmarshal([]byte(readFile(t, filepath.Join(root, ".state", id, "state.json"))), &rec))
	require.NotEmpty(t, rec.Cgroup)
	require.NotZero(t, rec.UID)

	s, _ := newIsolated(t, local.Config{WorkRoot: root})
	ref := app.SchedulerRef{ID: id}
	st, err := s.Status(context.Background(), ref)
	require.NoError(t, err)
	require.Equal(t, app.PhaseRunning, st.Phase)

	require.NoError(t, s.Cancel(context.Background(), ref))
	st, err = s.Status(context.Background(), ref)
	require.NoError(t, err)
	require.Equal(t, app.PhaseCancelled, st.Phase)
	require.Empty(t, jobProcesses(t, id), "every process of the adopted job is gone")
	cgroups, err := filepath.Glob("/sys/fs/cgroup/*/" + local.DefaultCgroupParent + "/" + rec.Cgroup)
	require.NoError(t, err)
	require.Empty(t, cgroups, "the job's cgroup is removed")
	var stat syscall.Stat_t
	require.NoError(t, syscall.Stat(filepath.Join(root, id), &stat))
	require.Equal(t, uint32(os.Geteuid()), stat.Uid, "the job directory is taken back from the job's uid")
}

// procsOf is jobProcesses without a testing.T, for runCrashChild.
func procsOf(id string, cmdline ...string) []int {
	entries, _ := os.ReadDir("/proc")
	want := []byte("FLEET_JOB_ID=" + id + "\x00")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil || !bytes.Contains(env, want) {
			continue
		}
		cl, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(cmdline) > 0 && string(cl) != strings.Join(cmdline, "\x00")+"\x00" {
			continue
		}
		pids = append(pids, pid)
	}
	return pids
}

// A job that ends while no scheduler runs (the service was SIGKILLed) is
// recorded with its real outcome by the next scheduler: its supervisor
// outlived the service and wrote the exit status where the job's uid
// cannot write, so a job cannot forge its own outcome either.
func TestExitStatusSurvivesServiceCrash(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		exit     int32
		phase    app.Phase
		errCode  string
		tryForge bool
	}{
		{name: "exit 0 completes", exit: 0, phase: app.PhaseCompleted},
		{name: "exit 3 fails, and the job cannot rewrite its outcome", exit: 3, phase: app.PhaseFailed,
			errCode: app.ErrorCodeNonZeroExit, tryForge: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			root := workRoot(t)
			id := uniqueID("crash")
			// The job waits for the file "go" in its directory, then exits.
			script := "#!/bin/sh\nwhile [ ! -e go ]; do sleep 0.05; done\n"
			if tt.tryForge {
				script += "printf '{\"exit_code\": 0}' >\"$FLEET_JOB_DIR/../.state/$FLEET_JOB_ID/exit.json\" 2>/dev/null && echo forged\n"
			}
			script += fmt.Sprintf("exit %d\n", tt.exit)
			child := exec.Command("/proc/self/exe", "-test.run=^$")
			child.Env = append(os.Environ(), crashChildRoot+"="+root, crashChildRoot+"_JOB="+id, crashChildRoot+"_SCRIPT="+script)
			out, err := child.StdoutPipe()
			require.NoError(t, err)
			require.NoError(t, child.Start())
			line, _ := bufio.NewReader(out).ReadString('\n')
			require.Equal(t, "READY\n", line)
			require.NoError(t, child.Process.Kill())
			_ = child.Wait()
			require.NotEmpty(t, jobProcesses(t, id), "the job outlives its service")

			// The job ends while no scheduler runs.
			require.NoError(t, os.WriteFile(filepath.Join(root, id, "go"), nil, 0o644))
			require.Eventually(t, func() bool { return len(jobProcesses(t, id)) == 0 }, 20*time.Second, 50*time.Millisecond)

			s, _ := newIsolated(t, local.Config{WorkRoot: root})
			var st app.SchedulerStatus
			require.Eventually(t, func() bool {
				st, err = s.Status(context.Background(), app.SchedulerRef{ID: id})
				return err == nil && st.Phase != app.PhaseRunning
			}, 20*time.Second, 50*time.Millisecond, "the supervisor records the exit")
			require.Equal(t, tt.phase, st.Phase, st.Reason)
			require.Equal(t, tt.errCode, st.ErrorCode, st.Reason)
			require.NotNil(t, st.ExitCode, st.Reason)
			require.Equal(t, tt.exit, *st.ExitCode)
			require.Contains(t, st.Reason, "ended while the scheduler was not running")
			require.NotNil(t, st.CPUTime, "resource use is recorded too")
			require.NotContains(t, readFile(t, filepath.Join(root, id, "stdout.log")), "forged")

			// The outcome lies where only the service's user can write.
			for path, mode := range map[string]os.FileMode{
				filepath.Join(root, ".state", id):              0o700 | os.ModeDir,
				filepath.Join(root, ".state", id, "exit.json"): 0o600,
			} {
				fi, err := os.Stat(path)
				require.NoError(t, err)
				require.Equal(t, mode, fi.Mode(), path)
				require.Equal(t, uint32(os.Geteuid()), fi.Sys().(*syscall.Stat_t).Uid, path)
			}
		})
	}
}
