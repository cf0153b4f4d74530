package local

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/app"
)

// Name is the backend name reported by Scheduler.Name.
const Name = "local"

// ErrJobExists is returned by Submit for a job id that was already submitted,
// unless the request is a Resubmit: that returns the job held.
var ErrJobExists = errors.New("job already submitted")

// ErrClosed is returned by Submit after Close.
var ErrClosed = errors.New("local scheduler closed")

// ErrNotIsolated is returned by New when jobs cannot be isolated (no
// privilege to switch users, no cgroup to create) and Config.SingleUser is
// not set.
var ErrNotIsolated = errors.New("local scheduler cannot isolate jobs")

// sharedTempDirs are the world-writable directories cleared of a job's
// files when it ends.
var sharedTempDirs = []string{"/tmp", "/var/tmp", "/dev/shm"}

var (
	jobIDPattern  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
	envKeyPattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// Why a running job is being stopped; the first reason wins.
type stopReason int

const (
	stopNone stopReason = iota
	stopCancel
	stopTimeout
	stopShutdown
)

// job is one job known to this process. All fields are guarded by
// Scheduler.mu, except lease, cgroup and limits while the job is starting
// (only its starting goroutine uses them then) and once its script exited
// (only wait uses them then).
type job struct {
	dir  string // the job's own directory, <WorkRoot>/<job id>
	meta string // the scheduler's directory of the job, <WorkRoot>/.state/<job id>
	rec  record
	req  app.SubmitRequest // kept while queued
	cmd  *exec.Cmd         // nil when not started here (queued, or adopted after a restart)
	stop stopReason
	// exited is set once the script's leader process has exited, before it is
	// reaped, so no signal is sent to a process group id that may be reused.
	exited bool
	done   chan struct{} // closed when the outcome is recorded (jobs started here)
	timers []*time.Timer
	lease  *uidLease  // the job's uid while it runs (isolated mode)
	cgroup *jobCgroup // the job's cgroup while it runs, nil without one
	// cgroupName is the name of cgroup, recorded once the job runs.
	cgroupName string
	limits     limits
	// starting is set while the job is being started outside Scheduler.mu
	// (taken from the queue, not running yet); pendingStop is a stop asked
	// for meanwhile, applied once it runs.
	starting    bool
	pendingStop stopReason
}

// Scheduler runs jobs as child processes. Create it with New; it is safe for
// concurrent use. Call Close to stop it.
type Scheduler struct {
	cfg Config
	log *slog.Logger
	// isolated: jobs run under their own uids; cgroups is nil when jobs run
	// without cgroups (single-user mode only).
	isolated bool
	cgroups  *cgroupHost
	// uidMu guards nextUID: jobs are started outside mu.
	uidMu   sync.Mutex
	nextUID int
	// supervisorPath is the executable started as each job's supervisor.
	supervisorPath string

	mu   sync.Mutex
	jobs map[string]*job
	// submitting holds the ids whose files a Submit writes outside mu.
	submitting map[string]bool
	queue      []*job
	running    int
	closed     bool
	wg         sync.WaitGroup
}

var _ app.Scheduler = (*Scheduler)(nil)

// New validates cfg, creates WorkRoot, reloads the jobs recorded there by an
// earlier process (see the package documentation) and starts queued jobs.
//
// Unless cfg.SingleUser is set, New refuses to start (ErrNotIsolated) when
// the process cannot switch users, no cgroup hierarchy can be used, or job
// users cannot reach WorkRoot.
func New(cfg Config) (*Scheduler, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if !cfg.SingleUser {
		// Checked before anything is created: a refused start changes nothing.
		if err := cfg.Privileges.CanIsolate(); err != nil {
			return nil, refuseUnisolated(fmt.Errorf("cannot run jobs under their own users: %w", err))
		}
	}
	if cfg.SupervisorPath != "" {
		fi, err := os.Stat(cfg.SupervisorPath)
		if err != nil {
			return nil, fmt.Errorf("local scheduler config: SupervisorPath: %w", err)
		}
		if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			return nil, fmt.Errorf("local scheduler config: SupervisorPath %s is not an executable file", cfg.SupervisorPath)
		}
	}
	s := &Scheduler{
		cfg:        cfg,
		log:        cfg.Logger.With("scheduler", Name),
		jobs:       make(map[string]*job),
		submitting: make(map[string]bool),
		nextUID:    cfg.UIDs.First,

		supervisorPath: cmp.Or(cfg.SupervisorPath, supervisorExe),
	}
	// The work root is searchable but not listable by job users; the
	// scheduler's own files are in a directory only it can enter.
	rootMode := os.FileMode(0o711)
	if cfg.SingleUser {
		rootMode = 0o700
	}
	if err := os.MkdirAll(cfg.WorkRoot, rootMode); err != nil {
		return nil, fmt.Errorf("create work root: %w", err)
	}
	if err := os.Chmod(cfg.WorkRoot, rootMode); err != nil {
		return nil, fmt.Errorf("chmod work root: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(cfg.WorkRoot, stateRoot), 0o700); err != nil {
		return nil, fmt.Errorf("create state directory: %w", err)
	}
	if err := os.Chmod(filepath.Join(cfg.WorkRoot, stateRoot), 0o700); err != nil {
		return nil, fmt.Errorf("chmod state directory: %w", err)
	}
	if err := s.setUpIsolation(); err != nil {
		return nil, err
	}
	if err := s.reload(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.dispatchLocked()
	s.mu.Unlock()
	return s, nil
}

// setUpIsolation checks that jobs can be isolated and prepares the cgroups
// and uid locks, or, in single-user mode, says that they will not be.
func (s *Scheduler) setUpIsolation() error {
	cfg := s.cfg
	if cfg.SingleUser {
		s.log.Warn("local scheduler runs jobs unisolated (single-user mode): jobs run as the service's own user and can read its files and memory",
			"uid", os.Geteuid())
		cg, err := detectCgroups(cfg.CgroupRoot, cfg.CgroupParent)
		if err != nil {
			s.log.Warn("local scheduler runs jobs without cgroups: a job's processes that leave its process group outlive it, and memory, cores and process count are not limited",
				"error", err)
			return nil
		}
		s.cgroups = cg
		return nil
	}
	refuse := refuseUnisolated
	cg, err := detectCgroups(cfg.CgroupRoot, cfg.CgroupParent)
	if err != nil {
		return refuse(fmt.Errorf("cannot create job cgroups: %w", err))
	}
	if err := checkReachable(cfg.WorkRoot); err != nil {
		return refuse(err)
	}
	if err := os.MkdirAll(cfg.LockDir, 0o700); err != nil {
		return refuse(fmt.Errorf("create uid lock directory: %w", err))
	}
	s.isolated = true
	s.cgroups = cg
	s.log.Info("local scheduler isolates jobs", "uids", cfg.UIDs.String(), "gids", cfg.GIDs.String(),
		"cgroup_version", int(cg.version), "cgroup_parent", cfg.CgroupParent)
	return nil
}

func refuseUnisolated(err error) error {
	return fmt.Errorf("%w: %w; refusing to start (single-user mode runs jobs unisolated, as the service's own user)", ErrNotIsolated, err)
}

// Name implements app.Scheduler.
func (s *Scheduler) Name() string { return Name }

// Submit writes the job's files and queues it; it starts at once when fewer
// than MaxConcurrent jobs run.
func (s *Scheduler) Submit(ctx context.Context, req app.SubmitRequest) (app.SchedulerRef, error) {
	if err := validateRequest(req); err != nil {
		return app.SchedulerRef{}, fmt.Errorf("submit job %s: %w", req.JobID, err)
	}
	if err := ctx.Err(); err != nil {
		return app.SchedulerRef{}, fmt.Errorf("submit job %s: %w", req.JobID, err)
	}
	// The id is reserved under mu; the job's files are written outside
	// it, so that Submits, Status calls and the ends of other jobs do not
	// wait for each other's file system work.
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return app.SchedulerRef{}, fmt.Errorf("submit job %s: %w", req.JobID, ErrClosed)
	}
	if j, ok := s.jobs[req.JobID]; ok {
		s.mu.Unlock()
		if req.Resubmit {
			s.log.InfoContext(ctx, "job already held; not submitted again", "job_id", req.JobID)
			return app.SchedulerRef{ID: req.JobID, SubmittedAt: j.rec.SubmittedAt}, nil
		}
		return app.SchedulerRef{}, fmt.Errorf("submit job %s: %w", req.JobID, ErrJobExists)
	}
	if s.submitting[req.JobID] {
		s.mu.Unlock()
		return app.SchedulerRef{}, fmt.Errorf("submit job %s: %w", req.JobID, ErrJobExists)
	}
	s.submitting[req.JobID] = true
	s.mu.Unlock()
	j, err := s.createJobFiles(req)
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.submitting, req.JobID)
	if err != nil {
		return app.SchedulerRef{}, fmt.Errorf("submit job %s: %w", req.JobID, err)
	}
	// A Close meanwhile leaves the job queued on disk, as it leaves the
	// jobs queued before it: a later process starts it.
	s.jobs[req.JobID] = j
	s.queue = append(s.queue, j)
	s.log.InfoContext(ctx, "job queued", "job_id", req.JobID, "dir", j.dir)
	s.dispatchLocked()
	return app.SchedulerRef{ID: req.JobID, SubmittedAt: j.rec.SubmittedAt}, nil
}

