package local

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Privileges reports whether the process may run jobs under other users.
// The backend uses HostPrivileges; tests substitute their own.
type Privileges interface {
	// CanIsolate returns nil when the process can start children under
	// other uids and gids, hand them files and signal them; otherwise an
	// error saying what is missing.
	CanIsolate() error
}

// HostPrivileges checks the process's effective uid and capabilities.
type HostPrivileges struct{}

// requiredCaps are the capabilities isolation needs: switch uid and gid,
// give a job its directory and take it back, reach into a job's directory,
// signal a job's processes. (Not CAP_SYS_RESOURCE: see setRlimits.)
var requiredCaps = []struct {
	bit  uint
	name string
}{
	{unix.CAP_CHOWN, "CAP_CHOWN"},
	{unix.CAP_DAC_OVERRIDE, "CAP_DAC_OVERRIDE"},
	{unix.CAP_KILL, "CAP_KILL"},
	{unix.CAP_SETGID, "CAP_SETGID"},
	{unix.CAP_SETUID, "CAP_SETUID"},
}

// CanIsolate implements Privileges.
func (HostPrivileges) CanIsolate() error {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return fmt.Errorf("read capabilities: %w", err)
	}
	var eff uint64
	found := false
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			eff, err = strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				return fmt.Errorf("parse CapEff %q: %w", v, err)
			}
			found = true
		}
	}
	if !found {
		return errors.New("no CapEff in /proc/self/status")
	}
	var missing []string
	for _, c := range requiredCaps {
		if eff&(1<<c.bit) == 0 {
			missing = append(missing, c.name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("uid %d lacks %s", os.Geteuid(), strings.Join(missing, ", "))
	}
	return nil
}

// uidLease is a job uid and gid held by this process until release.
type uidLease struct {
	UID, GID int
	lock     *os.File
}

func (l *uidLease) release() {
	if l != nil && l.lock != nil {
		_ = l.lock.Close() // drops the flock
		l.lock = nil
	}
}

// leaseUID takes a uid of the range that no process on the host runs
// under and no other scheduler holds, starting at *next and going round,
// so that a uid is reused as late as possible. The lock file's flock keeps
// it ours until release or the process's death.
func leaseUID(uids, gids IDRange, lockDir string, next *int, want int) (*uidLease, error) {
	busy, err := uidsInUse()
	if err != nil {
		return nil, err
	}
	try := func(uid int) (*uidLease, error) {
		if busy[uid] || uid == os.Getuid() || uid == os.Geteuid() {
			return nil, nil
		}
		f, err := os.OpenFile(filepath.Join(lockDir, "uid-"+strconv.Itoa(uid)+".lock"),
			os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
		if err != nil {
			return nil, fmt.Errorf("open uid lock: %w", err)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			_ = f.Close()
			if errors.Is(err, unix.EWOULDBLOCK) {
				return nil, nil
			}
			return nil, fmt.Errorf("lock uid %d: %w", uid, err)
		}
		return &uidLease{UID: uid, GID: gids.First + (uid - uids.First), lock: f}, nil
	}
	if want != 0 { // a job adopted from an earlier process keeps its uid
		l, err := try(want)
		if err == nil && l == nil {
			err = fmt.Errorf("uid %d is held by another scheduler", want)
		}
		return l, err
	}
	n := uids.Size()
	for i := 0; i < n; i++ {
		uid := uids.First + (*next-uids.First+i)%n
		l, err := try(uid)
		if err != nil {
			return nil, err
		}
		if l != nil {
			*next = uids.First + (uid-uids.First+1)%n
			return l, nil
		}
	}
	return nil, fmt.Errorf("every job uid of %s is in use", uids)
}

// uidsInUse returns the real, effective and saved uids of every process
// on the host.
func uidsInUse() (map[int]bool, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	busy := map[int]bool{}
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		f, err := os.Open(filepath.Join("/proc", e.Name(), "status"))
		if err != nil {
			continue // exited meanwhile
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "Uid:"); ok {
				for _, field := range strings.Fields(v) {
					if n, err := strconv.Atoi(field); err == nil {
						busy[n] = true
					}
				}
				break
			}
		}
		_ = f.Close()
	}
	return busy, nil
}

// checkReachable returns an error naming the first directory above and
// including dir that others cannot search: a job user could not reach its
// own directory below it.
func checkReachable(dir string) error {
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("job users cannot reach %s: %s has mode %04o; give it search permission for others (chmod o+x) or choose a work root they can reach",
				dir, d, fi.Mode().Perm())
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

// startStopped starts cmd so that the new program stops before its first
// instruction, calls setup with its pid, and lets it run. Tracing
// (PTRACE_TRACEME) makes the child stop with SIGTRAP right after execve
// succeeds; that is the one moment when the process already runs the job's
// uid and program but has not executed any of it, so a cgroup and rlimits
// set then cover everything the job will ever do (a process moved into a
// cgroup later could have forked outside it already). When setup fails the
// process is killed and reaped, and the error returned.
func startStopped(cmd *exec.Cmd, setup func(pid int) error) error {
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

// setRlimits applies a job's file size, open files and (when it runs under
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
func setRlimits(pid int, l limits, uid, gid int) error {
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
			panic(fmt.Sprintf("local scheduler: restore real uid %d: %v", ruid, e))
		}
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, uintptr(rgid), keepID, keepID); e != 0 {
		panic(fmt.Sprintf("local scheduler: restore real gid %d: %v", rgid, e))
	}
}

// chownTree gives the tree at dir to uid:gid without following symlinks.
// It is only called while no process of the tree's previous owner runs.
func chownTree(dir string, uid, gid int) error {
	return filepath.WalkDir(dir, func(p string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
}

// removeFilesOf removes the entries directly under each of dirs (such as
// /tmp and /dev/shm) that belong to uid: what a job left in world-writable
// places, which a later job given the same uid could otherwise read.
func removeFilesOf(uid int, dirs []string) {
	for _, d := range dirs {
		entries, err := os.ReadDir(d)
		if err != nil {
			continue
		}
		for _, e := range entries {
			p := filepath.Join(d, e.Name())
			var st unix.Stat_t
			if err := unix.Lstat(p, &st); err != nil || int(st.Uid) != uid {
				continue
			}
			_ = os.RemoveAll(p)
		}
	}
}
