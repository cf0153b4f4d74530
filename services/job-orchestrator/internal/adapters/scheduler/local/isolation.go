package local

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

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