// createJobFiles creates a queued job's directories and files; on error it
// leaves nothing behind.
func (s *Scheduler) createJobFiles(req app.SubmitRequest) (*job, error) {
	dir := filepath.Join(s.cfg.WorkRoot, req.JobID)
	meta := filepath.Join(s.cfg.WorkRoot, stateRoot, req.JobID)
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, ErrJobExists
		}
		return nil, fmt.Errorf("create job dir: %w", err)
	}
	if err := os.Mkdir(meta, 0o700); err != nil {
		_ = os.Remove(dir)
		if errors.Is(err, os.ErrExist) {
			return nil, ErrJobExists
		}
		return nil, fmt.Errorf("create job state dir: %w", err)
	}
	j := &job{
		dir:  dir,
		meta: meta,
		req:  req,
		rec: record{
			JobID:       req.JobID,
			Name:        req.Name,
			State:       StateQueued,
			SubmittedAt: time.Now().UTC().Truncate(time.Microsecond),
		},
	}
	if err := s.writeJobFiles(j); err != nil {
		_ = os.RemoveAll(dir)
		_ = os.RemoveAll(meta)
		return nil, err
	}
	return j, nil
}

// Status implements app.Scheduler.
func (s *Scheduler) Status(_ context.Context, ref app.SchedulerRef) (app.SchedulerStatus, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, err := s.lookupLocked(ref)
	if err != nil {
		return app.SchedulerStatus{}, fmt.Errorf("status of job %s: %w", ref.ID, err)
	}
	if j.cmd == nil && j.rec.State == StateRunning {
		s.checkAdoptedLocked(j)
	}
	return j.rec.status(), nil
}

