// Package jobsupervisor is the supervisor of one job of the local backend:
// it starts the job's script (under the job's uid, in its cgroup, with its
// rlimits), waits for it and records the exit status and resource use in
// exit.json, next to the run spec it was given. It imports only the
// standard library and x/sys, so that the small executable built from it
// (cmd/job-supervisor) starts in a few milliseconds; the local backend
// falls back to re-executing the service's own executable, which enters
// Main from the backend's package init.
package jobsupervisor

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// Arg is the supervisor's first argument; the second is its run spec.
	Arg = "fleet-local-job-supervisor"
	// Env carries the job id in the supervisor's environment: it marks the
	// process as a job's supervisor and lets a restarted scheduler tell it
	// from a process that reuses its pid.
	Env = "FLEET_SUPERVISED_JOB_ID"
	// ExitFile is the file, next to the run spec, that the supervisor
	// writes the job's outcome to.
	ExitFile = "exit.json"
)

// Descriptors the supervisor receives (exec.Cmd.ExtraFiles): the script's
// standard input, output and error, opened by the scheduler.
const (
	FDStdin  = 3
	FDStdout = 4
	FDStderr = 5
)

// Limits is what a job's cgroup and rlimits enforce; zero means no limit.
type Limits struct {
	CPUQuotaUS  int64 // per cpu period (100 ms)
	MemoryBytes int64
	Processes   int64
	FileSize    int64
	OpenFiles   uint64
}

// RunSpec is what the supervisor needs to start a job (run.json).
type RunSpec struct {
	JobID  string   `json:"job_id"`
	Path   string   `json:"path"`
	Dir    string   `json:"dir"`
	Env    []string `json:"env"`
	UID    int      `json:"uid,omitempty"`
	GID    int      `json:"gid,omitempty"`
	Limits Limits   `json:"limits"`
	// CgroupVersion and CgroupDirs are the job's cgroup (a v1 controller,
	// or "" for v2, to the job's directory); empty without one.
	CgroupVersion int               `json:"cgroup_version,omitempty"`
	CgroupDirs    map[string]string `json:"cgroup_dirs,omitempty"`
}

// ExitRecord is the outcome the supervisor writes (exit.json).
type ExitRecord struct {
	// StartError is set when the script could not be started.
	StartError  string    `json:"start_error,omitempty"`
	ExitCode    *int32    `json:"exit_code,omitempty"`
	Reason      string    `json:"reason,omitempty"`
	CPUTimeNS   *int64    `json:"cpu_time_ns,omitempty"`
	MaxRSSBytes *int64    `json:"max_rss_bytes,omitempty"`
	EndedAt     time.Time `json:"ended_at"`
}

// Invoked reports whether args and the environment start a supervisor.
func Invoked(args []string) bool {
	return len(args) == 3 && args[1] == Arg && os.Getenv(Env) != ""
}

// Run is the supervisor's main for the run spec at specPath: it returns
// its exit status.
func Run(specPath string) int {
	// Caught, not ignored: an ignored signal stays ignored across exec, so
	// the script would not see the SIGTERM of its walltime or cancel.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	exitPath := filepath.Join(filepath.Dir(specPath), ExitFile)
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "job supervisor:", err)
		rec := ExitRecord{StartError: err.Error(), EndedAt: time.Now().UTC()}
		if werr := WriteJSONAtomic(exitPath, rec, 0o600); werr != nil {
			fmt.Fprintln(os.Stderr, "job supervisor:", werr)
		}
		return 1
	}
	var spec RunSpec
	if err := ReadJSON(specPath, &spec); err != nil {
		return fail(err)
	}
	_ = os.Remove(specPath) // it holds the job's environment
	// The inherited descriptors are not close-on-exec: without this the
	// script would hold second copies of them.
	for _, fd := range []int{FDStdin, FDStdout, FDStderr} {
		syscall.CloseOnExec(fd)
	}
	cmd := exec.Command(spec.Path)
	cmd.Dir, cmd.Env = spec.Dir, spec.Env
	cmd.Stdin = os.NewFile(FDStdin, "stdin")
	cmd.Stdout = os.NewFile(FDStdout, "stdout")
	cmd.Stderr = os.NewFile(FDStderr, "stderr")
	cmd.SysProcAttr = &syscall.SysProcAttr{}
	if spec.UID != 0 {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(spec.UID), Gid: uint32(spec.GID), Groups: []uint32{}}
	}
	err := StartStopped(cmd, func(pid int) error {
		if err := addToCgroup(spec.CgroupDirs, pid); err != nil {
			return err
		}
		return SetRlimits(pid, spec.Limits, spec.UID, spec.GID)
	})
	for _, f := range []*os.File{cmd.Stdin.(*os.File), cmd.Stdout.(*os.File), cmd.Stderr.(*os.File)} {
		_ = f.Close()
	}
	if err != nil {
		return fail(fmt.Errorf("start script: %w", err))
	}
	_ = cmd.Wait()
	rec := ExitRecord{EndedAt: time.Now().UTC()}
	if state := cmd.ProcessState; state != nil {
		code, reason := ExitCode(state)
		rec.ExitCode, rec.Reason = &code, reason
		if ru, ok := state.SysUsage().(*syscall.Rusage); ok && ru != nil {
			cpu := ru.Utime.Nano() + ru.Stime.Nano()
			rss := ru.Maxrss * 1024
			rec.CPUTimeNS, rec.MaxRSSBytes = &cpu, &rss
		}
	}
	if err := WriteJSONAtomic(exitPath, rec, 0o600); err != nil {
		fmt.Fprintln(os.Stderr, "job supervisor:", err)
		return 1
	}
	return 0
}

// addToCgroup moves process pid into the job's cgroup in every hierarchy
// of dirs.
func addToCgroup(dirs map[string]string, pid int) error {
	for _, dir := range dirs {
		p := filepath.Join(dir, "cgroup.procs")
		if err := os.WriteFile(p, []byte(fmt.Sprint(pid)), 0); err != nil {
			return fmt.Errorf("add process %d to %s: %w", pid, dir, err)
		}
	}
	return nil
}

// ExitCode returns the exit status, or 128+signal for a process killed by
// a signal (as shells report it), with a reason text for signals.
func ExitCode(ps *os.ProcessState) (int32, string) {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return int32(128 + int(ws.Signal())), "killed by signal " + unix.SignalName(ws.Signal())
	}
	return int32(ps.ExitCode()), ""
}
