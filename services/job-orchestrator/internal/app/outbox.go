package app

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/domain"
)

// change describes who made a job change, for its events.
type change struct {
	actorID   string
	actorRole string
	ip        string
	action    events.AuditAction
	// status is the scheduler's report that caused a system transition.
	status *SchedulerStatus
}

func (a *App) userChange(actor Actor, action events.AuditAction) change {
	return change{actorID: actor.UserID, actorRole: actor.Role(), ip: actor.IP, action: action}
}

func (a *App) systemChange(st *SchedulerStatus) change {
	return change{actorID: a.cfg.Producer, actorRole: "system", action: events.AuditActionUpdate, status: st}
}

// outboxFor builds the events of the transitions trs just applied to j, in
// order: for each transition its job-lifecycle event (sequence = the
// transition's sequence, causation = the previous lifecycle event) and its
// audit.action_recorded (causation = that lifecycle event); after a
// COMPLETED or FAILED transition the final job.metrics_recorded. The
// lifecycle event ids are recorded in j's history.
func (a *App) outboxFor(ctx context.Context, j *domain.Job, trs []domain.Transition, c change) ([]OutboxRecord, error) {
	corr := a.correlationID(ctx, j)
	var out []OutboxRecord
	for _, tr := range trs {
		var causation string
		for _, h := range j.History {
			if h.Sequence == tr.Sequence-1 {
				causation = h.EventID
			}
		}
		meta := events.Meta{
			Producer: a.cfg.Producer, UserID: c.actorID, CorrelationID: corr,
			CausationID: causation, Sequence: tr.Sequence, Now: a.now,
		}
		lc, err := events.NewEvent(a.lifecyclePayload(j, tr, c), meta)
		if err != nil {
			return nil, fmt.Errorf("lifecycle event of job %s: %w", j.ID, err)
		}
		if err := j.SetEventID(tr.Sequence, lc.EventID); err != nil {
			return nil, fmt.Errorf("lifecycle event of job %s: %w", j.ID, err)
		}
		out = append(out, OutboxRecord{Event: lc})

		audit := events.AuditActionRecorded{
			AuditID:      a.newID(),
			Action:       c.action,
			ActorUserID:  c.actorID,
			ActorRole:    c.actorRole,
			ResourceType: "job",
			ResourceID:   j.ID,
			After:        map[string]string{"status": string(tr.To), "sequence": strconv.FormatInt(tr.Sequence, 10)},
			Outcome:      events.AuditOutcomeSuccess,
		}
		if tr.From != "" {
			audit.Before = map[string]string{"status": string(tr.From)}
		}
		if tr.Reason != "" {
			audit.After["reason"] = tr.Reason
		}
		if tr.Sequence == 1 && j.ResubmittedFrom != "" {
			audit.After["resubmitted_from"] = j.ResubmittedFrom
		}
		if c.ip != "" {
			ip := c.ip
			audit.IPAddress = &ip
		}
		ae, err := events.NewEvent(audit, events.Meta{
			Producer: a.cfg.Producer, UserID: c.actorID, CorrelationID: corr,
			CausationID: lc.EventID, Now: a.now,
		})
		if err != nil {
			return nil, fmt.Errorf("audit event of job %s: %w", j.ID, err)
		}
		out = append(out, OutboxRecord{Event: ae})

		if tr.To == domain.StatusCompleted || tr.To == domain.StatusFailed {
			me, err := events.NewEvent(a.metricsPayload(j, c.status), events.Meta{
				Producer: a.cfg.Producer, UserID: c.actorID, CorrelationID: corr,
				CausationID: lc.EventID, Sequence: tr.Sequence, Now: a.now,
			})
			if err != nil {
				return nil, fmt.Errorf("metrics event of job %s: %w", j.ID, err)
			}
			out = append(out, OutboxRecord{Event: me})
		}
	}
	return out, nil
}

func taccSystem(s string) events.TaccSystem {
	switch s {
	case domain.SystemFrontera:
		return events.TaccSystemFrontera
	case domain.SystemStampede3:
		return events.TaccSystemStampede3
	case domain.SystemLonestar6:
		return events.TaccSystemLonestar6
	case domain.SystemVista:
		return events.TaccSystemVista
	}
	return events.TaccSystemOther
}

