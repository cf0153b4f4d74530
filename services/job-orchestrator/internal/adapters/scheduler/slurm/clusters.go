package slurm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sort"
	"strings"

	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/app"
)

// Clusters routes jobs to one Slurm backend per cluster: each TACC system
// is its own Slurm cluster with its own slurmrestd, token and partitions.
// A job is submitted to the cluster of its system; its SchedulerRef ID is
// "<cluster>:<slurm job id>", so status and cancel reach the same cluster.
// A cluster that cannot be reached fails only its own jobs' calls.
type Clusters struct {
	byName map[string]*Scheduler
	names  []string
	log    *slog.Logger
}

var (
	_ app.Scheduler    = (*Clusters)(nil)
	_ app.BulkStatuser = (*Clusters)(nil)

	clusterNamePattern = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}$`)
)

// NewClusters builds a backend per cluster (by system name). It does not
// contact any slurmrestd.
func NewClusters(cfgs map[string]Config, logger *slog.Logger) (*Clusters, error) {
	if len(cfgs) == 0 {
		return nil, errors.New("slurm clusters: none configured")
	}
	if logger == nil {
		logger = slog.Default()
	}
	c := &Clusters{byName: map[string]*Scheduler{}, log: logger}
	var errs []error
	for name, cfg := range cfgs {
		if !clusterNamePattern.MatchString(name) {
			errs = append(errs, fmt.Errorf("cluster name %q must match %s", name, clusterNamePattern))
			continue
		}
		if cfg.Logger == nil {
			cfg.Logger = logger.With("cluster", name)
		}
		s, err := New(cfg)
		if err != nil {
			errs = append(errs, fmt.Errorf("cluster %s: %w", name, err))
			continue
		}
		c.byName[name] = s
		c.names = append(c.names, name)
	}
	if err := errors.Join(errs...); err != nil {
		c.Close()
		return nil, err
	}
	sort.Strings(c.names)
	return c, nil
}

// Name implements app.Scheduler.
func (c *Clusters) Name() string { return Name }

// Cluster returns the backend of a cluster.
func (c *Clusters) Cluster(name string) (*Scheduler, bool) {
	s, ok := c.byName[name]
	return s, ok
}

// Close releases every cluster's idle connections.
func (c *Clusters) Close() {
	for _, s := range c.byName {
		s.Close()
	}
}

// APIVersions chooses (and logs) each cluster's API version; the error of
// a cluster that cannot be reached now is returned, the others are chosen.
func (c *Clusters) APIVersions(ctx context.Context) error {
	var errs []error
	for _, name := range c.names {
		if _, err := c.byName[name].APIVersion(ctx); err != nil {
			errs = append(errs, fmt.Errorf("cluster %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// Submit implements app.Scheduler: the job goes to the cluster of its system.
func (c *Clusters) Submit(ctx context.Context, req app.SubmitRequest) (app.SchedulerRef, error) {
	s, ok := c.byName[req.System]
	if !ok {
		return app.SchedulerRef{}, fmt.Errorf("submit job %s: system %q has no slurm cluster (configured: %s)",
			req.JobID, req.System, strings.Join(c.names, ", "))
	}
	ref, err := s.Submit(ctx, req)
	if err != nil {
		return app.SchedulerRef{}, err
	}
	ref.ID = req.System + ":" + ref.ID
	return ref, nil
}

// split returns the cluster and the cluster's own reference of ref.
func (c *Clusters) split(ref app.SchedulerRef) (*Scheduler, app.SchedulerRef, error) {
	name, id, ok := strings.Cut(ref.ID, ":")
	if !ok {
		return nil, ref, fmt.Errorf("slurm job %q names no cluster: %w", ref.ID, app.ErrUnknownJob)
	}
	s, found := c.byName[name]
	if !found {
		return nil, ref, fmt.Errorf("slurm job %q: cluster %q is not configured: %w", ref.ID, name, app.ErrUnknownJob)
	}
	return s, app.SchedulerRef{ID: id, SubmittedAt: ref.SubmittedAt}, nil
}

// Status implements app.Scheduler.
func (c *Clusters) Status(ctx context.Context, ref app.SchedulerRef) (app.SchedulerStatus, error) {
	s, own, err := c.split(ref)
	if err != nil {
		return app.SchedulerStatus{}, err
	}
	return s.Status(ctx, own)
}

// Cancel implements app.Scheduler: the cancel reaches the job's cluster.
func (c *Clusters) Cancel(ctx context.Context, ref app.SchedulerRef) error {
	s, own, err := c.split(ref)
	if err != nil {
		return err
	}
	return s.Cancel(ctx, own)
}

// StatusMany implements app.BulkStatuser with one request per cluster. The
// jobs of a cluster that cannot be asked are left out (the reconciler then
// asks for each, gets the cluster's error and keeps the job).
func (c *Clusters) StatusMany(ctx context.Context, refs []app.SchedulerRef) (map[string]app.SchedulerStatus, error) {
	per := map[string][]app.SchedulerRef{}
	for _, ref := range refs {
		name, id, ok := strings.Cut(ref.ID, ":")
		if !ok {
			continue
		}
		per[name] = append(per[name], app.SchedulerRef{ID: id, SubmittedAt: ref.SubmittedAt})
	}
	out := make(map[string]app.SchedulerStatus, len(refs))
	for name, own := range per {
		s, ok := c.byName[name]
		if !ok {
			continue
		}
		sts, err := s.StatusMany(ctx, own)
		if err != nil {
			c.log.WarnContext(ctx, "slurm cluster not reachable; its jobs are kept and asked again",
				"cluster", name, "jobs", len(own), "error", err)
			continue
		}
		for id, st := range sts {
			out[name+":"+id] = st
		}
	}
	return out, nil
}
