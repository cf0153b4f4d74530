// Package testgen generates job event streams with known aggregates, for the
// metrics-consumer's tests and benchmarks. The expected values are computed
// from the generated plan, independently of the aggregation code.
package testgen

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/cosmic-horizons/fleet/libs/events"
)

// Outcome is where a generated job ends.
type Outcome int

// The outcomes of generated jobs.
const (
	Completed Outcome = iota
	Failed
	CancelledQueued
	Running
	Queued
)

// Plan is one generated job.
type Plan struct {
	JobID, UserID, System, Agent string
	Nodes, GPUsPerNode           int32
	SubmittedAt                  time.Time
	QueueWait, RunTime           time.Duration
	Outcome                      Outcome
}

// Systems, Agents and Users the generator draws from.
var (
	Systems = []events.TaccSystem{events.TaccSystemFrontera, events.TaccSystemStampede3, events.TaccSystemLonestar6, events.TaccSystemVista}
	Agents  = []string{"AlphaCal", "ImageReconstruction", "AnomalyDetection", "Custom"}
)

// Plans returns n jobs drawn from seed, submitted one per second from base.
func Plans(seed uint64, n int, base time.Time) []Plan {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	out := make([]Plan, n)
	for i := range out {
		p := Plan{
			JobID:       fmt.Sprintf("job-%d-%06d", seed, i),
			UserID:      fmt.Sprintf("user-%d", r.IntN(7)),
			System:      string(Systems[r.IntN(len(Systems))]),
			Agent:       Agents[r.IntN(len(Agents))],
			Nodes:       int32(1 + r.IntN(8)),
			GPUsPerNode: int32(r.IntN(5)),
			SubmittedAt: base.Add(time.Duration(i) * time.Second).UTC().Truncate(time.Millisecond),
			QueueWait:   time.Duration(1+r.IntN(7_200_000)) * time.Millisecond,
			RunTime:     time.Duration(1000+r.IntN(36_000_000)) * time.Millisecond,
		}
		switch x := r.IntN(100); {
		case x < 60:
			p.Outcome = Completed
		case x < 75:
			p.Outcome = Failed
		case x < 85:
			p.Outcome = CancelledQueued
		case x < 95:
			p.Outcome = Running
		default:
			p.Outcome = Queued
		}
		out[i] = p
	}
	return out
}