func (a *App) lifecyclePayload(j *domain.Job, tr domain.Transition, c change) events.Payload {
	from, to := events.JobStatus(tr.From), events.JobStatus(tr.To)
	switch tr.To {
	case domain.StatusSubmitted:
		r := j.Spec.Resources
		p := events.JobSubmitted{
			JobID: j.ID, UserID: j.Owner, JobName: j.Spec.Name, Agent: string(j.Spec.Agent),
			DatasetID: j.Spec.DatasetID, TaccSystem: taccSystem(j.Spec.System), Partition: j.Spec.Partition,
			ResourceRequest: events.ResourceRequest{
				Nodes: r.Nodes, CoresPerNode: r.CoresPerNode, GPUsPerNode: r.GPUsPerNode,
				MemoryMB: r.MemoryMB, WalltimeSeconds: int64(r.Walltime.Seconds()),
			},
			EstimatedNodeHours: j.Cost.NodeHours, EstimatedGPUHours: j.Cost.GPUHours, EstimatedCostUSD: j.Cost.USD,
			Priority: events.JobPriority(j.Spec.Priority), ToStatus: to,
		}
		if j.IdempotencyKey != "" {
			k := j.IdempotencyKey
			p.IdempotencyKey = &k
		}
		if j.ResubmittedFrom != "" {
			from := j.ResubmittedFrom
			p.ResubmittedFrom = &from
		}
		return p
	case domain.StatusQueued:
		return events.JobQueued{JobID: j.ID, UserID: j.Owner, Scheduler: j.SchedulerRef.Scheduler,
			SchedulerJobID: j.SchedulerRef.ID, FromStatus: from, ToStatus: to}
	case domain.StatusRunning:
		p := events.JobRunning{JobID: j.ID, UserID: j.Owner, SchedulerJobID: j.SchedulerRef.ID,
			StartedAt: tr.At, FromStatus: from, ToStatus: to}
		if c.status != nil {
			p.NodeList = c.status.NodeList
		}
		return p
	case domain.StatusCompleted:
		p := events.JobCompleted{JobID: j.ID, UserID: j.Owner, RunTimeMS: j.RunTime().Milliseconds(),
			QueueWaitMS: j.QueueWait().Milliseconds(), OutputLocation: a.workDir(j.ID), FromStatus: from, ToStatus: to}
		if j.ExitCode != nil {
			p.ExitCode = *j.ExitCode
		}
		return p
	case domain.StatusFailed:
		return events.JobFailed{JobID: j.ID, UserID: j.Owner, ErrorCode: j.ErrorCode, ErrorMessage: j.ErrorMessage,
			ExitCode: j.ExitCode, RunTimeMS: j.RunTime().Milliseconds(), FromStatus: from, ToStatus: to}
	default: // CANCELLED
		return events.JobCancelled{JobID: j.ID, UserID: j.Owner, CancelledBy: j.CancelledBy, Reason: tr.Reason,
			FromStatus: from, ToStatus: to}
	}
}

func (a *App) metricsPayload(j *domain.Job, st *SchedulerStatus) events.JobMetricsRecorded {
	p := events.JobMetricsRecorded{
		JobID: j.ID, TaccSystem: taccSystem(j.Spec.System), UserID: j.Owner, Agent: string(j.Spec.Agent),
		QueueWaitMS: j.QueueWait().Milliseconds(), RunTimeMS: j.RunTime().Milliseconds(), ExitCode: j.ExitCode,
		NodeHours: j.Cost.NodeHours, GPUHours: j.Cost.GPUHours, Final: true,
	}
	if st != nil {
		if st.CPUTime != nil {
			ms := st.CPUTime.Milliseconds()
			p.CPUTimeMS = &ms
		}
		if st.MaxRSSBytes != nil {
			v := *st.MaxRSSBytes
			p.MaxRSSBytes = &v
		}
		p.CPUEfficiencyPercent, p.MemoryEfficiencyPercent = efficiencies(j.Spec.Resources, j.RunTime(), st)
	}
	return p
}

// efficiencies are Slurm's seff figures for a job that ran for run with
// the resources r requested: CPU time over run time times the CPUs, and peak
// resident memory over the memory, in percent; nil where the scheduler did
// not report the use or the request names no amount.
func efficiencies(r domain.Resources, run time.Duration, st *SchedulerStatus) (cpu, mem *float64) {
	if cpus := float64(r.Nodes) * float64(r.CoresPerNode); st.CPUTime != nil && run > 0 && cpus > 0 {
		v := st.CPUTime.Seconds() / (run.Seconds() * cpus) * 100
		cpu = &v
	}
	if bytes := float64(r.Nodes) * float64(r.MemoryMB) * (1 << 20); st.MaxRSSBytes != nil && bytes > 0 {
		v := float64(*st.MaxRSSBytes) / bytes * 100
		mem = &v
	}
	return cpu, mem
}

// runningSample is the job.metrics_recorded of the RUNNING job j at now:
// run time, node- and GPU-hours so far, and the backend's CPU time and
// memory when it reports them. Its sequence and causation are those of the
// job's latest transition, so readers order it before the final sample.
func (a *App) runningSample(ctx context.Context, j *domain.Job, st *SchedulerStatus, now time.Time) (OutboxRecord, error) {
	run := max(0, now.Sub(j.StartedAt))
	cost := a.cfg.Rates.Estimate(j.Spec.Resources, run)
	p := a.metricsPayload(j, st)
	p.Final, p.RunTimeMS, p.NodeHours, p.GPUHours, p.ExitCode = false, run.Milliseconds(), cost.NodeHours, cost.GPUHours, nil
	p.CPUEfficiencyPercent, p.MemoryEfficiencyPercent = nil, nil // final sample only
	var causation string
	if n := len(j.History); n > 0 {
		causation = j.History[n-1].EventID
	}
	ev, err := events.NewEvent(p, events.Meta{
		Producer: a.cfg.Producer, UserID: a.cfg.Producer, CorrelationID: a.correlationID(ctx, j),
		CausationID: causation, Sequence: j.Sequence, Now: a.now,
	})
	if err != nil {
		return OutboxRecord{}, fmt.Errorf("metrics sample of job %s: %w", j.ID, err)
	}
	return OutboxRecord{Event: ev}, nil
}

func (a *App) workDir(jobID string) string { return a.cfg.WorkDir + "/" + jobID }
