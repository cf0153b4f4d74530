package app

import (
	"context"
	"sync"
	"time"

	"github.com/cosmic-horizons/fleet/services/health-monitor/internal/domain"
)

// JobFlow is the probe of the job flow: a consumer of job-lifecycle feeds
// it transitions, and each probe cycle reports domain.JobFlow's judgement.
// While the consumer has not joined its group the flow cannot be seen, and
// the component is degraded saying so. It is safe for concurrent use.
type JobFlow struct {
	mu        sync.Mutex
	flow      *domain.JobFlow
	consuming func() bool
	dependsOn string
	now       func() time.Time
}

// NewJobFlow returns the probe of flow; consuming reports whether the
// consumer of job-lifecycle is receiving its partitions, and dependsOn
// names the Kafka cluster component: while it is bad, the job flow raises
// no alert of its own.
func NewJobFlow(flow *domain.JobFlow, consuming func() bool, dependsOn string) *JobFlow {
	return &JobFlow{flow: flow, consuming: consuming, dependsOn: dependsOn, now: time.Now}
}

// Observe applies one transition.
func (j *JobFlow) Observe(t domain.JobTransition) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.flow.Observe(t)
}

// Name implements Probe.
func (j *JobFlow) Name() string { return domain.JobFlowComponentID }

// Type implements Probe.
func (j *JobFlow) Type() domain.ComponentType { return domain.TypeScheduler }

// Probe implements Probe.
func (j *JobFlow) Probe(context.Context) Outcome {
	j.mu.Lock()
	c := j.flow.Component(j.now())
	j.mu.Unlock()
	c.DependsOn = j.dependsOn
	if !j.consuming() {
		c.Status = domain.StatusDegraded
		c.Detail = "not consuming job-lifecycle (yet): the job flow cannot be seen; " + c.Detail
	}
	return Outcome{Components: []domain.Component{c}}
}
