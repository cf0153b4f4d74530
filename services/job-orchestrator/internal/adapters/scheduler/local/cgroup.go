package local

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/adapters/scheduler/local/jobsupervisor"
)

// cgroupVersion is the cgroup hierarchy the backend uses.
type cgroupVersion int

const (
	cgroupV1 cgroupVersion = 1
	cgroupV2 cgroupVersion = 2
)

// v1Controllers are the cgroup v1 hierarchies a job joins: freezer stops
// every process for the kill, pids bounds the process count, memory and cpu
// enforce the request's memory and cores.
var v1Controllers = []string{"freezer", "pids", "memory", "cpu"}

// v2Controllers must be available in a cgroup v2 hierarchy for it to be used.
var v2Controllers = []string{"cpu", "memory", "pids"}

// cgroupHost is the cgroup layout found under Config.CgroupRoot: the
// directory of the backend's parent cgroup in each hierarchy.
type cgroupHost struct {
	version cgroupVersion
	// parents maps a v1 controller to <mount>/<CgroupParent>; for v2 the
	// single key "" maps to <mount>/<CgroupParent>.
	parents map[string]string
}

// detectCgroups finds a usable hierarchy under root and creates the parent
// cgroup in it. A cgroup v2 hierarchy is used when it offers the cpu, memory
// and pids controllers (at root itself or at root/unified), else the v1
// hierarchies root/<controller>.
func detectCgroups(root, parent string) (*cgroupHost, error) {
	for _, mount := range []string{root, filepath.Join(root, "unified")} {
		data, err := os.ReadFile(filepath.Join(mount, "cgroup.controllers"))
		if err != nil {
			continue
		}
		have := strings.Fields(string(data))
		if !containsAll(have, v2Controllers) {
			continue
		}
		return newCgroupV2(mount, parent)
	}
	h := &cgroupHost{version: cgroupV1, parents: map[string]string{}}
	var missing []string
	for _, c := range v1Controllers {
		mount := findV1Mount(root, c)
		if mount == "" {
			missing = append(missing, c)
			continue
		}
		h.parents[c] = filepath.Join(mount, parent)
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("no cgroup v2 hierarchy with %s under %s, and no cgroup v1 hierarchy for %s",
			strings.Join(v2Controllers, ", "), root, strings.Join(missing, ", "))
	}
	for _, c := range v1Controllers {
		if err := os.MkdirAll(h.parents[c], 0o755); err != nil {
			return nil, fmt.Errorf("create cgroup %s: %w", h.parents[c], err)
		}
	}
	// A probe child proves that job cgroups can be created (a read-only or
	// undelegated hierarchy fails here, not at the first job).
	probe := "probe-" + strconv.Itoa(os.Getpid())
	for _, c := range v1Controllers {
		dir := filepath.Join(h.parents[c], probe)
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("create cgroup %s: %w", dir, err)
		}
		_ = os.Remove(dir)
	}
	return h, nil
}

func newCgroupV2(mount, parent string) (*cgroupHost, error) {
	dir := filepath.Join(mount, parent)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create cgroup %s: %w", dir, err)
	}
	enable := "+" + strings.Join(v2Controllers, " +")
	for _, d := range []string{mount, dir} {
		if err := os.WriteFile(filepath.Join(d, "cgroup.subtree_control"), []byte(enable), 0); err != nil {
			return nil, fmt.Errorf("enable %s in %s: %w", enable, d, err)
		}
	}
	return &cgroupHost{version: cgroupV2, parents: map[string]string{"": dir}}, nil
}

// findV1Mount returns root/<dir> where dir names controller c, alone or
// combined ("cpu,cpuacct"), or "".
func findV1Mount(root, c string) string {
	if fi, err := os.Stat(filepath.Join(root, c, "cgroup.procs")); err == nil && fi.Mode().IsRegular() {
		return filepath.Join(root, c)
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		return ""
	}
	for _, e := range entries {
		if !e.IsDir() || !strings.Contains(e.Name(), ",") {
			continue
		}
		if containsAll(strings.Split(e.Name(), ","), []string{c}) {
			return filepath.Join(root, e.Name())
		}
	}
	return ""
}

