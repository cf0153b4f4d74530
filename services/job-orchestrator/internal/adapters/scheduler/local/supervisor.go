package local

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/adapters/scheduler/local/jobsupervisor"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/app"
)

// A job's supervisor is started once per job (package jobsupervisor). It
// starts the script (under the job's uid, in its cgroup, with its rlimits,
// as the scheduler did itself before), waits for it and writes the exit
// status and resource use atomically to exit.json in the scheduler's
// directory of the job, which the job's uid cannot write. It runs as the
// service's user in a process group of its own (the script inherits it),
// ignores SIGTERM, SIGINT and SIGHUP, and outlives the service: a scheduler
// started after the service died reads the outcome of a job that ended
// meanwhile instead of reporting it lost.
//
// The executable is Config.SupervisorPath, the small one built from
// cmd/job-supervisor, or else this process's own started again in
// supervisor mode, which is entered from this package's init, before the
// program's main or its tests run, so every binary that links the backend
// can serve as the supervisor (moby's reexec does the same). The small one
// starts in a few milliseconds; the service's own runs the init of every
// package it links first.
const (
	supervisorArg = jobsupervisor.Arg
	supervisorEnv = jobsupervisor.Env
	// supervisorExe is the executable started as the supervisor when no
	// other is configured: this process's own, even if its file was
	// replaced since it started.
	supervisorExe = "/proc/self/exe"
)

// Files of the scheduler's directory of a job that the supervisor uses.
const (
	runSpecFile   = "run.json"
	exitFile      = jobsupervisor.ExitFile
	supervisorLog = "supervisor.log"
)

func init() {
	if jobsupervisor.Invoked(os.Args) {
		os.Exit(jobsupervisor.Run(os.Args[2]))
	}
}

type (
	runSpec    = jobsupervisor.RunSpec
	exitRecord = jobsupervisor.ExitRecord
)

var (
	writeJSONAtomic = jobsupervisor.WriteJSONAtomic
	readJSON        = jobsupervisor.ReadJSON
	exitCode        = jobsupervisor.ExitCode
)

// startSupervisor writes the job's run spec and starts its supervisor,
// handing it the script's standard files of cmd (built by command). The
// supervisor's process group is the job's.
func (s *Scheduler) startSupervisor(j *job, cmd *exec.Cmd) (*exec.Cmd, error) {
	spec := runSpec{JobID: j.rec.JobID, Path: cmd.Path, Dir: cmd.Dir, Env: cmd.Env, Limits: j.limits}
	if j.lease != nil {
		spec.UID, spec.GID = j.lease.UID, j.lease.GID
	}
	if j.cgroup != nil {
		spec.CgroupVersion, spec.CgroupDirs = int(j.cgroup.version), j.cgroup.dirs
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