// Cancel stops a queued or running job and waits, at most until ctx ends,
// for its process group to exit. Cancelling an ended job does nothing.
func (s *Scheduler) Cancel(ctx context.Context, ref app.SchedulerRef) error {
	s.mu.Lock()
	j, err := s.lookupLocked(ref)
	if err != nil {
		s.mu.Unlock()
		return fmt.Errorf("cancel job %s: %w", ref.ID, err)
	}
	switch {
	case j.rec.terminal():
		s.mu.Unlock()
		return nil
	case j.starting:
		// Stopped as soon as it runs.
		if j.pendingStop == stopNone {
			j.pendingStop = stopCancel
		}
		done := j.done
		s.mu.Unlock()
		select {
		case <-done:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("cancel job %s: wait for exit: %w", ref.ID, ctx.Err())
		}
	case j.rec.State == StateQueued:
		s.queue = slices.DeleteFunc(s.queue, func(q *job) bool { return q == j })
		j.rec.State = StateCancelled
		j.rec.Reason = "cancelled while queued"
		j.rec.EndedAt = time.Now().UTC()
		err := s.saveLocked(j)
		s.mu.Unlock()
		if err != nil {
			return fmt.Errorf("cancel job %s: %w", ref.ID, err)
		}
		return nil
	case j.cmd == nil: // running, adopted from an earlier process
		err := s.killAdoptedLocked(j)
		s.mu.Unlock()
		if err != nil {
			return fmt.Errorf("cancel job %s: %w", ref.ID, err)
		}
		return nil
	}
	s.terminateLocked(j, stopCancel)
	done := j.done
	s.mu.Unlock()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("cancel job %s: wait for exit: %w", ref.ID, ctx.Err())
	}
}

// Close stops starting queued jobs, terminates running jobs (they end as
// failed with ErrorCodeLost) and waits for them, at most until ctx ends.
func (s *Scheduler) Close(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	for _, j := range s.jobs {
		switch {
		case j.starting:
			if j.pendingStop == stopNone {
				j.pendingStop = stopShutdown
			}
		case j.cmd != nil && j.rec.State == StateRunning:
			s.terminateLocked(j, stopShutdown)
		}
	}
	s.mu.Unlock()
	waited := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(waited)
	}()
	select {
	case <-waited:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("close local scheduler: %w", ctx.Err())
	}
}

