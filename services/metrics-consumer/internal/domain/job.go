// Package domain holds the metrics-consumer's aggregation model, free of I/O.
//
// The state is one Job record per job, merged from the job's events so that
// the result depends on the set of events only, never on their arrival order
// or on repeats: every field is set by a rule that is commutative and
// idempotent (latest by per-job sequence number, earliest time, or first
// identity by source rank). Aggregates (Stats) are folds over Job records, so
// a rebuild from the topic produces identical records and identical
// aggregates. Durations are integer milliseconds and instants integer Unix
// microseconds, so that stored state compares exactly.
package domain

import (
	"cmp"

	"github.com/cosmic-horizons/fleet/libs/events"
)

// Unknown marks an integer fact not known yet.
const Unknown int64 = -1

// Identity ranks: identity facts from job.submitted beat those a metrics
// sample carries.
const (
	rankNone      = 0
	rankMetrics   = 1
	rankSubmitted = 2
)

// Sample is the latest job.metrics_recorded of a job.
type Sample struct {
	Seq         int64
	AtUS        int64
	EventID     string
	QueueWaitMS int64
	RunTimeMS   int64
	ExitCode    *int32
	NodeHours   float64
	GPUHours    float64
	CPUTimeMS   *int64
	MaxRSSBytes *int64
	Final       bool
}

// newer reports whether a sample keyed (seq, atUS, id) replaces s.
func (s *Sample) olderThan(seq, atUS int64, id string) bool {
	if s == nil {
		return true
	}
	return cmp.Or(cmp.Compare(seq, s.Seq), cmp.Compare(atUS, s.AtUS), cmp.Compare(id, s.EventID)) > 0
}

// Job is what the consumer knows about one job.
type Job struct {
	ID           string
	UserID       string
	System       string
	Agent        string
	Allocation   string
	IdentityRank int
	Nodes        int64
	GPUsPerNode  int64

	// CreatedAtUS is the earliest occurred_at among the job's events (its
	// submission when that was seen).
	CreatedAtUS   int64
	SubmittedAtUS int64 // 0 when not seen
	StartedAtUS   int64 // 0 when not seen
	EndedAtUS     int64 // 0 when no terminal event was seen

	// Status is the to_status of the lifecycle event with the highest
	// (sequence, event id).
	Status        events.JobStatus
	StatusSeq     int64
	StatusEventID string

	// Facts of the terminal event with the highest (sequence, event id).
	TerminalSeq         int64
	TerminalEventID     string
	TerminalRunMS       int64
	TerminalQueueWaitMS int64

	// Sample is the latest metrics sample by (sequence, occurred_at, event id).
	Sample *Sample
}

// NewJob returns the empty record of job id.
func NewJob(id string) *Job {
	return &Job{ID: id, TerminalRunMS: Unknown, TerminalQueueWaitMS: Unknown}
}

// AllocationTag is the envelope tag a producer may set to name the
// allocation (TACC project) a job is charged to; job.submitted carries none.
const AllocationTag = "allocation"

// JobID returns the job an event is about, or "" for events the consumer
// does not aggregate.
func JobID(ev events.Event) string {
	switch ev.Topic() {
	case events.TopicJobLifecycle, events.TopicJobMetrics:
		return ev.Key() // the job id on job topics
	}
	return ""
}

// Apply merges ev into j and reports whether j changed. Events of other
// jobs or other types leave j unchanged.
func (j *Job) Apply(ev events.Event) bool {
	if JobID(ev) != j.ID {
		return false
	}
	before := j.clone()
	at := ev.OccurredAt.UnixMicro()
	if j.CreatedAtUS == 0 || at < j.CreatedAtUS {
		j.CreatedAtUS = at
	}
	switch p := ev.Payload.(type) {
	case events.JobSubmitted:
		j.setIdentity(rankSubmitted, p.UserID, string(p.TaccSystem), p.Agent, ev.Tags[AllocationTag])
		j.Nodes = int64(p.ResourceRequest.Nodes)
		j.GPUsPerNode = int64(p.ResourceRequest.GPUsPerNode)
		if j.SubmittedAtUS == 0 || at < j.SubmittedAtUS {
			j.SubmittedAtUS = at
		}
		j.setStatus(ev, p.ToStatus)
	case events.JobQueued:
		j.setStatus(ev, p.ToStatus)
	case events.JobRunning:
		started := at
		if !p.StartedAt.IsZero() {
			started = p.StartedAt.UnixMicro()
		}
		if j.StartedAtUS == 0 || started < j.StartedAtUS {
			j.StartedAtUS = started
		}
		j.setStatus(ev, p.ToStatus)
	case events.JobCompleted:
		j.setTerminal(ev, p.RunTimeMS, p.QueueWaitMS)
		j.setStatus(ev, p.ToStatus)
	case events.JobFailed:
		j.setTerminal(ev, p.RunTimeMS, Unknown)
		j.setStatus(ev, p.ToStatus)
	case events.JobCancelled:
		j.setTerminal(ev, Unknown, Unknown)
		j.setStatus(ev, p.ToStatus)
	case events.JobMetricsRecorded:
		j.setIdentity(rankMetrics, p.UserID, string(p.TaccSystem), p.Agent, ev.Tags[AllocationTag])
		if j.Sample.olderThan(ev.Sequence, at, ev.EventID) {
			j.Sample = &Sample{
				Seq: ev.Sequence, AtUS: at, EventID: ev.EventID,
				QueueWaitMS: p.QueueWaitMS, RunTimeMS: p.RunTimeMS, ExitCode: p.ExitCode,
				NodeHours: p.NodeHours, GPUHours: p.GPUHours, CPUTimeMS: p.CPUTimeMS,
				MaxRSSBytes: p.MaxRSSBytes, Final: p.Final,
			}
		}
	}
	return !j.equal(before)
}

