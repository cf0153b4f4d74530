package local

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
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
// Scheduler.mu.
type job struct {
	dir  string
	rec  record
	req  app.SubmitRequest // kept while queued
	cmd  *exec.Cmd         // nil when not started here (queued, or adopted after a restart)
	stop stopReason
	// exited is set once the script's leader process has exited, before it is
	// reaped, so no signal is sent to a process group id that may be reused.
	exited bool
	done   chan struct{} // closed when the outcome is recorded (jobs started here)
	timers []*time.Timer
}

// Scheduler runs jobs as child processes. Create it with New; it is safe for
// concurrent use. Call Close to stop it.
type Scheduler struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	jobs    map[string]*job
	queue   []*job
	running int
	closed  bool
	wg      sync.WaitGroup
}

var _ app.Scheduler = (*Scheduler)(nil)

// New validates cfg, creates WorkRoot, reloads the jobs recorded there by an
// earlier process (see the package documentation) and starts queued jobs.
func New(cfg Config) (*Scheduler, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.WorkRoot, 0o700); err != nil {
		return nil, fmt.Errorf("create work root: %w", err)
	}
	s := &Scheduler{
		cfg:  cfg,
		log:  cfg.Logger.With("scheduler", Name),
		jobs: make(map[string]*job),
	}
	if err := s.reload(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.dispatchLocked()
	s.mu.Unlock()
	return s, nil
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
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return app.SchedulerRef{}, fmt.Errorf("submit job %s: %w", req.JobID, ErrClosed)
	}
	if j, ok := s.jobs[req.JobID]; ok {
		if req.Resubmit {
			s.log.InfoContext(ctx, "job already held; not submitted again", "job_id", req.JobID)
			return app.SchedulerRef{ID: req.JobID, SubmittedAt: j.rec.SubmittedAt}, nil
		}
		return app.SchedulerRef{}, fmt.Errorf("submit job %s: %w", req.JobID, ErrJobExists)
	}
	dir := filepath.Join(s.cfg.WorkRoot, req.JobID)
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return app.SchedulerRef{}, fmt.Errorf("submit job %s: %w", req.JobID, ErrJobExists)
		}
		return app.SchedulerRef{}, fmt.Errorf("submit job %s: create job dir: %w", req.JobID, err)
	}
	j := &job{
		dir: dir,
		req: req,
		rec: record{
			JobID:       req.JobID,
			Name:        req.Name,
			State:       StateQueued,
			SubmittedAt: time.Now().UTC().Truncate(time.Microsecond),
		},
	}
	if err := s.writeJobFiles(j); err != nil {
		_ = os.RemoveAll(dir)
		return app.SchedulerRef{}, fmt.Errorf("submit job %s: %w", req.JobID, err)
	}
	s.jobs[req.JobID] = j
	s.queue = append(s.queue, j)
	s.log.InfoContext(ctx, "job queued", "job_id", req.JobID, "dir", dir)
	s.dispatchLocked()
	return app.SchedulerRef{ID: req.JobID, SubmittedAt: j.rec.SubmittedAt}, nil
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
		if j.cmd != nil && j.rec.State == StateRunning {
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
	if err := writeJSONAtomic(filepath.Join(j.dir, requestFile), j.req, 0o600); err != nil {
		return err
	}
	return s.saveLocked(j)
}

func (s *Scheduler) saveLocked(j *job) error {
	if err := writeJSONAtomic(filepath.Join(j.dir, stateFile), j.rec, 0o600); err != nil {
		s.log.Error("persist job state", "job_id", j.rec.JobID, "error", err)
		return err
	}
	return nil
}

