package local

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultKillGrace    = 10 * time.Second
	DefaultPath         = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	DefaultLang         = "C.UTF-8"
	DefaultFirstUID     = 61000
	DefaultLastUID      = 61999
	DefaultCgroupRoot   = "/sys/fs/cgroup"
	DefaultCgroupParent = "fleet-local"
	DefaultLockDir      = "/run/lock/fleet-local-jobs"
	DefaultMaxProcesses = 1024
	DefaultMaxOpenFiles = 1024
	DefaultMaxFileSize  = 16 << 30 // bytes
)

// IDRange is an inclusive range of user or group ids.
type IDRange struct {
	First, Last int
}

// Size is the number of ids in the range.
func (r IDRange) Size() int { return r.Last - r.First + 1 }

func (r IDRange) String() string { return fmt.Sprintf("%d-%d", r.First, r.Last) }

// UnmarshalText parses first-last, for example 61000-61999, with
// 1 <= first <= last; it reads LOCAL_JOB_UID_RANGE and LOCAL_JOB_GID_RANGE.
func (r *IDRange) UnmarshalText(text []byte) error {
	a, b, ok := strings.Cut(string(text), "-")
	first, err1 := strconv.Atoi(strings.TrimSpace(a))
	last, err2 := strconv.Atoi(strings.TrimSpace(b))
	if !ok || err1 != nil || err2 != nil || first < 1 || last < first {
		return errors.New("want first-last, for example 61000-61999")
	}
	*r = IDRange{First: first, Last: last}
	return nil
}

// Config configures the local backend. The env tags name the variables
// the job-orchestrator reads them from (LOCAL_JOB_MAX_FILE_SIZE_MB, in
// megabytes, sets MaxFileSize).
type Config struct {
	// WorkRoot holds one directory per job. Required; created if missing.
	// Job users must be able to reach it: every directory above it needs
	// search permission for others (mode o+x), which New checks.
	WorkRoot string
	// Logger receives the backend's logs; slog.Default() when nil.
	Logger *slog.Logger
	// MaxConcurrent is the number of jobs that run at once; further jobs
	// wait as queued. Default: the number of CPUs. At most the size of
	// UIDs.
	MaxConcurrent int
	// KillGrace is how long a job may take to exit after SIGTERM (walltime
	// reached, cancel, shutdown) before every process of it gets SIGKILL.
	KillGrace time.Duration
	// Path is the PATH a job starts with (a job's environment may override
	// it). Default DefaultPath.
	Path string
	// SupervisorPath is the executable started as each job's supervisor:
	// the one built from cmd/job-supervisor, which starts in a few
	// milliseconds. Default: this process's own executable again, which
	// serves as well but first runs the init of every package it links.
	// It runs as the service's user: it must be as trusted as the service.
	SupervisorPath string `env:"LOCAL_JOB_SUPERVISOR"`

	// SingleUser runs jobs as the service's own user, without a cgroup
	// when none can be created: no isolation between jobs or from the
	// service. Without it, New refuses to start where jobs cannot be
	// isolated.
	SingleUser bool `env:"LOCAL_SINGLE_USER"`
	// UIDs is the range of user ids given to jobs, one per running job
	// and never the service's own. Default DefaultFirstUID-DefaultLastUID.
	UIDs IDRange `env:"LOCAL_JOB_UID_RANGE"`
	// GIDs is the range of group ids, paired with UIDs by position (the
	// n-th uid runs with the n-th gid). Default: the same numbers as UIDs.
	GIDs IDRange `env:"LOCAL_JOB_GID_RANGE"`
	// CgroupRoot is where the cgroup hierarchies are mounted. Default
	// DefaultCgroupRoot.
	CgroupRoot string
	// CgroupParent is the cgroup, below each hierarchy's root, under which
	// every job gets its own. Default DefaultCgroupParent.
	CgroupParent string `env:"LOCAL_CGROUP_PARENT"`
	// LockDir holds one lock file per job uid, so that two schedulers on
	// one host never run jobs under the same uid. Default DefaultLockDir.
	LockDir string
	// DefaultMemoryMB is the memory limit of a job that asks for none
	// (memory_mb 0); 0 leaves such a job without a memory limit.
	DefaultMemoryMB int64 `env:"LOCAL_JOB_DEFAULT_MEMORY_MB"`
	// MaxProcesses bounds the processes (and threads) of one job. Default
	// DefaultMaxProcesses.
	MaxProcesses int64 `env:"LOCAL_JOB_MAX_PROCESSES"`
	// MaxOpenFiles is a job's RLIMIT_NOFILE. Default DefaultMaxOpenFiles.
	MaxOpenFiles uint64 `env:"LOCAL_JOB_MAX_OPEN_FILES"`
	// MaxFileSize is a job's RLIMIT_FSIZE in bytes, the largest file it
	// can write. Default DefaultMaxFileSize.
	MaxFileSize int64
	// Privileges reports whether the process can start jobs under other
	// users; nil checks the process's own uid and capabilities.
	Privileges Privileges
}

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.MaxConcurrent == 0 {
		c.MaxConcurrent = runtime.NumCPU()
	}
	if c.KillGrace == 0 {
		c.KillGrace = DefaultKillGrace
	}
	if c.Path == "" {
		c.Path = DefaultPath
	}
	if c.UIDs == (IDRange{}) {
		c.UIDs = IDRange{First: DefaultFirstUID, Last: DefaultLastUID}
	}
	if c.GIDs == (IDRange{}) {
		c.GIDs = c.UIDs
	}
	if c.CgroupRoot == "" {
		c.CgroupRoot = DefaultCgroupRoot
	}
	if c.CgroupParent == "" {
		c.CgroupParent = DefaultCgroupParent
	}
	if c.LockDir == "" {
		c.LockDir = DefaultLockDir
	}
	if c.MaxProcesses == 0 {
		c.MaxProcesses = DefaultMaxProcesses
	}
	if c.MaxOpenFiles == 0 {
		c.MaxOpenFiles = DefaultMaxOpenFiles
	}
	if c.MaxFileSize == 0 {
		c.MaxFileSize = DefaultMaxFileSize
	}
	if c.Privileges == nil {
		c.Privileges = HostPrivileges{}
	}
	return c
}