func (j *Job) setIdentity(rank int, user, system, agent, allocation string) {
	if rank < j.IdentityRank {
		return
	}
	if rank == j.IdentityRank {
		// Same source twice: keep the smallest values so the result does
		// not depend on which copy came first.
		if cmp.Or(cmp.Compare(user, j.UserID), cmp.Compare(system, j.System), cmp.Compare(agent, j.Agent), cmp.Compare(allocation, j.Allocation)) >= 0 {
			return
		}
	}
	j.IdentityRank, j.UserID, j.System, j.Agent, j.Allocation = rank, user, system, agent, allocation
}

func (j *Job) setStatus(ev events.Event, to events.JobStatus) {
	if j.Status == "" || cmp.Or(cmp.Compare(ev.Sequence, j.StatusSeq), cmp.Compare(ev.EventID, j.StatusEventID)) > 0 {
		j.Status, j.StatusSeq, j.StatusEventID = to, ev.Sequence, ev.EventID
	}
}

func (j *Job) setTerminal(ev events.Event, runMS, queueWaitMS int64) {
	if j.TerminalEventID != "" && cmp.Or(cmp.Compare(ev.Sequence, j.TerminalSeq), cmp.Compare(ev.EventID, j.TerminalEventID)) <= 0 {
		return
	}
	j.TerminalSeq, j.TerminalEventID = ev.Sequence, ev.EventID
	j.EndedAtUS = ev.OccurredAt.UnixMicro()
	j.TerminalRunMS, j.TerminalQueueWaitMS = runMS, queueWaitMS
}

func (j *Job) clone() Job {
	c := *j
	if j.Sample != nil {
		s := *j.Sample
		c.Sample = &s
	}
	return c
}

func (j *Job) equal(o Job) bool {
	a, b := j.clone(), o
	sa, sb := a.Sample, b.Sample
	a.Sample, b.Sample = nil, nil
	if a != b {
		return false
	}
	switch {
	case sa == nil || sb == nil:
		return sa == sb
	case !eqPtr(sa.ExitCode, sb.ExitCode) || !eqPtr(sa.CPUTimeMS, sb.CPUTimeMS) || !eqPtr(sa.MaxRSSBytes, sb.MaxRSSBytes):
		return false
	}
	x, y := *sa, *sb
	x.ExitCode, y.ExitCode, x.CPUTimeMS, y.CPUTimeMS, x.MaxRSSBytes, y.MaxRSSBytes = nil, nil, nil, nil, nil, nil
	return x == y
}

func eqPtr[T comparable](a, b *T) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// Started reports whether the job is known to have started running.
func (j *Job) Started() bool { return j.StartedAtUS > 0 || j.TerminalRunMS > 0 }

// Terminal reports whether a terminal event of the job was seen.
func (j *Job) Terminal() bool { return j.TerminalEventID != "" }

// QueueWaitMS is the time from submission to start, or Unknown: measured
// from the job.submitted and job.running events when both were seen, else
// as reported by job.completed.
func (j *Job) QueueWaitMS() int64 {
	switch {
	case j.SubmittedAtUS > 0 && j.StartedAtUS > 0:
		return max(j.StartedAtUS-j.SubmittedAtUS, 0) / 1000
	case j.TerminalQueueWaitMS >= 0 && j.Started():
		return j.TerminalQueueWaitMS
	}
	return Unknown
}

// RunTimeMS is the time from start to the terminal status of a job that
// finished after starting, or Unknown: as the terminal event reports it,
// else measured from the job.running and terminal events.
func (j *Job) RunTimeMS() int64 {
	switch {
	case !j.Terminal() || !j.Started():
		return Unknown
	case j.TerminalRunMS > 0:
		return j.TerminalRunMS
	case j.StartedAtUS > 0:
		return max(j.EndedAtUS-j.StartedAtUS, 0) / 1000
	}
	return Unknown
}

// msPerHour converts node-milliseconds to node-hours.
const msPerHour = 3_600_000.0

// NodeHours is nodes × actual run time in hours; without the job's
// submission (and so its node count) the final metrics sample's figure.
func (j *Job) NodeHours() float64 {
	if run := j.RunTimeMS(); run >= 0 && j.Nodes > 0 {
		return float64(j.Nodes*run) / msPerHour
	}
	if j.Nodes == 0 && j.Sample != nil && j.Sample.Final {
		return j.Sample.NodeHours
	}
	return 0
}

// GPUHours is GPUs in total × actual run time in hours, with the same
// fallback as NodeHours.
func (j *Job) GPUHours() float64 {
	if run := j.RunTimeMS(); run >= 0 && j.Nodes > 0 {
		return float64(j.Nodes*j.GPUsPerNode*run) / msPerHour
	}
	if j.Nodes == 0 && j.Sample != nil && j.Sample.Final {
		return j.Sample.GPUHours
	}
	return 0
}

// Active reports a RUNNING job; Pending a SUBMITTED or QUEUED one.
func (j *Job) Active() bool { return j.Status == events.JobStatusRunning }

// Pending reports a job that waits for the scheduler or in its queue.
func (j *Job) Pending() bool {
	return j.Status == events.JobStatusSubmitted || j.Status == events.JobStatusQueued
}
