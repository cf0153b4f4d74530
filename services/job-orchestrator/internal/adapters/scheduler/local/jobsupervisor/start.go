package jobsupervisor

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// StartStopped starts cmd so that the new program stops before its first
// instruction, calls setup with its pid, and lets it run. Tracing
// (PTRACE_TRACEME) makes the child stop with SIGTRAP right after execve
// succeeds; that is the one moment when the process already runs the job's
// uid and program but has not executed any of it, so a cgroup and rlimits
// set then cover everything the job will ever do (a process moved into a
// cgroup later could have forked outside it already). When setup fails the
// process is killed and reaped, and the error returned.
func StartStopped(cmd *exec.Cmd, setup func(pid int) error) error {
	// ptrace requests must come from the thread that forked the tracee.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cmd.SysProcAttr.Ptrace = true
	if err := cmd.Start(); err != nil {
		return err
	}
	pid := cmd.Process.Pid
	stopped, err := waitExecStop(pid)
	if err == nil && stopped {
		err = setup(pid)
	}
	if err != nil {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		if stopped {
			_ = unix.PtraceDetach(pid)
		}
		_ = cmd.Wait()
		return err
	}
	if stopped {
		if err := unix.PtraceDetach(pid); err != nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			_ = cmd.Wait()
			return fmt.Errorf("release process %d: %w", pid, err)
		}
	}
	return nil
}

// sigchldInfo is the SIGCHLD layout of unix.Siginfo.
type sigchldInfo struct {
	Signo, Errno, Code, _ int32
	Pid                   int32
	UID                   uint32
	Status                int32
}

// si_code values of SIGCHLD (linux/signal.h).
const (
	cldTrapped = 4
	cldStopped = 5
)

// waitExecStop waits for the traced child to stop after execve. It reports
// false, without reaping, when the child died first (its ordinary wait
// then reports how). A signal that stops it before execve is passed on.
func waitExecStop(pid int) (bool, error) {
	for range 16 {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WSTOPPED|unix.WNOWAIT, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("wait for process %d to start: %w", pid, err)
		}
		si := (*sigchldInfo)(unsafe.Pointer(&info))
		switch si.Code {
		case cldTrapped, cldStopped:
			if syscall.Signal(si.Status) == syscall.SIGTRAP {
				return true, nil
			}
			// Stopped by some other signal before execve: deliver it and
			// wait for the exec stop.
			if err := unix.PtraceCont(pid, int(si.Status)); err != nil {
				return false, fmt.Errorf("continue process %d: %w", pid, err)
			}
		default: // exited, killed, dumped
			return false, nil
		}
	}
	return false, fmt.Errorf("process %d did not stop after exec", pid)
}

// SetRlimits applies a job's file size, open files and (when it runs under
// its own uid) process count limits to the stopped process pid, soft and
// hard alike. It must run on the thread that started pid, locked to it.
//
// prlimit(2) on another user's process needs CAP_SYS_RESOURCE, which a
// container's root often lacks; it is also allowed when the caller's real
// uid and gid equal the target's. So the calling thread (only it: the raw
// syscalls change one thread's credentials, unlike syscall.Setuid) takes
// the job's uid and gid as its real ids for the call, keeping its
// effective and saved ids, and with them its capabilities, and then takes
// its own back. Nothing can signal the thread meanwhile: the job's uid has
// no other process, and its one process is stopped.
func SetRlimits(pid int, l Limits, uid, gid int) error {
	set := []struct {
		res  int
		name string
		val  uint64
	}{
		{unix.RLIMIT_FSIZE, "RLIMIT_FSIZE", uint64(l.FileSize)},
		{unix.RLIMIT_NOFILE, "RLIMIT_NOFILE", l.OpenFiles},
		{unix.RLIMIT_CORE, "RLIMIT_CORE", 0},
	}
	if uid != 0 && l.Processes > 0 {
		// RLIMIT_NPROC counts the processes of the uid, which only this
		// job has: a second bound besides the pids cgroup.
		set = append(set, struct {
			res  int
			name string
			val  uint64
		}{unix.RLIMIT_NPROC, "RLIMIT_NPROC", uint64(l.Processes)})
	}
	return asRealIDs(uid, gid, func() error {
		for _, s := range set {
			if s.val == 0 && s.res != unix.RLIMIT_CORE {
				continue
			}
			rl := unix.Rlimit{Cur: s.val, Max: s.val}
			if err := unix.Prlimit(pid, s.res, &rl, nil); err != nil {
				return fmt.Errorf("set %s of process %d to %d: %w", s.name, pid, s.val, err)
			}
		}
		return nil
	})
}

// keepID leaves an id unchanged in setresuid and setresgid.
const keepID = ^uintptr(0)

// asRealIDs runs f with the calling thread's real uid and gid set to uid
// and gid (when uid is not 0), then restores them. The caller has locked
// the goroutine to its thread.
func asRealIDs(uid, gid int, f func() error) error {
	if uid == 0 {
		return f()
	}
	ruid, rgid := os.Getuid(), os.Getgid()
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, uintptr(gid), keepID, keepID); e != 0 {
		return fmt.Errorf("take real gid %d: %w", gid, e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, uintptr(uid), keepID, keepID); e != 0 {
		restoreIDs(-1, rgid)
		return fmt.Errorf("take real uid %d: %w", uid, e)
	}
	err := f()
	restoreIDs(ruid, rgid)
	return err
}

// restoreIDs gives the thread its own real uid and gid back. Should that
// ever fail the thread would run with a job's real uid, so the process
// stops instead.
func restoreIDs(ruid, rgid int) {
	if ruid >= 0 {
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, uintptr(ruid), keepID, keepID); e != 0 {
			panic(fmt.Sprintf("job supervisor: restore real uid %d: %v", ruid, e))
		}
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, uintptr(rgid), keepID, keepID); e != 0 {
		panic(fmt.Sprintf("job supervisor: restore real gid %d: %v", rgid, e))
	}
}