// Validate reports every invalid field.
func (c Config) Validate() error {
	var errs []error
	if c.WorkRoot == "" {
		errs = append(errs, errors.New("WorkRoot is required"))
	} else if !filepath.IsAbs(c.WorkRoot) {
		errs = append(errs, fmt.Errorf("WorkRoot %q must be an absolute path", c.WorkRoot))
	}
	if c.MaxConcurrent < 0 {
		errs = append(errs, fmt.Errorf("MaxConcurrent %d must not be negative", c.MaxConcurrent))
	}
	if c.KillGrace < 0 {
		errs = append(errs, fmt.Errorf("KillGrace %s must not be negative", c.KillGrace))
	}
	for _, r := range []struct {
		name string
		ids  IDRange
	}{{"UIDs", c.UIDs}, {"GIDs", c.GIDs}} {
		if r.ids.First < 1 || r.ids.Last < r.ids.First || r.ids.Last > 1<<31-2 {
			errs = append(errs, fmt.Errorf("%s %s: want first-last with 1 <= first <= last < 2^31-1", r.name, r.ids))
		}
	}
	if c.GIDs.Size() != c.UIDs.Size() {
		errs = append(errs, fmt.Errorf("GIDs %s must hold as many ids as UIDs %s", c.GIDs, c.UIDs))
	}
	if !c.SingleUser && c.MaxConcurrent > c.UIDs.Size() {
		errs = append(errs, fmt.Errorf("MaxConcurrent %d exceeds the %d job uids of %s", c.MaxConcurrent, c.UIDs.Size(), c.UIDs))
	}
	if c.CgroupRoot != "" && !filepath.IsAbs(c.CgroupRoot) {
		errs = append(errs, fmt.Errorf("CgroupRoot %q must be an absolute path", c.CgroupRoot))
	}
	if c.CgroupParent != "" && (filepath.IsAbs(c.CgroupParent) || filepath.Clean(c.CgroupParent) != c.CgroupParent ||
		c.CgroupParent == "." || c.CgroupParent == ".." || len(c.CgroupParent) > 2 && c.CgroupParent[:3] == "../") {
		errs = append(errs, fmt.Errorf("CgroupParent %q must be a clean relative path", c.CgroupParent))
	}
	if c.SupervisorPath != "" && !filepath.IsAbs(c.SupervisorPath) {
		errs = append(errs, fmt.Errorf("SupervisorPath %q must be an absolute path", c.SupervisorPath))
	}
	if c.LockDir != "" && !filepath.IsAbs(c.LockDir) {
		errs = append(errs, fmt.Errorf("LockDir %q must be an absolute path", c.LockDir))
	}
	if c.DefaultMemoryMB < 0 {
		errs = append(errs, fmt.Errorf("DefaultMemoryMB %d must not be negative", c.DefaultMemoryMB))
	}
	if c.MaxProcesses < 0 {
		errs = append(errs, fmt.Errorf("MaxProcesses %d must not be negative", c.MaxProcesses))
	}
	if c.MaxFileSize < 0 {
		errs = append(errs, fmt.Errorf("MaxFileSize %d must not be negative", c.MaxFileSize))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("local scheduler config: %w", err)
	}
	return nil
}
