package local

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/app"
)

// A job's supervisor is the service's own executable started again in
// supervisor mode, once per job. It starts the script (under the job's uid,
// in its cgroup, with its rlimits, as the scheduler did itself before),
// waits for it and writes the exit status and resource use atomically to
// exit.json in the scheduler's directory of the job, which the job's uid
// cannot write. It runs as the service's user in a process group of its own
// (the script inherits it), ignores SIGTERM, SIGINT and SIGHUP, and
// outlives the service: a scheduler started after the service died reads
// the outcome of a job that ended meanwhile instead of reporting it lost.
//
// The mode is entered from this package's init, before the program's main
// or its tests run, so every binary that links the backend can serve as the
// supervisor (moby's reexec does the same).
const (
	supervisorArg = "fleet-local-job-supervisor"
	// supervisorEnv carries the job id in the supervisor's environment: it
	// marks the process as a job's supervisor and lets a restarted
	// scheduler tell it from a process that reuses its pid.
	supervisorEnv = "FLEET_SUPERVISED_JOB_ID"
	// supervisorExe is the executable started as the supervisor: this
	// process's own, even if its file was replaced since it started.
	supervisorExe = "/proc/self/exe"
)

// Files of the scheduler's directory of a job that the supervisor uses.
const (
	runSpecFile   = "run.json"
	exitFile      = "exit.json"
	supervisorLog = "supervisor.log"
)

// Descriptors the supervisor receives (exec.Cmd.ExtraFiles): the script's
// standard input, output and error, opened by the scheduler.
const (
	fdStdin  = 3
	fdStdout = 4
	fdStderr = 5
)

func init() {
	if len(os.Args) == 3 && os.Args[1] == supervisorArg && os.Getenv(supervisorEnv) != "" {
		os.Exit(runSupervisor(os.Args[2]))
	}
}

// runSpec is what the supervisor needs to start a job (run.json).
type runSpec struct {
	JobID  string   `json:"job_id"`
	Path   string   `json:"path"`
	Dir    string   `json:"dir"`
	Env    []string `json:"env"`
	UID    int      `json:"uid,omitempty"`
	GID    int      `json:"gid,omitempty"`
	Limits limits   `json:"limits"`
	// CgroupVersion and CgroupDirs are the job's cgroup; empty without one.
	CgroupVersion cgroupVersion     `json:"cgroup_version,omitempty"`
	CgroupDirs    map[string]string `json:"cgroup_dirs,omitempty"`
}

// exitRecord is the outcome the supervisor writes (exit.json).
type exitRecord struct {
	// StartError is set when the script could not be started.
	StartError  string    `json:"start_error,omitempty"`
	ExitCode    *int32    `json:"exit_code,omitempty"`
	Reason      string    `json:"reason,omitempty"`
	CPUTimeNS   *int64    `json:"cpu_time_ns,omitempty"`
	MaxRSSBytes *int64    `json:"max_rss_bytes,omitempty"`
	EndedAt     time.Time `json:"ended_at"`
}

// startSupervisor writes the job's run spec and starts its supervisor,
// handing it the script's standard files of cmd (built by command). The
// supervisor's process group is the job's.
func (s *Scheduler) startSupervisor(j *job, cmd *exec.Cmd) (*exec.Cmd, error) {
	spec := runSpec{JobID: j.rec.JobID, Path: cmd.Path, Dir: cmd.Dir, Env: cmd.Env,
		UID: j.rec.UID, GID: j.rec.GID, Limits: j.limits}
	if j.cgroup != nil {
		spec.CgroupVersion, spec.CgroupDirs = j.cgroup.version, j.cgroup.dirs
	}
	_ = os.Remove(filepath.Join(j.meta, exitFile))
	if err := writeJSONAtomic(filepath.Join(j.meta, runSpecFile), spec, 0o600); err != nil {
		return nil, err
	}
	files := make([]*os.File, 0, 3)
	for _, f := range []any{cmd.Stdin, cmd.Stdout, cmd.Stderr} {
		file, ok := f.(*os.File)
		if !ok {
			return nil, errors.New("job's standard files are not files")
		}
		files = append(files, file)
	}
	logFile, err := os.OpenFile(filepath.Join(j.meta, supervisorLog), os.O_WRONLY|os.O_CREATE|os.O_APPEND|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open supervisor log: %w", err)
	}
	defer logFile.Close()
	sup := exec.Command(s.supervisorPath, supervisorArg, filepath.Join(j.meta, runSpecFile))
	sup.Env = []string{supervisorEnv + "=" + j.rec.JobID}
	sup.Dir = j.meta
	sup.ExtraFiles = files
	sup.Stdout, sup.Stderr = logFile, logFile
	sup.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := sup.Start(); err != nil {
		return nil, fmt.Errorf("start job supervisor: %w", err)
	}
	return sup, nil
}

