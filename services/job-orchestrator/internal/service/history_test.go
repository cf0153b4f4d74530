package service_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/kafkabus/kafkabustest"
	"github.com/cosmic-horizons/fleet/libs/outbox/relaytest"
	"github.com/cosmic-horizons/fleet/libs/service/servicetest"
	"github.com/cosmic-horizons/fleet/libs/testinfra"
	jobpb "github.com/cosmic-horizons/fleet/proto/fleet/job/v1"
)

// historyBackend is what the history and resubmission test needs of a
// scheduler backend.
type historyBackend struct {
	env       map[string]string
	partition string
	// failedCode returns the scheduler_code expected on the FAILED
	// transition of the job with this scheduler id.
	failedCode func(t *testing.T, schedulerID string) string
}

// TestHistoryAndResubmit runs a failing job on the local backend, reads its
// history, resubmits it with a longer walltime and finds both by their tag.
func TestHistoryAndResubmit(t *testing.T) {
	t.Parallel()
	runHistoryAndResubmit(t, historyBackend{partition: "development",
		failedCode: func(*testing.T, string) string { return "FAILED" }})
}

// TestSlurmHistoryAndResubmit is the same on the stack's real Slurm: the
// FAILED transition carries Slurm's own state reason, as scontrol shows it.
func TestSlurmHistoryAndResubmit(t *testing.T) {
	t.Parallel()
	s := requireSlurm(t)
	runHistoryAndResubmit(t, historyBackend{env: s.orchestratorEnv(t), partition: slurmPartition,
		failedCode: func(t *testing.T, id string) string {
			reason := scontrolJob(t, id)["Reason"]
			require.NotEmpty(t, reason)
			if reason == "None" {
				return "FAILED"
			}
			return reason
		}})
}