func (s *Scheduler) lookupLocked(ref app.SchedulerRef) (*job, error) {
	j, ok := s.jobs[ref.ID]
	if !ok {
		return nil, app.ErrUnknownJob
	}
	if !ref.SubmittedAt.IsZero() && ref.SubmittedAt.Unix() != j.rec.SubmittedAt.Unix() {
		return nil, fmt.Errorf("submit time %s does not match %s: %w",
			ref.SubmittedAt.UTC().Format(time.RFC3339), j.rec.SubmittedAt.Format(time.RFC3339), app.ErrUnknownJob)
	}
	return j, nil
}

func validateRequest(req app.SubmitRequest) error {
	var errs []error
	if !jobIDPattern.MatchString(req.JobID) {
		errs = append(errs, fmt.Errorf("job id %q must match %s", req.JobID, jobIDPattern))
	}
	if !strings.HasPrefix(req.Script, "#!") {
		errs = append(errs, errors.New("script must begin with #!"))
	}
	if strings.ContainsRune(req.Script, 0) {
		errs = append(errs, errors.New("script contains a NUL byte"))
	}
	if req.Walltime < 0 {
		errs = append(errs, fmt.Errorf("walltime %s must not be negative", req.Walltime))
	}
	if req.WorkDir != "" && !filepath.IsAbs(req.WorkDir) {
		errs = append(errs, fmt.Errorf("work dir %q must be an absolute path", req.WorkDir))
	}
	for k, v := range req.Environment {
		if !envKeyPattern.MatchString(k) {
			errs = append(errs, fmt.Errorf("environment name %q is invalid", k))
		}
		if strings.ContainsRune(v, 0) {
			errs = append(errs, fmt.Errorf("environment value of %s contains a NUL byte", k))
		}
	}
	return errors.Join(errs...)
}

func (s *Scheduler) writeJobFiles(j *job) error {
	if err := os.WriteFile(filepath.Join(j.dir, scriptFile), []byte(j.req.Script), 0o700); err != nil {
		return fmt.Errorf("write script: %w", err)
	}
	// WriteFile applies the umask; the script must be executable by its owner.
	if err := os.Chmod(filepath.Join(j.dir, scriptFile), 0o700); err != nil {
		return fmt.Errorf("chmod script: %w", err)
	}
	if err := writeJSONAtomic(filepath.Join(j.meta, requestFile), j.req, 0o600); err != nil {
		return err
	}
	return s.saveLocked(j)
}

func (s *Scheduler) saveLocked(j *job) error {
	if err := writeJSONAtomic(filepath.Join(j.meta, stateFile), j.rec, 0o600); err != nil {
		s.log.Error("persist job state", "job_id", j.rec.JobID, "error", err)
		return err
	}
	return nil
}

// reload reads the jobs an earlier process left under WorkRoot.
func (s *Scheduler) reload() error {
	if err := s.migrateLegacy(); err != nil {
		return err
	}
	entries, err := os.ReadDir(filepath.Join(s.cfg.WorkRoot, stateRoot))
	if err != nil {
		return fmt.Errorf("read work root: %w", err)
	}
	var queued []*job
	for _, e := range entries {
		if !e.IsDir() || !jobIDPattern.MatchString(e.Name()) {
			continue
		}
		dir := filepath.Join(s.cfg.WorkRoot, e.Name())
		meta := filepath.Join(s.cfg.WorkRoot, stateRoot, e.Name())
		j := &job{dir: dir, meta: meta}
		if err := readJSON(filepath.Join(meta, stateFile), &j.rec); err != nil {
			s.log.Warn("skip job directory without readable state", "dir", meta, "error", err)
			continue
		}
		if j.rec.JobID != e.Name() {
			s.log.Warn("skip job directory with mismatched state", "dir", dir, "job_id", j.rec.JobID)
			continue
		}
		s.jobs[j.rec.JobID] = j
		switch j.rec.State {
		case StateQueued:
			if err := readJSON(filepath.Join(meta, requestFile), &j.req); err != nil {
				j.rec.State = StateLost
				j.rec.ErrorCode = app.ErrorCodeLost
				j.rec.Reason = "queued job's request is unreadable: " + err.Error()
				j.rec.EndedAt = time.Now().UTC()
				_ = s.saveLocked(j)
				continue
			}
			queued = append(queued, j)
		case StateRunning:
			s.checkAdoptedLocked(j)
		}
	}
	sort.SliceStable(queued, func(a, b int) bool {
		return queued[a].rec.SubmittedAt.Before(queued[b].rec.SubmittedAt)
	})
	s.queue = append(s.queue, queued...)
	return nil
}