// runSupervisor is the supervisor's main: it returns its exit status.
func runSupervisor(specPath string) int {
	// Caught, not ignored: an ignored signal stays ignored across exec, so
	// the script would not see the SIGTERM of its walltime or cancel.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	exitPath := filepath.Join(filepath.Dir(specPath), exitFile)
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "job supervisor:", err)
		rec := exitRecord{StartError: err.Error(), EndedAt: time.Now().UTC()}
		if werr := writeJSONAtomic(exitPath, rec, 0o600); werr != nil {
			fmt.Fprintln(os.Stderr, "job supervisor:", werr)
		}
		return 1
	}
	var spec runSpec
	if err := readJSON(specPath, &spec); err != nil {
		return fail(err)
	}
	_ = os.Remove(specPath) // it holds the job's environment
	// The inherited descriptors are not close-on-exec: without this the
	// script would hold second copies of them.
	for _, fd := range []int{fdStdin, fdStdout, fdStderr} {
		syscall.CloseOnExec(fd)
	}
	cmd := exec.Command(spec.Path)
	cmd.Dir, cmd.Env = spec.Dir, spec.Env
	cmd.Stdin = os.NewFile(fdStdin, "stdin")
	cmd.Stdout = os.NewFile(fdStdout, "stdout")
	cmd.Stderr = os.NewFile(fdStderr, "stderr")
	cmd.SysProcAttr = &syscall.SysProcAttr{}
	if spec.UID != 0 {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(spec.UID), Gid: uint32(spec.GID), Groups: []uint32{}}
	}
	var cg *jobCgroup
	if len(spec.CgroupDirs) > 0 {
		cg = &jobCgroup{version: spec.CgroupVersion, dirs: spec.CgroupDirs}
	}
	err := startStopped(cmd, func(pid int) error {
		if cg != nil {
			if err := cg.add(pid); err != nil {
				return err
			}
		}
		return setRlimits(pid, spec.Limits, spec.UID, spec.GID)
	})
	closeFiles(cmd)
	if err != nil {
		return fail(fmt.Errorf("start script: %w", err))
	}
	_ = cmd.Wait()
	rec := exitRecord{EndedAt: time.Now().UTC()}
	if state := cmd.ProcessState; state != nil {
		code, reason := exitCode(state)
		rec.ExitCode, rec.Reason = &code, reason
		if ru, ok := state.SysUsage().(*syscall.Rusage); ok && ru != nil {
			cpu := ru.Utime.Nano() + ru.Stime.Nano()
			rss := ru.Maxrss * 1024
			rec.CPUTimeNS, rec.MaxRSSBytes = &cpu, &rss
		}
	}
	if err := writeJSONAtomic(exitPath, rec, 0o600); err != nil {
		fmt.Fprintln(os.Stderr, "job supervisor:", err)
		return 1
	}
	return 0
}

// readExit reads the outcome a job's supervisor recorded; ok is false when
// there is none (the supervisor did not finish).
func readExit(meta string) (exitRecord, bool) {
	var x exitRecord
	if err := readJSON(filepath.Join(meta, exitFile), &x); err != nil {
		return exitRecord{}, false
	}
	return x, true
}

// applyExit records x, the outcome the supervisor wrote, in rec: the state
// follows from the exit code unless the job was stopped (stop) or ran out
// of memory (oom).
func applyExit(rec *record, x exitRecord, stop stopReason, walltime time.Duration, memoryBytes int64, oom bool) {
	rec.ExitCode, rec.CPUTimeNS, rec.MaxRSSBytes = x.ExitCode, x.CPUTimeNS, x.MaxRSSBytes
	rec.Reason = x.Reason
	if !x.EndedAt.IsZero() {
		rec.EndedAt = x.EndedAt
	}
	switch {
	case x.StartError != "":
		rec.State = StateFailed
		rec.ErrorCode = app.ErrorCodeSubmit
		rec.Reason = "start script: " + x.StartError
	case stop == stopCancel:
		rec.State = StateCancelled
		rec.Reason = joinReason("cancelled", rec.Reason)
	case stop == stopTimeout:
		rec.State = StateTimeout
		rec.ErrorCode = app.ErrorCodeTimeout
		rec.Reason = joinReason("walltime "+walltime.String()+" exceeded", rec.Reason)
	case stop == stopShutdown:
		rec.State = StateLost
		rec.ErrorCode = app.ErrorCodeLost
		rec.Reason = joinReason("terminated at scheduler shutdown", rec.Reason)
	case oom:
		rec.State = StateFailed
		rec.ErrorCode = app.ErrorCodeOutOfMemory
		rec.Reason = joinReason(fmt.Sprintf("memory limit of %d MiB exceeded", memoryBytes>>20), rec.Reason)
	case rec.ExitCode != nil && *rec.ExitCode == 0:
		rec.State = StateCompleted
	default:
		rec.State = StateFailed
		rec.ErrorCode = app.ErrorCodeNonZeroExit
	}
}