func containsAll(have, want []string) bool {
	for _, w := range want {
		found := false
		for _, h := range have {
			if h == w {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// limits is what a job's cgroup and rlimits enforce; zero means no limit.
type limits = jobsupervisor.Limits

const cpuPeriodUS = 100000

// jobCgroup is one job's cgroup in every hierarchy the backend uses.
type jobCgroup struct {
	version cgroupVersion
	// dirs maps a v1 controller (or "" for v2) to the job's directory.
	dirs map[string]string
}

// create makes the job's cgroup named name and writes its limits.
func (h *cgroupHost) create(name string, l limits) (*jobCgroup, error) {
	cg := h.open(name)
	for _, dir := range cg.dirs {
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			_ = cg.remove()
			return nil, fmt.Errorf("create cgroup %s: %w", dir, err)
		}
	}
	if err := cg.setLimits(l); err != nil {
		_ = cg.remove()
		return nil, err
	}
	return cg, nil
}

// open returns the job cgroup called name without creating it (a job
// adopted from an earlier process).
func (h *cgroupHost) open(name string) *jobCgroup {
	cg := &jobCgroup{version: h.version, dirs: map[string]string{}}
	for c, p := range h.parents {
		cg.dirs[c] = filepath.Join(p, name)
	}
	return cg
}

func (cg *jobCgroup) setLimits(l limits) error {
	type setting struct{ ctrl, file, value string }
	var set []setting
	if cg.version == cgroupV1 {
		if l.CPUQuotaUS > 0 {
			set = append(set, setting{"cpu", "cpu.cfs_period_us", strconv.Itoa(cpuPeriodUS)},
				setting{"cpu", "cpu.cfs_quota_us", strconv.FormatInt(l.CPUQuotaUS, 10)})
		}
		if l.MemoryBytes > 0 {
			v := strconv.FormatInt(l.MemoryBytes, 10)
			set = append(set, setting{"memory", "memory.limit_in_bytes", v})
			if _, err := os.Stat(filepath.Join(cg.dirs["memory"], "memory.memsw.limit_in_bytes")); err == nil {
				// Without it a job over its limit swaps instead of failing.
				set = append(set, setting{"memory", "memory.memsw.limit_in_bytes", v})
			}
		}
		if l.Processes > 0 {
			set = append(set, setting{"pids", "pids.max", strconv.FormatInt(l.Processes, 10)})
		}
	} else {
		if l.CPUQuotaUS > 0 {
			set = append(set, setting{"", "cpu.max", fmt.Sprintf("%d %d", l.CPUQuotaUS, cpuPeriodUS)})
		}
		if l.MemoryBytes > 0 {
			set = append(set, setting{"", "memory.max", strconv.FormatInt(l.MemoryBytes, 10)})
			if _, err := os.Stat(filepath.Join(cg.dirs[""], "memory.swap.max")); err == nil {
				set = append(set, setting{"", "memory.swap.max", "0"})
			}
		}
		if l.Processes > 0 {
			set = append(set, setting{"", "pids.max", strconv.FormatInt(l.Processes, 10)})
		}
	}
	for _, s := range set {
		p := filepath.Join(cg.dirs[s.ctrl], s.file)
		if err := os.WriteFile(p, []byte(s.value), 0); err != nil {
			return fmt.Errorf("set %s to %s: %w", p, s.value, err)
		}
	}
	return nil
}

// add moves process pid into the job's cgroup in every hierarchy.
func (cg *jobCgroup) add(pid int) error {
	for _, dir := range cg.dirs {
		p := filepath.Join(dir, "cgroup.procs")
		if err := os.WriteFile(p, []byte(strconv.Itoa(pid)), 0); err != nil {
			return fmt.Errorf("add process %d to %s: %w", pid, dir, err)
		}
	}
	return nil
}

// procsDir is the directory whose cgroup.procs lists every process of the
// job (every process joins every hierarchy, so any one would do).
func (cg *jobCgroup) procsDir() string {
	if cg.version == cgroupV2 {
		return cg.dirs[""]
	}
	return cg.dirs["freezer"]
}

// pids lists the processes in the job's cgroup.
func (cg *jobCgroup) pids() ([]int, error) {
	data, err := os.ReadFile(filepath.Join(cg.procsDir(), "cgroup.procs"))
	if err != nil {
		return nil, err
	}
	var out []int
	for _, f := range strings.Fields(string(data)) {
		if n, err := strconv.Atoi(f); err == nil {
			out = append(out, n)
		}
	}
	return out, nil
}

// signal sends sig to every process in the cgroup.
func (cg *jobCgroup) signal(sig syscall.Signal) error {
	pids, err := cg.pids()
	if err != nil {
		return err
	}
	for _, p := range pids {
		if err := syscall.Kill(p, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("signal process %d: %w", p, err)
		}
	}
	return nil
}

// kill kills every process of the job, including those that left its
// process group or session: the cgroup is frozen so nothing can fork while
// its members are listed and sent SIGKILL, then thawed so they die.
func (cg *jobCgroup) kill() error {
	if cg.version == cgroupV2 {
		if err := os.WriteFile(filepath.Join(cg.dirs[""], "cgroup.kill"), []byte("1"), 0); err == nil {
			return nil
		}
	}
	freezeErr := cg.freeze(true)
	killErr := cg.signal(syscall.SIGKILL)
	thawErr := cg.freeze(false)
	return errors.Join(freezeErr, killErr, thawErr)
}

func (cg *jobCgroup) freeze(frozen bool) error {
	var file, value, want string
	if cg.version == cgroupV1 {
		file, value, want = "freezer.state", "THAWED", "THAWED"
		if frozen {
			value, want = "FROZEN", "FROZEN"
		}
	} else {
		file, value, want = "cgroup.freeze", "0", "frozen 0"
		if frozen {
			value, want = "1", "frozen 1"
		}
	}
	dir := cg.procsDir()
	if err := os.WriteFile(filepath.Join(dir, file), []byte(value), 0); err != nil {
		return fmt.Errorf("write %s to %s: %w", value, filepath.Join(dir, file), err)
	}
	// Freezing completes asynchronously; wait for it (bounded).
	deadline := time.Now().Add(2 * time.Second)
	for {
		var got string
		if cg.version == cgroupV1 {
			b, err := os.ReadFile(filepath.Join(dir, file))
			if err != nil {
				return err
			}
			got = strings.TrimSpace(string(b))
		} else {
			b, err := os.ReadFile(filepath.Join(dir, "cgroup.events"))
			if err != nil {
				return err
			}
			for _, line := range strings.Split(string(b), "\n") {
				if strings.HasPrefix(line, "frozen ") {
					got = line
				}
			}
		}
		if got == want || !frozen {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroup %s did not freeze (state %q)", dir, got)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitEmpty waits until no process other than except (the job's leader,
// an unreaped zombie of ours) is left in the cgroup.
func (cg *jobCgroup) waitEmpty(except int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		pids, err := cg.pids()
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return err
		}
		left := 0
		for _, p := range pids {
			if p != except {
				left++
			}
		}
		if left == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroup %s still has %d processes", cg.procsDir(), left)
		}
		_ = cg.signal(syscall.SIGKILL)
		time.Sleep(10 * time.Millisecond)
	}
}

// oomKilled reports whether the kernel killed a process of the job for
// exceeding its memory limit (cgroup v1 memory.oom_control oom_kill, or
// memory.failcnt when the kernel has no such counter; v2 memory.events).
func (cg *jobCgroup) oomKilled() bool {
	if cg.version == cgroupV2 {
		return counter(filepath.Join(cg.dirs[""], "memory.events"), "oom_kill") > 0
	}
	dir := cg.dirs["memory"]
	if data, err := os.ReadFile(filepath.Join(dir, "memory.oom_control")); err == nil && bytes.Contains(data, []byte("oom_kill ")) {
		return counter(filepath.Join(dir, "memory.oom_control"), "oom_kill") > 0
	}
	b, err := os.ReadFile(filepath.Join(dir, "memory.failcnt"))
	if err != nil {
		return false
	}
	n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return n > 0
}

// counter reads "name value" from a flat keyed cgroup file.
func counter(path, name string) int64 {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(line, " ")
		if ok && k == name {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

// remove deletes the job's cgroup directories; they must be empty.
func (cg *jobCgroup) remove() error {
	var errs []error
	for _, dir := range cg.dirs {
		if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove cgroup %s: %w", dir, err))
		}
	}
	return errors.Join(errs...)
}