// migrateLegacy moves state.json and request.json out of job directories
// written by earlier versions (which kept them there) into the scheduler's
// own directory. A file is only taken from a directory the scheduler
// still owns, never from one a job owned.
func (s *Scheduler) migrateLegacy() error {
	entries, err := os.ReadDir(s.cfg.WorkRoot)
	if err != nil {
		return fmt.Errorf("read work root: %w", err)
	}
	for _, e := range entries {
		if !e.IsDir() || !jobIDPattern.MatchString(e.Name()) {
			continue
		}
		dir := filepath.Join(s.cfg.WorkRoot, e.Name())
		meta := filepath.Join(s.cfg.WorkRoot, stateRoot, e.Name())
		if _, err := os.Lstat(filepath.Join(dir, stateFile)); err != nil {
			continue
		}
		if _, err := os.Stat(meta); err == nil {
			continue
		}
		var st syscall.Stat_t
		if err := syscall.Stat(dir, &st); err != nil || int(st.Uid) != os.Geteuid() {
			s.log.Warn("skip job directory not owned by the scheduler", "dir", dir)
			continue
		}
		if err := os.Mkdir(meta, 0o700); err != nil {
			return fmt.Errorf("migrate job %s: %w", e.Name(), err)
		}
		for _, f := range []string{stateFile, requestFile} {
			if err := os.Rename(filepath.Join(dir, f), filepath.Join(meta, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("migrate job %s: %w", e.Name(), err)
			}
		}
		s.log.Info("moved job state out of the job directory", "job_id", e.Name())
	}
	return nil
}

// dispatchLocked starts queued jobs while fewer than MaxConcurrent run.
// Each is started by a goroutine of its own, outside mu (start): a job's
// uid, cgroup, files and process start do not hold up the scheduler.
func (s *Scheduler) dispatchLocked() {
	for !s.closed && s.running < s.cfg.MaxConcurrent && len(s.queue) > 0 {
		j := s.queue[0]
		s.queue = s.queue[1:]
		j.starting = true
		j.done = make(chan struct{})
		s.running++
		s.wg.Add(1)
		go s.start(j)
	}
}

// start starts a job taken from the queue by dispatchLocked, which counted
// it as running.
func (s *Scheduler) start(j *job) {
	defer s.wg.Done()
	script, err := s.prepare(j)
	var cmd *exec.Cmd
	if err == nil {
		// The supervisor starts the script in its cgroup and with its
		// rlimits, and records its exit where a later process finds it.
		cmd, err = s.startSupervisor(j, script)
		closeFiles(script)
	}
	if err != nil {
		s.release(j)
	}
	now := time.Now().UTC()
	s.mu.Lock()
	defer s.mu.Unlock()
	j.starting = false
	if j.lease != nil {
		j.rec.UID, j.rec.GID = j.lease.UID, j.lease.GID
	}
	if j.cgroup != nil {
		j.rec.Cgroup = j.cgroupName
	}
	if err != nil {
		s.running--
		j.rec.State = StateFailed
		j.rec.ErrorCode = app.ErrorCodeSubmit
		j.rec.Reason = "start script: " + err.Error()
		j.rec.EndedAt = now
		_ = s.saveLocked(j)
		close(j.done)
		s.log.Error("job failed to start", "job_id", j.rec.JobID, "error", err)
		s.dispatchLocked()
		return
	}
	j.cmd = cmd
	j.rec.State = StateRunning
	j.rec.StartedAt = now
	j.rec.PID = cmd.Process.Pid
	_ = s.saveLocked(j)
	if wt := j.req.Walltime; wt > 0 {
		j.timers = append(j.timers, time.AfterFunc(wt, func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.terminateLocked(j, stopTimeout)
		}))
	}
	s.log.Info("job started", "job_id", j.rec.JobID, "pid", j.rec.PID, "uid", j.rec.UID, "cgroup", j.rec.Cgroup)
	s.wg.Add(1)
	go s.wait(j)
	if j.pendingStop != stopNone {
		s.terminateLocked(j, j.pendingStop)
	}
}

// jobLimits derives a job's limits from its request and the configuration.
// The local backend runs every node of a job on this host, so cores and
// memory are the request's per-node values times its nodes.
func (s *Scheduler) jobLimits(req app.SubmitRequest) limits {
	nodes := max(int64(req.Nodes), 1)
	l := limits{
		CPUQuotaUS: nodes * max(int64(req.CoresPerNode), 1) * cpuPeriodUS,
		Processes:  s.cfg.MaxProcesses,
		FileSize:   s.cfg.MaxFileSize,
		OpenFiles:  s.cfg.MaxOpenFiles,
	}
	switch {
	case req.MemoryMB > 0:
		l.MemoryBytes = nodes * req.MemoryMB << 20
	case s.cfg.DefaultMemoryMB > 0:
		l.MemoryBytes = nodes * s.cfg.DefaultMemoryMB << 20
	}
	return l
}