func runHistoryAndResubmit(t *testing.T, b historyBackend) {
	prefix := kafkabustest.Prefix(t, testinfra.KafkaBrokers(t), "orchtest-")
	vars := env(t, prefix, stateDir(t))
	for k, v := range b.env {
		vars[k] = v
	}
	p := servicetest.RunBinary(t, "../../cmd/job-orchestrator", vars)
	c := client(t, p.GRPCAddr)
	user := relaytest.RandomName(t, "user-")
	ctx := authed(t, user)
	tag := "sweep:" + relaytest.RandomName(t, "h")

	spec := customSpecOn(b.partition, "#!/bin/sh\necho failing\nexit 3\n", 2*time.Minute)
	spec.Tags = []string{tag}
	sub, err := c.SubmitJob(ctx, &jobpb.SubmitJobRequest{IdempotencyKey: relaytest.RandomName(t, "k-"), Spec: spec})
	require.NoError(t, err)
	id := sub.GetJob().GetJobId()
	waitStatus(t, c, ctx, id, jobpb.JobStatus_JOB_STATUS_FAILED)

	h, err := c.GetJobHistory(ctx, &jobpb.GetJobHistoryRequest{JobId: id})
	require.NoError(t, err)
	var actors []string
	var tos []jobpb.JobStatus
	for _, ev := range h.GetEvents() {
		actors = append(actors, ev.GetActor())
		tos = append(tos, ev.GetToStatus())
		require.NotEmpty(t, ev.GetEventId())
	}
	require.Equal(t, []jobpb.JobStatus{jobpb.JobStatus_JOB_STATUS_SUBMITTED, jobpb.JobStatus_JOB_STATUS_QUEUED,
		jobpb.JobStatus_JOB_STATUS_RUNNING, jobpb.JobStatus_JOB_STATUS_FAILED}, tos)
	require.Equal(t, []string{user, "orchestrator", "scheduler", "scheduler"}, actors)
	failed := h.GetEvents()[3]
	require.Equal(t, "NON_ZERO_EXIT", failed.GetErrorCode())
	require.Equal(t, b.failedCode(t, h.GetJob().GetSchedulerJobId()), failed.GetSchedulerCode())
	require.Contains(t, failed.GetReason(), "The job's script or command ended with an error (a non-zero exit code)")
	t.Logf("FAILED: code %s, scheduler code %s, reason %q", failed.GetErrorCode(), failed.GetSchedulerCode(), failed.GetReason())

	// Resubmit with a longer walltime: a new job, the rest of the spec identical.
	key := relaytest.RandomName(t, "r-")
	req := &jobpb.ResubmitJobRequest{JobId: id, IdempotencyKey: key,
		Overrides:  &jobpb.JobSpec{Resources: &jobpb.Resources{Walltime: durationpb.New(3 * time.Minute)}},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"resources.walltime"}}}
	r, err := c.ResubmitJob(ctx, req)
	require.NoError(t, err)
	nid := r.GetJob().GetJobId()
	require.Equal(t, id, r.GetJob().GetResubmittedFrom())
	want := proto.Clone(h.GetJob().GetSpec()).(*jobpb.JobSpec)
	want.Resources.Walltime = durationpb.New(3 * time.Minute)
	require.True(t, proto.Equal(want, r.GetJob().GetSpec()), "want %v\n got %v", want, r.GetJob().GetSpec())
	again, err := c.ResubmitJob(ctx, req)
	require.NoError(t, err)
	require.True(t, again.GetReplayed())
	require.Equal(t, nid, again.GetJob().GetJobId())

	_, err = c.ResubmitJob(ctx, &jobpb.ResubmitJobRequest{JobId: id, IdempotencyKey: key + "x",
		Overrides: &jobpb.JobSpec{}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"walltime"}}})
	require.Equal(t, codes.InvalidArgument, status.Code(err), "walltime is under resources")
	_, err = c.ResubmitJob(authed(t, user+"-other"), &jobpb.ResubmitJobRequest{JobId: id, IdempotencyKey: key})
	require.Equal(t, codes.NotFound, status.Code(err))

	// The new job runs too, and its events name the earlier job.
	waitStatus(t, c, ctx, nid, jobpb.JobStatus_JOB_STATUS_FAILED)
	var submitted *events.JobSubmitted
	require.Eventually(t, func() bool {
		for _, ev := range lifecycleOf(t, prefix, events.TopicJobLifecycle, nid) {
			if p, ok := ev.Payload.(events.JobSubmitted); ok {
				submitted = &p
				return true
			}
		}
		return false
	}, 30*time.Second, 200*time.Millisecond, "job.submitted of the new job on Kafka")
	require.NotNil(t, submitted.ResubmittedFrom)
	require.Equal(t, id, *submitted.ResubmittedFrom)
	var audited bool
	require.Eventually(t, func() bool {
		for _, ev := range lifecycleOf(t, prefix, events.TopicAuditTrail, nid) {
			if a, ok := ev.Payload.(events.AuditActionRecorded); ok && a.After["resubmitted_from"] == id {
				audited = a.Action == events.AuditActionSubmit && a.ActorUserID == user
				return true
			}
		}
		return false
	}, 30*time.Second, 200*time.Millisecond, "audit record of the resubmission")
	require.True(t, audited)

	// Both carry the tag; ListJobs finds exactly them by it.
	l, err := c.ListJobs(ctx, &jobpb.ListJobsRequest{Tags: []string{tag}})
	require.NoError(t, err)
	var listed []string
	for _, j := range l.GetJobs() {
		listed = append(listed, j.GetJobId())
	}
	require.Equal(t, []string{nid, id}, listed, "newest first")
}

func waitStatus(t *testing.T, c jobpb.JobServiceClient, ctx context.Context, id string, want jobpb.JobStatus) {
	t.Helper()
	var last jobpb.JobStatus
	require.Eventually(t, func() bool {
		j, err := c.GetJob(ctx, &jobpb.GetJobRequest{JobId: id})
		if err != nil {
			return false
		}
		last = j.GetJob().GetStatus()
		return last == want
	}, 3*time.Minute, 100*time.Millisecond, "job %s reaches %s (last %s)", id, want, last)
}
