package slurm

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/app"
)

// Name is the backend name reported by Scheduler.Name.
const Name = "slurm"

var (
	numericID     = regexp.MustCompile(`^[0-9]{1,10}$`)
	jobIDPattern  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
	envKeyPattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// Scheduler submits jobs to Slurm through slurmrestd. Create it with New; it
// is safe for concurrent use.
type Scheduler struct {
	cfg    Config
	client *client
	log    *slog.Logger
	table  jobTable // for StatusMany
}

var _ app.Scheduler = (*Scheduler)(nil)

// New validates cfg and builds the backend. It does not contact slurmrestd.
func New(cfg Config) (*Scheduler, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c, err := newClient(cfg)
	if err != nil {
		return nil, err
	}
	return &Scheduler{cfg: cfg, client: c, log: cfg.Logger.With("scheduler", Name)}, nil
}

// Name implements app.Scheduler.
func (s *Scheduler) Name() string { return Name }

// APIVersion returns the slurmrestd OpenAPI version the backend speaks,
// choosing it first when that has not happened yet (see Config.APIVersion).
// The orchestrator calls it at start so the choice is logged early; a
// slurmrestd that is down then is asked again at the next request.
func (s *Scheduler) APIVersion(ctx context.Context) (string, error) {
	return s.client.apiVersion(ctx)
}

// Close releases idle connections.
func (s *Scheduler) Close() {
	s.client.http.CloseIdleConnections()
}

// Submit implements app.Scheduler.
func (s *Scheduler) Submit(ctx context.Context, req app.SubmitRequest) (app.SchedulerRef, error) {
	body, err := s.submitBody(req)
	if err != nil {
		return app.SchedulerRef{}, fmt.Errorf("submit job %s: %w", req.JobID, err)
	}
	if req.Resubmit {
		ref, found, err := s.findSubmitted(ctx, req)
		if err != nil {
			return app.SchedulerRef{}, fmt.Errorf("submit job %s: look for an earlier submission: %w", req.JobID, err)
		}
		if found {
			s.log.InfoContext(ctx, "slurm already holds the job; not submitted again", "job_id", req.JobID, "slurm_job_id", ref.ID)
			return ref, nil
		}
	}
	if err := s.prepareWorkDir(req.WorkDir); err != nil {
		// The orchestrator may not see the cluster's file system; Slurm
		// then fails the job (JobLaunchFailure) unless the directory exists there.
		s.log.WarnContext(ctx, "create the job's work directory", "job_id", req.JobID, "work_dir", req.WorkDir, "error", err)
	}
	resp, err := s.client.do(ctx, http.MethodPost, "/job/submit", body)
	if err != nil {
		return app.SchedulerRef{}, fmt.Errorf("submit job %s: %w", req.JobID, err)
	}
	if resp.JobID == nil || *resp.JobID <= 0 {
		apiErr := &APIError{Method: http.MethodPost, Path: "/job/submit", StatusCode: http.StatusOK, Errors: resp.Errors}
		return app.SchedulerRef{}, fmt.Errorf("submit job %s: no job id in answer: %w", req.JobID, classify(apiErr))
	}
	id := strconv.FormatInt(*resp.JobID, 10)
	for _, e := range resp.Errors {
		// slurmctld accepted the job; these are notes such as "job is held".
		s.log.WarnContext(ctx, "slurm accepted job with a message", "job_id", req.JobID, "slurm_job_id", id, "message", e.String())
	}
	ref := app.SchedulerRef{ID: id}
	job, err := s.getJob(ctx, id)
	if err != nil {
		// The job exists; report it without a submit time rather than submit it twice.
		s.log.WarnContext(ctx, "read submit time of new slurm job", "job_id", req.JobID, "slurm_job_id", id, "error", err)
		return ref, nil
	}
	if ref.SubmittedAt, err = parseUnixTime(job.SubmitTime); err != nil {
		s.log.WarnContext(ctx, "decode submit time of new slurm job", "job_id", req.JobID, "slurm_job_id", id, "error", err)
	}
	s.log.InfoContext(ctx, "job submitted to slurm", "job_id", req.JobID, "slurm_job_id", id)
	return ref, nil
}

// findSubmitted looks among the jobs slurmctld holds for one submitted under
// req's job name (which carries the fleet's job id) since req.NotBefore.
// A job that ended and was purged (MinJobAge) is not found.
func (s *Scheduler) findSubmitted(ctx context.Context, req app.SubmitRequest) (app.SchedulerRef, bool, error) {
	resp, err := s.client.do(ctx, http.MethodGet, "/jobs", nil)
	if err != nil {
		return app.SchedulerRef{}, false, err
	}
	name := jobName(req)
	notBefore := req.NotBefore.Add(-time.Minute) // clock skew between us and slurmctld
	var best app.SchedulerRef
	for _, j := range resp.Jobs {
		if j.Name != name {
			continue
		}
		submitted, err := parseUnixTime(j.SubmitTime)
		if err != nil || (!req.NotBefore.IsZero() && submitted.Before(notBefore)) {
			continue
		}
		if best.ID == "" || submitted.Before(best.SubmittedAt) {
			best = app.SchedulerRef{ID: strconv.FormatInt(j.JobID, 10), SubmittedAt: submitted}
		}
	}
	return best, best.ID != "", nil
}

// jobName is the Slurm job name of req: its name and the fleet's job id.
func jobName(req app.SubmitRequest) string {
	name := req.Name
	if name == "" {
		name = "fleet"
	}
	return name + "-" + req.JobID
}

// prepareWorkDir creates the job's work directory when it is missing:
// slurmd neither creates the working directory nor the directory of the
// output files, and fails the launch without them. Running as root, the
// directory is made private to the job user (Config.UserName); otherwise it
// is world-writable with the sticky bit, like /tmp, unless the job user is
// this process's user.
func (s *Scheduler) prepareWorkDir(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	mode := os.FileMode(0o700)
	var owner *user.User
	if s.cfg.UserName != "" {
		if os.Geteuid() == 0 {
			u, err := user.Lookup(s.cfg.UserName)
			if err != nil {
				return fmt.Errorf("look up job user: %w", err)
			}
			owner = u
		} else if me, err := user.Current(); err != nil || me.Username != s.cfg.UserName {
			mode = 0o1777
		}
	}
	if err := os.Mkdir(dir, mode); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil
		}
		return err
	}
	if err := os.Chmod(dir, mode); err != nil { // Mkdir's mode is subject to the umask
		return err
	}
	if owner != nil {
		uid, err1 := strconv.Atoi(owner.Uid)
		gid, err2 := strconv.Atoi(owner.Gid)
		if err := errors.Join(err1, err2); err != nil {
			return fmt.Errorf("ids of job user %s: %w", owner.Username, err)
		}
		return os.Chown(dir, uid, gid)
	}
	return nil
}