// prepare gives the job its uid, cgroup and files and builds its command;
// it runs outside mu, while the job is starting, and leaves j.rec alone
// (start records the uid and cgroup). What it took is released by release.
func (s *Scheduler) prepare(j *job) (*exec.Cmd, error) {
	j.limits = s.jobLimits(j.req)
	if s.isolated {
		s.uidMu.Lock()
		lease, err := leaseUID(s.cfg.UIDs, s.cfg.GIDs, s.cfg.LockDir, &s.nextUID, 0)
		s.uidMu.Unlock()
		if err != nil {
			return nil, err
		}
		j.lease = lease
	}
	if s.cgroups != nil {
		name := j.rec.JobID + "-" + randomHex(4)
		cg, err := s.cgroups.create(name, j.limits)
		if err != nil {
			return nil, err
		}
		j.cgroup, j.cgroupName = cg, name
	}
	return s.command(j)
}

// release removes the job's cgroup (it must be empty), takes its directory
// back from its uid and gives the uid up. It runs outside mu, when only
// the caller uses the job's lease and cgroup: while the job starts, or once
// its script exited.
func (s *Scheduler) release(j *job) {
	if j.cgroup != nil {
		if err := j.cgroup.remove(); err != nil {
			s.log.Warn("remove job cgroup", "job_id", j.rec.JobID, "error", err)
		}
		j.cgroup = nil
	}
	if j.lease != nil {
		// No process of the uid is left: take its directory back so that a
		// later job given the same uid cannot read it, and clear what it
		// left in the shared temporary directories.
		if err := chownTree(j.dir, os.Geteuid(), os.Getegid()); err != nil {
			s.log.Warn("take back job directory", "job_id", j.rec.JobID, "error", err)
		}
		if j.req.WorkDir != "" && j.req.WorkDir != j.dir {
			s.log.Debug("job work directory keeps its files", "job_id", j.rec.JobID, "work_dir", j.req.WorkDir)
		}
		removeFilesOf(j.lease.UID, sharedTempDirs)
		j.lease.release()
		j.lease = nil
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// command builds the exec.Cmd of a job: the script run directly under the
// job's uid, a minimal environment, its own process group, output to files
// in the job directory, which the job's uid owns (mode 0700).
func (s *Scheduler) command(j *job) (*exec.Cmd, error) {
	cmd := exec.Command(filepath.Join(j.dir, scriptFile))
	cmd.Dir = j.dir
	if j.req.WorkDir != "" {
		cmd.Dir = j.req.WorkDir
	}
	cmd.Env = s.environment(j)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := os.Mkdir(filepath.Join(j.dir, tmpDir), 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("create job tmp: %w", err)
	}
	stdin, err := os.Open(os.DevNull)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", os.DevNull, err)
	}
	cmd.Stdin = stdin
	// The job directory is still the scheduler's here (it is handed over
	// below), so nothing in it can be a link planted by a job.
	const outFlags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC | syscall.O_NOFOLLOW
	stdout, err := os.OpenFile(filepath.Join(j.dir, stdoutFile), outFlags, 0o600)
	if err != nil {
		_ = stdin.Close()
		return nil, fmt.Errorf("open stdout: %w", err)
	}
	cmd.Stdout = stdout
	stderr, err := os.OpenFile(filepath.Join(j.dir, stderrFile), outFlags, 0o600)
	if err != nil {
		_ = stdin.Close()
		_ = stdout.Close()
		return nil, fmt.Errorf("open stderr: %w", err)
	}
	cmd.Stderr = stderr
	if j.lease != nil {
		uid, gid := j.lease.UID, j.lease.GID
		// Groups is empty, not nil: the job keeps none of the service's
		// supplementary groups.
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}
		if err := chownTree(j.dir, uid, gid); err != nil {
			closeFiles(cmd)
			return nil, fmt.Errorf("hand the job directory to uid %d: %w", uid, err)
		}
	}
	return cmd, nil
}

// closeFiles closes the parent's copies of the child's stdio files; the
// child keeps its own descriptors.
func closeFiles(cmd *exec.Cmd) {
	for _, f := range []any{cmd.Stdin, cmd.Stdout, cmd.Stderr} {
		if c, ok := f.(*os.File); ok {
			_ = c.Close()
		}
	}
}