// Events returns the events of p in publication order.
func (p Plan) Events() ([]events.Event, error) {
	var out []events.Event
	add := func(payload events.Payload, seq int64, at time.Time) error {
		ev, err := events.NewEvent(payload, events.Meta{
			Producer: "testgen", UserID: p.UserID, Sequence: seq,
			Now: func() time.Time { return at },
		})
		if err != nil {
			return fmt.Errorf("job %s: %w", p.JobID, err)
		}
		out = append(out, ev)
		return nil
	}
	sub, start := p.SubmittedAt, p.SubmittedAt.Add(p.QueueWait)
	end := start.Add(p.RunTime)
	steps := []func() error{
		func() error {
			return add(events.JobSubmitted{
				JobID: p.JobID, UserID: p.UserID, JobName: "gen", Agent: p.Agent, DatasetID: "ds",
				TaccSystem: events.TaccSystem(p.System), Partition: "normal",
				ResourceRequest: events.ResourceRequest{Nodes: p.Nodes, CoresPerNode: 8, GPUsPerNode: p.GPUsPerNode, MemoryMB: 1024, WalltimeSeconds: 86400},
				Priority:        events.JobPriorityNormal, ToStatus: events.JobStatusSubmitted,
			}, 1, sub)
		},
		func() error {
			return add(events.JobQueued{JobID: p.JobID, UserID: p.UserID, Scheduler: "local", SchedulerJobID: "1",
				FromStatus: events.JobStatusSubmitted, ToStatus: events.JobStatusQueued}, 2, sub.Add(time.Millisecond))
		},
	}
	if p.Outcome == CancelledQueued {
		steps = append(steps, func() error {
			return add(events.JobCancelled{JobID: p.JobID, UserID: p.UserID, CancelledBy: p.UserID,
				FromStatus: events.JobStatusQueued, ToStatus: events.JobStatusCancelled}, 3, start)
		})
	}
	if p.Outcome == Completed || p.Outcome == Failed || p.Outcome == Running {
		steps = append(steps,
			func() error {
				return add(events.JobRunning{JobID: p.JobID, UserID: p.UserID, SchedulerJobID: "1", StartedAt: start,
					FromStatus: events.JobStatusQueued, ToStatus: events.JobStatusRunning}, 3, start)
			},
			func() error { return add(p.metrics(false), 3, start.Add(time.Second)) },
		)
	}
	switch p.Outcome {
	case Completed:
		steps = append(steps,
			func() error {
				return add(events.JobCompleted{JobID: p.JobID, UserID: p.UserID, RunTimeMS: p.RunTime.Milliseconds(),
					QueueWaitMS: p.QueueWait.Milliseconds(), FromStatus: events.JobStatusRunning, ToStatus: events.JobStatusCompleted}, 4, end)
			},
			func() error { return add(p.metrics(true), 4, end) },
		)
	case Failed:
		steps = append(steps,
			func() error {
				return add(events.JobFailed{JobID: p.JobID, UserID: p.UserID, ErrorCode: "TIMEOUT", RunTimeMS: p.RunTime.Milliseconds(),
					FromStatus: events.JobStatusRunning, ToStatus: events.JobStatusFailed}, 4, end)
			},
			func() error { return add(p.metrics(true), 4, end) },
		)
	}
	for _, s := range steps {
		if err := s(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (p Plan) metrics(final bool) events.JobMetricsRecorded {
	m := events.JobMetricsRecorded{
		JobID: p.JobID, TaccSystem: events.TaccSystem(p.System), UserID: p.UserID, Agent: p.Agent,
		QueueWaitMS: p.QueueWait.Milliseconds(), Final: final,
	}
	if final {
		m.RunTimeMS = p.RunTime.Milliseconds()
		m.NodeHours = p.NodeHours()
		m.GPUHours = p.GPUHours()
	}
	return m
}

// Started reports whether the job reached RUNNING.
func (p Plan) Started() bool {
	return p.Outcome == Completed || p.Outcome == Failed || p.Outcome == Running
}

// Finished reports whether the job ran to COMPLETED or FAILED.
func (p Plan) Finished() bool { return p.Outcome == Completed || p.Outcome == Failed }

// NodeHours is the expected node-hours of a finished job, else 0.
func (p Plan) NodeHours() float64 {
	if !p.Finished() {
		return 0
	}
	return float64(p.Nodes) * p.RunTime.Hours()
}

// GPUHours is the expected GPU-hours of a finished job, else 0.
func (p Plan) GPUHours() float64 {
	if !p.Finished() {
		return 0
	}
	return float64(p.Nodes*p.GPUsPerNode) * p.RunTime.Hours()
}

// Status is the expected final status.
func (p Plan) Status() events.JobStatus {
	return [...]events.JobStatus{events.JobStatusCompleted, events.JobStatusFailed, events.JobStatusCancelled,
		events.JobStatusRunning, events.JobStatusQueued}[p.Outcome]
}

// Stream returns the events of all plans, interleaved job by job in
// submission order.
func Stream(plans []Plan) ([]events.Event, error) {
	var out []events.Event
	for _, p := range plans {
		evs, err := p.Events()
		if err != nil {
			return nil, err
		}
		out = append(out, evs...)
	}
	return out, nil
}

// Expected are aggregates computed directly from plans.
type Expected struct {
	Submitted, Completed, Failed, Cancelled, Active, Pending int64
	QueueWaitsMS, RunTimesMS                                 []int64
	NodeHours, GPUHours                                      float64
}

// Expect computes the expected aggregates of the plans that match keep
// (nil keeps all).
func Expect(plans []Plan, keep func(Plan) bool) Expected {
	var e Expected
	for _, p := range plans {
		if keep != nil && !keep(p) {
			continue
		}
		e.Submitted++
		switch p.Outcome {
		case Completed:
			e.Completed++
		case Failed:
			e.Failed++
		case CancelledQueued:
			e.Cancelled++
		case Running:
			e.Active++
		case Queued:
			e.Pending++
		}
		if p.Started() {
			e.QueueWaitsMS = append(e.QueueWaitsMS, p.QueueWait.Milliseconds())
		}
		if p.Finished() {
			e.RunTimesMS = append(e.RunTimesMS, p.RunTime.Milliseconds())
		}
		e.NodeHours += p.NodeHours()
		e.GPUHours += p.GPUHours()
	}
	return e
}

// NearestRank returns the nearest-rank q-quantile of sorted values.
func NearestRank(sorted []int64, q float64) int64 {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(q * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}