// reload reads the jobs an earlier process left under WorkRoot.
func (s *Scheduler) reload() error {
	entries, err := os.ReadDir(s.cfg.WorkRoot)
	if err != nil {
		return fmt.Errorf("read work root: %w", err)
	}
	var queued []*job
	for _, e := range entries {
		if !e.IsDir() || !jobIDPattern.MatchString(e.Name()) {
			continue
		}
		dir := filepath.Join(s.cfg.WorkRoot, e.Name())
		j := &job{dir: dir}
		if err := readJSON(filepath.Join(dir, stateFile), &j.rec); err != nil {
			s.log.Warn("skip job directory without readable state", "dir", dir, "error", err)
			continue
		}
		if j.rec.JobID != e.Name() {
			s.log.Warn("skip job directory with mismatched state", "dir", dir, "job_id", j.rec.JobID)
			continue
		}
		s.jobs[j.rec.JobID] = j
		switch j.rec.State {
		case StateQueued:
			if err := readJSON(filepath.Join(dir, requestFile), &j.req); err != nil {
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

// dispatchLocked starts queued jobs while fewer than MaxConcurrent run.
func (s *Scheduler) dispatchLocked() {
	for !s.closed && s.running < s.cfg.MaxConcurrent && len(s.queue) > 0 {
		j := s.queue[0]
		s.queue = s.queue[1:]
		s.startLocked(j)
	}
}

func (s *Scheduler) startLocked(j *job) {
	cmd, err := s.command(j)
	if err == nil {
		err = cmd.Start()
		closeFiles(cmd)
	}
	now := time.Now().UTC()
	if err != nil {
		j.rec.State = StateFailed
		j.rec.ErrorCode = app.ErrorCodeSubmit
		j.rec.Reason = "start script: " + err.Error()
		j.rec.EndedAt = now
		_ = s.saveLocked(j)
		s.log.Error("job failed to start", "job_id", j.rec.JobID, "error", err)
		return
	}
	j.cmd = cmd
	j.done = make(chan struct{})
	j.rec.State = StateRunning
	j.rec.StartedAt = now
	j.rec.PID = cmd.Process.Pid
	_ = s.saveLocked(j)
	s.running++
	if wt := j.req.Walltime; wt > 0 {
		j.timers = append(j.timers, time.AfterFunc(wt, func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.terminateLocked(j, stopTimeout)
		}))
	}
	s.log.Info("job started", "job_id", j.rec.JobID, "pid", j.rec.PID)
	s.wg.Add(1)
	go s.wait(j)
}

// command builds the exec.Cmd of a job: the script run directly, a minimal
// environment, its own process group, output to files in the job directory.
func (s *Scheduler) command(j *job) (*exec.Cmd, error) {
	cmd := exec.Command(filepath.Join(j.dir, scriptFile))
	cmd.Dir = j.dir
	if j.req.WorkDir != "" {
		cmd.Dir = j.req.WorkDir
	}
	cmd.Env = s.environment(j)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdin, err := os.Open(os.DevNull)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", os.DevNull, err)
	}
	cmd.Stdin = stdin
	stdout, err := os.OpenFile(filepath.Join(j.dir, stdoutFile), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		_ = stdin.Close()
		return nil, fmt.Errorf("open stdout: %w", err)
	}
	cmd.Stdout = stdout
	stderr, err := os.OpenFile(filepath.Join(j.dir, stderrFile), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		_ = stdin.Close()
		_ = stdout.Close()
		return nil, fmt.Errorf("open stderr: %w", err)
	}
	cmd.Stderr = stderr
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
		"PATH": s.cfg.Path,
		"HOME": j.dir,
		"LANG": DefaultLang,
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

// terminateLocked sends SIGTERM to the job's process group and schedules
// SIGKILL after KillGrace. The first stop reason is kept.
func (s *Scheduler) terminateLocked(j *job, why stopReason) {
	if j.cmd == nil || j.exited || j.stop != stopNone {
		return
	}
	j.stop = why
	pgid := j.cmd.Process.Pid
	s.log.Info("terminating job", "job_id", j.rec.JobID, "pgid", pgid, "reason", why.String())
	if err := syscall.Kill(-pgid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		s.log.Warn("signal job", "job_id", j.rec.JobID, "signal", "TERM", "error", err)
	}
	j.timers = append(j.timers, time.AfterFunc(s.cfg.KillGrace, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if j.exited {
			return
		}
		if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			s.log.Warn("signal job", "job_id", j.rec.JobID, "signal", "KILL", "error", err)
		}
	}))
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

// wait waits for a job's script to exit, kills what it left in its process
// group, and records the outcome.
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
	_ = syscall.Kill(-pid, syscall.SIGKILL) // leftovers of the script; ESRCH when none
	s.mu.Unlock()

	waitErr := j.cmd.Wait()
	state := j.cmd.ProcessState
	now := time.Now().UTC()

	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range j.timers {
		t.Stop()
	}
	j.timers = nil
	rec := &j.rec
	rec.EndedAt = now
	if state != nil {
		code, reason := exitCode(state)
		rec.ExitCode = &code
		rec.Reason = reason
		if ru, ok := state.SysUsage().(*syscall.Rusage); ok && ru != nil {
			cpu := ru.Utime.Nano() + ru.Stime.Nano()
			rss := ru.Maxrss * 1024
			rec.CPUTimeNS = &cpu
			rec.MaxRSSBytes = &rss
		}
	} else {
		rec.Reason = "wait for script: " + waitErr.Error()
	}
	switch {
	case j.stop == stopCancel:
		rec.State = StateCancelled
		rec.Reason = joinReason("cancelled", rec.Reason)
	case j.stop == stopTimeout:
		rec.State = StateTimeout
		rec.ErrorCode = app.ErrorCodeTimeout
		rec.Reason = joinReason("walltime "+j.req.Walltime.String()+" exceeded", rec.Reason)
	case j.stop == stopShutdown:
		rec.State = StateLost
		rec.ErrorCode = app.ErrorCodeLost
		rec.Reason = joinReason("terminated at scheduler shutdown", rec.Reason)
	case rec.ExitCode != nil && *rec.ExitCode == 0:
		rec.State = StateCompleted
	default:
		rec.State = StateFailed
		rec.ErrorCode = app.ErrorCodeNonZeroExit
	}
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

// exitCode returns the exit status, or 128+signal for a process killed by a
// signal (as shells report it), with a reason text for signals.
func exitCode(ps *os.ProcessState) (int32, string) {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return int32(128 + int(ws.Signal())), "killed by signal " + unix.SignalName(ws.Signal())
	}
	return int32(ps.ExitCode()), ""
}

// checkAdoptedLocked updates a job recorded as running by an earlier
// process: it stays running while its process lives, else it is lost.
func (s *Scheduler) checkAdoptedLocked(j *job) {
	if processOfJob(j.rec.PID, j.rec.JobID) {
		j.rec.Reason = "running; started by an earlier scheduler process"
		return
	}
	j.rec.State = StateLost
	j.rec.ErrorCode = app.ErrorCodeLost
	j.rec.Reason = "process ended while the scheduler was not running; exit code unknown"
	j.rec.EndedAt = time.Now().UTC()
	_ = s.saveLocked(j)
}

func (s *Scheduler) killAdoptedLocked(j *job) error {
	if processOfJob(j.rec.PID, j.rec.JobID) {
		if err := syscall.Kill(-j.rec.PID, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("kill process group %d: %w", j.rec.PID, err)
		}
	}
	j.rec.State = StateCancelled
	j.rec.Reason = "cancelled; started by an earlier scheduler process, exit code unknown"
	j.rec.EndedAt = time.Now().UTC()
	return s.saveLocked(j)
}

// processOfJob reports whether pid is alive and carries FLEET_JOB_ID=jobID
// in its environment, which guards against a reused pid.
func processOfJob(pid int, jobID string) bool {
	if pid <= 0 {
		return false
	}
	data, err := os.ReadFile(filepath.Join("/proc", fmt.Sprint(pid), "environ"))
	if err != nil {
		return false
	}
	want := "FLEET_JOB_ID=" + jobID
	for _, kv := range strings.Split(string(data), "\x00") {
		if kv == want {
			return true
		}
	}
	return false
}