func (s *Scheduler) environment(j *job) []string {
	env := map[string]string{
		"PATH":   s.cfg.Path,
		"HOME":   j.dir,
		"LANG":   DefaultLang,
		"TMPDIR": filepath.Join(j.dir, tmpDir),
	}
	if j.lease != nil {
		env["USER"] = "fleet-job-" + strconv.Itoa(j.lease.UID)
		env["LOGNAME"] = env["USER"]
	}
	for k, v := range j.req.Environment {
		env[k] = v
	}
	env["FLEET_JOB_ID"] = j.rec.JobID
	env["FLEET_JOB_NAME"] = j.req.Name
	env["FLEET_JOB_DIR"] = j.dir
	env["FLEET_WORK_DIR"] = j.req.WorkDir
	if j.req.WorkDir == "" {
		env["FLEET_WORK_DIR"] = j.dir
	}
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// terminateLocked sends SIGTERM to every process of the job (its cgroup,
// or its process group without one) and schedules SIGKILL for all of them
// after KillGrace. The first stop reason is kept.
func (s *Scheduler) terminateLocked(j *job, why stopReason) {
	if j.cmd == nil || j.exited || j.stop != stopNone {
		return
	}
	j.stop = why
	pgid := j.cmd.Process.Pid
	cg := j.cgroup
	s.log.Info("terminating job", "job_id", j.rec.JobID, "pgid", pgid, "reason", why.String())
	if err := signalJob(cg, pgid, syscall.SIGTERM); err != nil {
		s.log.Warn("signal job", "job_id", j.rec.JobID, "signal", "TERM", "error", err)
	}
	j.timers = append(j.timers, time.AfterFunc(s.cfg.KillGrace, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if j.exited {
			return
		}
		if err := killJob(cg, pgid); err != nil {
			s.log.Warn("signal job", "job_id", j.rec.JobID, "signal", "KILL", "error", err)
		}
	}))
}

