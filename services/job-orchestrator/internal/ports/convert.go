package ports

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	jobpb "github.com/cosmic-horizons/fleet/proto/fleet/job/v1"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/domain"
)

var agents = map[jobpb.Agent]domain.Agent{
	jobpb.Agent_AGENT_ALPHA_CAL:            domain.AgentAlphaCal,
	jobpb.Agent_AGENT_IMAGE_RECONSTRUCTION: domain.AgentImageReconstruction,
	jobpb.Agent_AGENT_ANOMALY_DETECTION:    domain.AgentAnomalyDetection,
	jobpb.Agent_AGENT_CUSTOM:               domain.AgentCustom,
}

var systems = map[jobpb.TaccSystem]string{
	jobpb.TaccSystem_TACC_SYSTEM_FRONTERA:  domain.SystemFrontera,
	jobpb.TaccSystem_TACC_SYSTEM_STAMPEDE3: domain.SystemStampede3,
	jobpb.TaccSystem_TACC_SYSTEM_LONESTAR6: domain.SystemLonestar6,
	jobpb.TaccSystem_TACC_SYSTEM_VISTA:     domain.SystemVista,
}

var priorities = map[jobpb.Priority]domain.Priority{
	jobpb.Priority_PRIORITY_LOW:    domain.PriorityLow,
	jobpb.Priority_PRIORITY_NORMAL: domain.PriorityNormal,
	jobpb.Priority_PRIORITY_HIGH:   domain.PriorityHigh,
}

var statuses = map[jobpb.JobStatus]domain.Status{
	jobpb.JobStatus_JOB_STATUS_SUBMITTED: domain.StatusSubmitted,
	jobpb.JobStatus_JOB_STATUS_QUEUED:    domain.StatusQueued,
	jobpb.JobStatus_JOB_STATUS_RUNNING:   domain.StatusRunning,
	jobpb.JobStatus_JOB_STATUS_COMPLETED: domain.StatusCompleted,
	jobpb.JobStatus_JOB_STATUS_FAILED:    domain.StatusFailed,
	jobpb.JobStatus_JOB_STATUS_CANCELLED: domain.StatusCancelled,
}

func invert[K, V comparable](m map[K]V) map[V]K {
	out := make(map[V]K, len(m))
	for k, v := range m {
		out[v] = k
	}
	return out
}

var (
	agentsPB     = invert(agents)
	systemsPB    = invert(systems)
	prioritiesPB = invert(priorities)
	statusesPB   = invert(statuses)
)

// specFromPB converts without judging: unknown enum values become values the
// domain validation rejects with the right field path.
func specFromPB(s *jobpb.JobSpec) domain.Spec {
	if s == nil {
		return domain.Spec{}
	}
	out := domain.Spec{
		Name: s.GetName(), DatasetID: s.GetDatasetId(), Partition: s.GetPartition(),
		Script: s.GetScript(), Command: s.GetCommand(), Environment: s.GetEnvironment(),
		Tags: s.GetTags(), Allocation: s.GetAllocation(),
	}
	if a, ok := agents[s.GetAgent()]; ok {
		out.Agent = a
	} else if s.GetAgent() != jobpb.Agent_AGENT_UNSPECIFIED {
		out.Agent = domain.Agent(fmt.Sprintf("Agent(%d)", s.GetAgent()))
	}
	if sys, ok := systems[s.GetTaccSystem()]; ok {
		out.System = sys
	} else if s.GetTaccSystem() != jobpb.TaccSystem_TACC_SYSTEM_UNSPECIFIED {
		out.System = fmt.Sprintf("TaccSystem(%d)", s.GetTaccSystem())
	}
	if p, ok := priorities[s.GetPriority()]; ok {
		out.Priority = p
	} else if s.GetPriority() != jobpb.Priority_PRIORITY_UNSPECIFIED {
		out.Priority = domain.Priority(fmt.Sprintf("Priority(%d)", s.GetPriority()))
	}
	if r := s.GetResources(); r != nil {
		out.Resources = domain.Resources{
			Nodes: r.GetNodes(), CoresPerNode: r.GetCoresPerNode(), GPUsPerNode: r.GetGpusPerNode(),
			MemoryMB: r.GetMemoryMb(),
		}
		if w := r.GetWalltime(); w != nil {
			if err := w.CheckValid(); err != nil {
				out.Resources.Walltime = -1
			} else {
				out.Resources.Walltime = w.AsDuration()
			}
		}
	}
	return out
}

func specToPB(s domain.Spec) *jobpb.JobSpec {
	out := &jobpb.JobSpec{
		Name: s.Name, Agent: agentsPB[s.Agent], DatasetId: s.DatasetID, TaccSystem: systemsPB[s.System],
		Partition: s.Partition, Environment: s.Environment, Priority: prioritiesPB[s.Priority],
		Tags: s.Tags, Allocation: s.Allocation,
		Resources: &jobpb.Resources{
			Nodes: s.Resources.Nodes, CoresPerNode: s.Resources.CoresPerNode, GpusPerNode: s.Resources.GPUsPerNode,
			MemoryMb: s.Resources.MemoryMB, Walltime: durationpb.New(s.Resources.Walltime),
		},
	}
	switch {
	case s.Script != "":
		out.Payload = &jobpb.JobSpec_Script{Script: s.Script}
	case s.Command != "":
		out.Payload = &jobpb.JobSpec_Command{Command: s.Command}
	}
	return out
}

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func jobToPB(j *domain.Job) *jobpb.Job {
	return &jobpb.Job{
		JobId: j.ID, UserId: j.Owner, Spec: specToPB(j.Spec), Status: statusesPB[j.Status],
		SchedulerJobId: j.SchedulerRef.ID, ExitCode: j.ExitCode,
		ErrorCode: j.ErrorCode, ErrorMessage: j.ErrorMessage,
		CostEstimate: &jobpb.CostEstimate{NodeHours: j.Cost.NodeHours, GpuHours: j.Cost.GPUHours, Usd: j.Cost.USD},
		CreatedAt:    ts(j.CreatedAt), QueuedAt: ts(j.QueuedAt), StartedAt: ts(j.StartedAt), FinishedAt: ts(j.FinishedAt),
		CorrelationId: j.CorrelationID, SchedulerDetail: j.SchedulerDetail,
		ResubmittedFrom: j.ResubmittedFrom,
	}
}

func eventToPB(jobID string, tr domain.Transition) *jobpb.JobEvent {
	return &jobpb.JobEvent{
		JobId: jobID, Sequence: tr.Sequence, FromStatus: statusesPB[tr.From], ToStatus: statusesPB[tr.To],
		OccurredAt: ts(tr.At), Reason: tr.Reason, EventId: tr.EventID,
		Actor: tr.Actor, SchedulerCode: tr.SchedulerCode, ErrorCode: tr.ErrorCode,
	}
}