// Status implements app.Scheduler.
func (s *Scheduler) Status(ctx context.Context, ref app.SchedulerRef) (app.SchedulerStatus, error) {
	job, err := s.lookup(ctx, ref)
	if err != nil {
		return app.SchedulerStatus{}, fmt.Errorf("status of slurm job %s: %w", ref.ID, err)
	}
	st, err := toStatus(job)
	if err != nil {
		return app.SchedulerStatus{}, fmt.Errorf("status of slurm job %s: %w", ref.ID, err)
	}
	return s.withUsage(ctx, ref, st), nil
}

// Cancel implements app.Scheduler. The job is read first so that a reused
// id is never cancelled; an ended job is left alone.
func (s *Scheduler) Cancel(ctx context.Context, ref app.SchedulerRef) error {
	job, err := s.lookup(ctx, ref)
	if err != nil {
		return fmt.Errorf("cancel slurm job %s: %w", ref.ID, err)
	}
	if st, err := toStatus(job); err == nil && st.Phase.Terminal() {
		return nil
	}
	resp, err := s.client.do(ctx, http.MethodDelete, "/job/"+ref.ID, nil)
	var apiErr *APIError
	if errors.As(err, &apiErr) && (apiErr.HasCode(errInvalidJobID) || apiErr.HasCode(errAlreadyDone)) {
		return nil // ended and purged between the read and the cancel
	}
	if err != nil {
		return fmt.Errorf("cancel slurm job %s: %w", ref.ID, err)
	}
	// v0.0.42 answers HTTP 200 with the outcome per job in "status".
	for _, st := range resp.Status {
		switch st.Error.Code {
		case 0, errInvalidJobID, errAlreadyDone:
		default:
			return fmt.Errorf("cancel slurm job %s: %w", ref.ID, classify(&APIError{Method: http.MethodDelete,
				Path: "/job/" + ref.ID, StatusCode: http.StatusOK,
				Errors: []ErrorEntry{{Code: st.Error.Code, Error: st.Error.Message}}}))
		}
	}
	s.log.InfoContext(ctx, "slurm job cancelled", "slurm_job_id", ref.ID)
	return nil
}