// signalJob sends sig to every process of a job: those in its cgroup, or,
// without a cgroup, those in its process group.
func signalJob(cg *jobCgroup, pgid int, sig syscall.Signal) error {
	if cg != nil {
		return cg.signal(sig)
	}
	if err := syscall.Kill(-pgid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	return nil
}

// killJob kills every process of a job with SIGKILL.
func killJob(cg *jobCgroup, pgid int) error {
	if cg != nil {
		return cg.kill()
	}
	return signalJob(nil, pgid, syscall.SIGKILL)
}

func (r stopReason) String() string {
	switch r {
	case stopCancel:
		return "cancel"
	case stopTimeout:
		return "walltime"
	case stopShutdown:
		return "shutdown"
	}
	return "none"
}

// wait waits for a job's script to exit, kills whatever else of the job
// still runs (in its cgroup: also what left the process group or session),
// and records the outcome.
func (s *Scheduler) wait(j *job) {
	defer s.wg.Done()
	pid := j.cmd.Process.Pid
	// Wait for the exit without reaping, so the process group id cannot be
	// reused before the rest of the group is killed.
	for {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	s.mu.Lock()
	j.exited = true
	cg := j.cgroup
	s.mu.Unlock()
	if err := killJob(cg, pid); err != nil { // leftovers of the script
		s.log.Warn("kill job's remaining processes", "job_id", j.rec.JobID, "error", err)
	}

	waitErr := j.cmd.Wait()
	state := j.cmd.ProcessState
	oom := false
	if cg != nil {
		if err := cg.waitEmpty(0, 10*time.Second); err != nil {
			s.log.Error("job processes survive the kill", "job_id", j.rec.JobID, "error", err)
		}
		oom = cg.oomKilled()
	}
	// The script exited: only this goroutine uses the lease and cgroup.
	s.release(j)
	now := time.Now().UTC()

	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range j.timers {
		t.Stop()
	}
	j.timers = nil
	rec := &j.rec
	// The supervisor's record holds the script's exit and resource use;
	// without one (the supervisor itself was killed) its own exit stands in.
	x, ok := readExit(j.meta)
	if !ok {
		x = exitRecord{EndedAt: now}
		if state != nil {
			code, reason := exitCode(state)
			x.ExitCode, x.Reason = &code, joinReason("job supervisor ended without a record", reason)
		} else {
			x.Reason = "wait for job supervisor: " + waitErr.Error()
		}
	}
	applyExit(rec, x, j.stop, j.req.Walltime, j.limits.MemoryBytes, oom)
	_ = s.saveLocked(j)
	s.log.Info("job ended", "job_id", rec.JobID, "state", rec.State, "exit_code", derefExit(rec.ExitCode))
	s.running--
	j.cmd = nil
	j.req.Environment = nil
	close(j.done)
	s.dispatchLocked()
}

func joinReason(a, b string) string {
	if b == "" {
		return a
	}
	return a + ": " + b
}

func derefExit(c *int32) any {
	if c == nil {
		return nil
	}
	return *c
}

// adoptedCgroup returns the cgroup of a job started by an earlier process,
// or nil when it ran without one (or this process uses none).
func (s *Scheduler) adoptedCgroup(j *job) *jobCgroup {
	name := j.rec.Cgroup
	if name == "" || s.cgroups == nil || filepath.Base(name) != name || name == "." || name == ".." {
		return nil
	}
	return s.cgroups.open(name)
}

// adoptedAlive reports whether a job started by an earlier process still
// has a process: one in its cgroup, or its leader (the job's supervisor,
// which outlives the script until it has recorded the exit).
func (s *Scheduler) adoptedAlive(j *job) bool {
	if cg := s.adoptedCgroup(j); cg != nil {
		if pids, err := cg.pids(); err == nil && len(pids) > 0 {
			return true
		}
	}
	return processOfJob(j.rec.PID, j.rec.JobID)
}

// checkAdoptedLocked updates a job recorded as running by an earlier
// process: it stays running while a process of it lives; once none does,
// it ends with the outcome its supervisor recorded, or as lost without one.
func (s *Scheduler) checkAdoptedLocked(j *job) {
	if s.adoptedAlive(j) {
		j.rec.Reason = "running; started by an earlier scheduler process"
		return
	}
	oom := false
	if cg := s.adoptedCgroup(j); cg != nil {
		oom = cg.oomKilled()
	}
	s.cleanAdoptedLocked(j)
	if x, ok := readExit(j.meta); ok {
		var req app.SubmitRequest
		_ = readJSON(filepath.Join(j.meta, requestFile), &req)
		applyExit(&j.rec, x, stopNone, req.Walltime, s.jobLimits(req).MemoryBytes, oom)
		j.rec.Reason = joinReason("ended while the scheduler was not running", j.rec.Reason)
		_ = s.saveLocked(j)
		s.log.Info("adopted job ended", "job_id", j.rec.JobID, "state", j.rec.State, "exit_code", derefExit(j.rec.ExitCode))
		return
	}
	j.rec.State = StateLost
	j.rec.ErrorCode = app.ErrorCodeLost
	j.rec.Reason = "process ended while the scheduler was not running; exit code unknown"
	j.rec.EndedAt = time.Now().UTC()
	_ = s.saveLocked(j)
}

func (s *Scheduler) killAdoptedLocked(j *job) error {
	if cg := s.adoptedCgroup(j); cg != nil {
		if err := cg.kill(); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("kill cgroup %s: %w", j.rec.Cgroup, err)
		}
		if err := cg.waitEmpty(0, 10*time.Second); err != nil {
			return err
		}
	} else if processOfJob(j.rec.PID, j.rec.JobID) {
		if err := syscall.Kill(-j.rec.PID, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("kill process group %d: %w", j.rec.PID, err)
		}
	}
	s.cleanAdoptedLocked(j)
	j.rec.State = StateCancelled
	j.rec.Reason = "cancelled; started by an earlier scheduler process, exit code unknown"
	j.rec.EndedAt = time.Now().UTC()
	return s.saveLocked(j)
}

// cleanAdoptedLocked releases what an ended job of an earlier process
// held: its cgroup and, when it ran under its own uid, its directory.
func (s *Scheduler) cleanAdoptedLocked(j *job) {
	if cg := s.adoptedCgroup(j); cg != nil {
		_ = cg.remove()
	}
	if j.rec.UID != 0 {
		if err := chownTree(j.dir, os.Geteuid(), os.Getegid()); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.log.Warn("take back job directory", "job_id", j.rec.JobID, "error", err)
		}
	}
}

// processOfJob reports whether pid is alive and carries the job id in its
// environment (FLEET_JOB_ID=jobID for a script, FLEET_SUPERVISED_JOB_ID for
// its supervisor), which guards against a reused pid.
func processOfJob(pid int, jobID string) bool {
	if pid <= 0 {
		return false
	}
	data, err := os.ReadFile(filepath.Join("/proc", fmt.Sprint(pid), "environ"))
	if err != nil {
		return false
	}
	for _, kv := range strings.Split(string(data), "\x00") {
		if kv == "FLEET_JOB_ID="+jobID || kv == supervisorEnv+"="+jobID {
			return true
		}
	}
	return false
}