// lookup reads the job of ref and checks its submit time.
func (s *Scheduler) lookup(ctx context.Context, ref app.SchedulerRef) (jobInfo, error) {
	if !numericID.MatchString(ref.ID) {
		return jobInfo{}, fmt.Errorf("id %q is not a slurm job id: %w", ref.ID, app.ErrUnknownJob)
	}
	job, err := s.getJob(ctx, ref.ID)
	if err != nil {
		return jobInfo{}, err
	}
	if !ref.SubmittedAt.IsZero() {
		submitted, err := parseUnixTime(job.SubmitTime)
		if err != nil {
			return jobInfo{}, fmt.Errorf("submit_time: %w", err)
		}
		if submitted.Unix() != ref.SubmittedAt.Unix() {
			return jobInfo{}, fmt.Errorf("id reused: submitted %s, expected %s: %w",
				submitted.Format(time.RFC3339), ref.SubmittedAt.UTC().Format(time.RFC3339), app.ErrUnknownJob)
		}
	}
	return job, nil
}

func (s *Scheduler) getJob(ctx context.Context, id string) (jobInfo, error) {
	resp, err := s.client.do(ctx, http.MethodGet, "/job/"+id, nil)
	if err != nil {
		return jobInfo{}, err
	}
	want, _ := strconv.ParseInt(id, 10, 64)
	for _, j := range resp.Jobs {
		if j.JobID == want {
			return j, nil
		}
	}
	if len(resp.Errors) > 0 {
		return jobInfo{}, classify(&APIError{Method: http.MethodGet, Path: "/job/" + id, StatusCode: http.StatusOK, Errors: resp.Errors})
	}
	return jobInfo{}, fmt.Errorf("job %s not in answer: %w", id, app.ErrUnknownJob)
}

// StreamFile names a job's stdout or stderr file within its working
// directory (the request's WorkDir), for reading the job's output
// (adapters/outputdir): <job id>.out and <job id>.err.
func StreamFile(jobID string, stream app.OutputStream) string {
	switch stream {
	case app.StreamStdout:
		return jobID + ".out"
	case app.StreamStderr:
		return jobID + ".err"
	}
	return ""
}

// submitBody builds the job description of v0.0.40 to v0.0.42, which share
// every field the backend sets: the script inside the job, the environment
// as a list of NAME=value strings (sorted, so a request always produces the
// same body), and limits as {"set": true, "number": N}.
func (s *Scheduler) submitBody(req app.SubmitRequest) (map[string]any, error) {
	if err := validateRequest(req); err != nil {
		return nil, err
	}
	env := make(map[string]string, len(req.Environment)+4)
	env["PATH"] = s.cfg.Path
	for k, v := range req.Environment {
		env[k] = v
	}
	env["FLEET_JOB_ID"] = req.JobID
	env["FLEET_JOB_NAME"] = req.Name
	env["FLEET_WORK_DIR"] = req.WorkDir
	envList := make([]string, 0, len(env))
	for k, v := range env {
		envList = append(envList, k+"="+v)
	}
	slices.Sort(envList)

	job := map[string]any{
		"name":                      jobName(req),
		"script":                    req.Script,
		"current_working_directory": req.WorkDir,
		"environment":               envList,
		"standard_output":           filepath.Join(req.WorkDir, StreamFile(req.JobID, app.StreamStdout)),
		"standard_error":            filepath.Join(req.WorkDir, StreamFile(req.JobID, app.StreamStderr)),
	}
	if req.Walltime > 0 {
		job["time_limit"] = setNumber(int64(math.Ceil(req.Walltime.Minutes())))
	}
	if req.Partition != "" {
		job["partition"] = req.Partition
	}
	if req.Nodes > 0 {
		job["nodes"] = strconv.Itoa(int(req.Nodes))
	}
	if req.CoresPerNode > 0 {
		job["tasks_per_node"] = 1
		job["cpus_per_task"] = req.CoresPerNode
	}
	if req.MemoryMB > 0 {
		job["memory_per_node"] = setNumber(req.MemoryMB)
	}
	if req.GPUsPerNode > 0 {
		job["tres_per_node"] = "gres/gpu:" + strconv.Itoa(int(req.GPUsPerNode))
	}
	if req.Account != "" {
		job["account"] = req.Account
	}
	return map[string]any{"job": job}, nil
}

// setNumber is a number in the {set, infinite, number} form of v0.0.39 on.
func setNumber(n int64) map[string]any {
	return map[string]any{"set": true, "infinite": false, "number": n}
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
	if req.WorkDir == "" || !filepath.IsAbs(req.WorkDir) {
		errs = append(errs, fmt.Errorf("work dir %q must be an absolute path", req.WorkDir))
	}
	if req.Walltime < 0 {
		errs = append(errs, fmt.Errorf("walltime %s must not be negative", req.Walltime))
	}
	if req.Nodes < 0 || req.CoresPerNode < 0 || req.GPUsPerNode < 0 || req.MemoryMB < 0 {
		errs = append(errs, errors.New("resource counts must not be negative"))
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
