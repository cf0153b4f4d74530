package ports_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/cosmic-horizons/fleet/libs/events"
	jobpb "github.com/cosmic-horizons/fleet/proto/fleet/job/v1"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/app"
)

// submitAndFail submits validRequest(key) as alice and drives it through
// QUEUED and RUNNING into FAILED with Slurm's OUT_OF_MEMORY.
func submitAndFail(t *testing.T, e *env, key string) string {
	t.Helper()
	ctx := as(t, "alice", false)
	j, err := e.client.SubmitJob(ctx, validRequest(key))
	require.NoError(t, err)
	id := j.GetJob().GetJobId()
	e.rec.Pass(context.Background())
	got, err := e.client.GetJob(ctx, &jobpb.GetJobRequest{JobId: id})
	require.NoError(t, err)
	sid := got.GetJob().GetSchedulerJobId()
	start := time.Now().Add(-time.Minute).UTC().Truncate(time.Second)
	e.sched.Set(sid, app.SchedulerStatus{Phase: app.PhaseRunning, State: "RUNNING", StartTime: start})
	e.rec.Pass(context.Background())
	exit := int32(137)
	e.sched.Set(sid, app.SchedulerStatus{Phase: app.PhaseFailed, State: "OUT_OF_MEMORY", Code: "OutOfMemory",
		ErrorCode: app.ErrorCodeOutOfMemory, Reason: "OutOfMemory", ExitCode: &exit, StartTime: start, EndTime: start.Add(30 * time.Second)})
	e.rec.Pass(context.Background())
	return id
}

func TestGetJobHistoryActorsAndReasons(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := as(t, "alice", false)
	id := submitAndFail(t, e, "h1")

	h, err := e.client.GetJobHistory(ctx, &jobpb.GetJobHistoryRequest{JobId: id})
	require.NoError(t, err)
	require.Equal(t, jobpb.JobStatus_JOB_STATUS_FAILED, h.GetJob().GetStatus())
	evs := h.GetEvents()
	require.Len(t, evs, 4)
	type row struct {
		seq      int64
		from, to jobpb.JobStatus
		actor    string
		code     string
		errCode  string
	}
	var got []row
	for _, ev := range evs {
		got = append(got, row{ev.GetSequence(), ev.GetFromStatus(), ev.GetToStatus(), ev.GetActor(), ev.GetSchedulerCode(), ev.GetErrorCode()})
		require.NotEmpty(t, ev.GetEventId())
		require.NotNil(t, ev.GetOccurredAt())
		require.Equal(t, id, ev.GetJobId())
	}
	require.Equal(t, []row{
		{1, jobpb.JobStatus_JOB_STATUS_UNSPECIFIED, jobpb.JobStatus_JOB_STATUS_SUBMITTED, "alice", "", ""},
		{2, jobpb.JobStatus_JOB_STATUS_SUBMITTED, jobpb.JobStatus_JOB_STATUS_QUEUED, "orchestrator", "", ""},
		{3, jobpb.JobStatus_JOB_STATUS_QUEUED, jobpb.JobStatus_JOB_STATUS_RUNNING, "scheduler", "RUNNING", ""},
		{4, jobpb.JobStatus_JOB_STATUS_RUNNING, jobpb.JobStatus_JOB_STATUS_FAILED, "scheduler", "OutOfMemory", "OUT_OF_MEMORY"},
	}, got)
	require.True(t, strings.HasPrefix(evs[3].GetReason(),
		"The job ran out of memory on a node: it used more than the memory it asked for; resubmit with more memory_mb."), evs[3].GetReason())
	require.Contains(t, evs[3].GetReason(), "OutOfMemory", "the scheduler's own words follow")
	require.Equal(t, evs[3].GetReason(), h.GetJob().GetErrorMessage())

	// A cancellation names who cancelled.
	j, err := e.client.SubmitJob(ctx, validRequest("h2"))
	require.NoError(t, err)
	_, err = e.client.CancelJob(as(t, "root", true), &jobpb.CancelJobRequest{JobId: j.GetJob().GetJobId(), Reason: "maintenance"})
	require.NoError(t, err)
	h, err = e.client.GetJobHistory(ctx, &jobpb.GetJobHistoryRequest{JobId: j.GetJob().GetJobId()})
	require.NoError(t, err)
	require.Len(t, h.GetEvents(), 2)
	require.Equal(t, "root", h.GetEvents()[1].GetActor())
	require.Equal(t, "maintenance", h.GetEvents()[1].GetReason())

	_, err = e.client.GetJobHistory(as(t, "mallory", false), &jobpb.GetJobHistoryRequest{JobId: id})
	require.Equal(t, codes.NotFound, status.Code(err), "another user's job")
	_, err = e.client.GetJobHistory(ctx, &jobpb.GetJobHistoryRequest{})
	require.Equal(t, []string{"job_id"}, fieldPaths(t, err))
	_, err = e.client.GetJobHistory(as(t, "root", true), &jobpb.GetJobHistoryRequest{JobId: id})
	require.NoError(t, err, "an admin sees every job's history")
}

func mask(paths ...string) *fieldmaskpb.FieldMask { return &fieldmaskpb.FieldMask{Paths: paths} }

func TestResubmitJobWithMask(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := as(t, "alice", false)
	id := submitAndFail(t, e, "r0")
	orig, err := e.client.GetJob(ctx, &jobpb.GetJobRequest{JobId: id})
	require.NoError(t, err)

	req := &jobpb.ResubmitJobRequest{JobId: id, IdempotencyKey: "r1",
		Overrides:  &jobpb.JobSpec{Name: "ignored-not-in-mask", Resources: &jobpb.Resources{Walltime: durationpb.New(5 * time.Hour), Nodes: 99}},
		UpdateMask: mask("resources.walltime")}
	r, err := e.client.ResubmitJob(ctx, req)
	require.NoError(t, err)
	require.False(t, r.GetReplayed())
	nj := r.GetJob()
	require.NotEqual(t, id, nj.GetJobId())
	require.Equal(t, id, nj.GetResubmittedFrom())
	require.Equal(t, jobpb.JobStatus_JOB_STATUS_SUBMITTED, nj.GetStatus())
	want := proto.Clone(orig.GetJob().GetSpec()).(*jobpb.JobSpec)
	want.Resources.Walltime = durationpb.New(5 * time.Hour)
	require.True(t, proto.Equal(want, nj.GetSpec()), "walltime changed, the rest identical:\nwant %v\n got %v", want, nj.GetSpec())

	h, err := e.client.GetJobHistory(ctx, &jobpb.GetJobHistoryRequest{JobId: nj.GetJobId()})
	require.NoError(t, err)
	require.Equal(t, "resubmitted from job "+id, h.GetEvents()[0].GetReason())
	require.Equal(t, id, h.GetJob().GetResubmittedFrom())

	// The job.submitted event and its audit record name the earlier job.
	var submitted, audited bool
	for _, rec := range e.repo.Events() {
		switch p := rec.Event.Payload.(type) {
		case events.JobSubmitted:
			if p.JobID == nj.GetJobId() {
				require.NotNil(t, p.ResubmittedFrom)
				require.Equal(t, id, *p.ResubmittedFrom)
				submitted = true
			}
		case events.AuditActionRecorded:
			if p.ResourceID == nj.GetJobId() && p.Action == events.AuditActionSubmit {
				require.Equal(t, id, p.After["resubmitted_from"])
				require.Equal(t, "alice", p.ActorUserID)
				audited = true
			}
		}
	}
	require.True(t, submitted, "job.submitted with resubmitted_from")
	require.True(t, audited, "audit record of the resubmission")

	// A retry returns the same job; the key with another change is refused.
	again, err := e.client.ResubmitJob(ctx, req)
	require.NoError(t, err)
	require.True(t, again.GetReplayed())
	require.Equal(t, nj.GetJobId(), again.GetJob().GetJobId())
	other := proto.Clone(req).(*jobpb.ResubmitJobRequest)
	other.Overrides.Resources.Walltime = durationpb.New(6 * time.Hour)
	_, err = e.client.ResubmitJob(ctx, other)
	require.Equal(t, codes.AlreadyExists, status.Code(err))
	// A plain SubmitJob with the key of a resubmission is not a replay of it.
	sameSpec := &jobpb.SubmitJobRequest{IdempotencyKey: "r1", Spec: nj.GetSpec()}
	_, err = e.client.SubmitJob(ctx, sameSpec)
	require.Equal(t, codes.AlreadyExists, status.Code(err))

	// No mask: resubmitted unchanged.
	same, err := e.client.ResubmitJob(ctx, &jobpb.ResubmitJobRequest{JobId: id, IdempotencyKey: "r2"})
	require.NoError(t, err)
	require.True(t, proto.Equal(orig.GetJob().GetSpec(), same.GetJob().GetSpec()))

	// A map and a oneof member: replaced, the other member of the oneof cleared.
	env2, err := e.client.ResubmitJob(ctx, &jobpb.ResubmitJobRequest{JobId: id, IdempotencyKey: "r3",
		Overrides:  &jobpb.JobSpec{Environment: map[string]string{"SEED": "7"}, Payload: &jobpb.JobSpec_Script{Script: "#!/bin/sh\necho 7\n"}},
		UpdateMask: mask("environment", "script")})
	require.NoError(t, err)
	require.Equal(t, map[string]string{"SEED": "7"}, env2.GetJob().GetSpec().GetEnvironment())
	require.Equal(t, "#!/bin/sh\necho 7\n", env2.GetJob().GetSpec().GetScript())
	require.Empty(t, env2.GetJob().GetSpec().GetCommand())

	// A resubmission of a resubmission links to its direct parent.
	grand, err := e.client.ResubmitJob(ctx, &jobpb.ResubmitJobRequest{JobId: nj.GetJobId(), IdempotencyKey: "r4"})
	require.NoError(t, err)
	require.Equal(t, nj.GetJobId(), grand.GetJob().GetResubmittedFrom())
}

func TestResubmitJobRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := as(t, "alice", false)
	j, err := e.client.SubmitJob(ctx, validRequest("s1"))
	require.NoError(t, err)
	id := j.GetJob().GetJobId()
	before := e.repo.Count()

	tests := []struct {
		name   string
		req    *jobpb.ResubmitJobRequest
		fields []string
	}{
		{name: "unknown mask path", req: &jobpb.ResubmitJobRequest{JobId: id, IdempotencyKey: "b1",
			Overrides: &jobpb.JobSpec{}, UpdateMask: mask("resources.walltime", "resources.bogus", "payload")},
			fields: []string{"update_mask.paths[1]", "update_mask.paths[2]"}},
		{name: "path into a map", req: &jobpb.ResubmitJobRequest{JobId: id, IdempotencyKey: "b2",
			Overrides: &jobpb.JobSpec{}, UpdateMask: mask("environment.SEED")}, fields: []string{"update_mask.paths[0]"}},
		{name: "mask without overrides", req: &jobpb.ResubmitJobRequest{JobId: id, IdempotencyKey: "b3", UpdateMask: mask("partition")},
			fields: []string{"overrides"}},
		{name: "the new spec is validated like a submission", req: &jobpb.ResubmitJobRequest{JobId: id, IdempotencyKey: "b4",
			Overrides:  &jobpb.JobSpec{Partition: "no-such-partition", Resources: &jobpb.Resources{Nodes: 1, CoresPerNode: 1, Walltime: durationpb.New(100 * time.Hour)}},
			UpdateMask: mask("partition", "resources")},
			fields: []string{"overrides.partition", "overrides.resources.walltime"}},
		{name: "job id and key required", req: &jobpb.ResubmitJobRequest{}, fields: []string{"job_id", "idempotency_key"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.client.ResubmitJob(ctx, tc.req)
			require.Equal(t, tc.fields, fieldPaths(t, err))
		})
	}
	require.Equal(t, before, e.repo.Count(), "no job was created")

	eventsBefore := len(e.repo.Events())
	_, err = e.client.ResubmitJob(as(t, "mallory", false), &jobpb.ResubmitJobRequest{JobId: id, IdempotencyKey: "m1"})
	require.Equal(t, codes.NotFound, status.Code(err), "another user's job")
	_, err = e.client.ResubmitJob(ctx, &jobpb.ResubmitJobRequest{JobId: "no-such-job", IdempotencyKey: "m2"})
	require.Equal(t, codes.NotFound, status.Code(err))
	require.Equal(t, before, e.repo.Count())
	evs := e.repo.Events()[eventsBefore:]
	require.Len(t, evs, 1, "the refusal is audited, nothing else is written")
	denied := evs[0].Event.Payload.(events.AuditActionRecorded)
	require.Equal(t, events.AuditOutcomeDenied, denied.Outcome)
	require.Equal(t, events.AuditActionSubmit, denied.Action)
	require.Equal(t, "mallory", denied.ActorUserID)
}

func TestListJobsByTags(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := as(t, "alice", false)
	ids := map[string]string{}
	for key, tags := range map[string][]string{"t1": {"sweep:s1", "lr=0.1"}, "t2": {"sweep:s1", "lr=0.01"}, "t3": {"sweep:s2"}} {
		req := validRequest(key)
		req.Spec.Tags = tags
		j, err := e.client.SubmitJob(ctx, req)
		require.NoError(t, err)
		ids[key] = j.GetJob().GetJobId()
	}
	list := func(tags ...string) []string {
		t.Helper()
		var out []string
		tok := ""
		for {
			r, err := e.client.ListJobs(ctx, &jobpb.ListJobsRequest{Tags: tags, PageSize: 1, PageToken: tok})
			require.NoError(t, err)
			for _, j := range r.GetJobs() {
				out = append(out, j.GetJobId())
			}
			if tok = r.GetNextPageToken(); tok == "" {
				return out
			}
		}
	}
	require.ElementsMatch(t, []string{ids["t1"], ids["t2"]}, list("sweep:s1"))
	require.Equal(t, []string{ids["t1"]}, list("sweep:s1", "lr=0.1"))
	require.Empty(t, list("sweep:none"))

	_, err := e.client.ListJobs(ctx, &jobpb.ListJobsRequest{Tags: []string{"ok", "has space", ""}})
	require.Equal(t, []string{"tags[1]", "tags[2]"}, fieldPaths(t, err))
	_, err = e.client.ListJobs(ctx, &jobpb.ListJobsRequest{Tags: make([]string, 17)})
	require.Equal(t, []string{"tags"}, fieldPaths(t, err))

	// A page token of a listing by tags belongs to that listing only.
	r, err := e.client.ListJobs(ctx, &jobpb.ListJobsRequest{Tags: []string{"sweep:s1"}, PageSize: 1})
	require.NoError(t, err)
	require.NotEmpty(t, r.GetNextPageToken())
	_, err = e.client.ListJobs(ctx, &jobpb.ListJobsRequest{Tags: []string{"sweep:s2"}, PageSize: 1, PageToken: r.GetNextPageToken()})
	require.Equal(t, []string{"page_token"}, fieldPaths(t, err))
}

// A job that ended between two polls gets an implied RUNNING transition:
// the scheduler's code is on the transition it reported only.
func TestHistoryOfAJobThatEndedBetweenPolls(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := as(t, "alice", false)
	j, err := e.client.SubmitJob(ctx, validRequest("p1"))
	require.NoError(t, err)
	id := j.GetJob().GetJobId()
	e.rec.Pass(context.Background())
	got, err := e.client.GetJob(ctx, &jobpb.GetJobRequest{JobId: id})
	require.NoError(t, err)
	start := time.Now().Add(-time.Minute).UTC().Truncate(time.Second)
	e.sched.Set(got.GetJob().GetSchedulerJobId(), app.SchedulerStatus{Phase: app.PhaseFailed, State: "TIMEOUT", Code: "TimeLimit",
		ErrorCode: app.ErrorCodeTimeout, StartTime: start, EndTime: start.Add(30 * time.Second)})
	e.rec.Pass(context.Background())
	h, err := e.client.GetJobHistory(ctx, &jobpb.GetJobHistoryRequest{JobId: id})
	require.NoError(t, err)
	require.Len(t, h.GetEvents(), 4)
	running, failed := h.GetEvents()[2], h.GetEvents()[3]
	require.Equal(t, jobpb.JobStatus_JOB_STATUS_RUNNING, running.GetToStatus())
	require.Equal(t, "scheduler", running.GetActor())
	require.Empty(t, running.GetSchedulerCode())
	require.Equal(t, "TimeLimit", failed.GetSchedulerCode())
	require.Equal(t, "TIMEOUT", failed.GetErrorCode())
	require.True(t, strings.HasPrefix(failed.GetReason(), "The job ran longer than its walltime and was stopped; resubmit with a longer walltime"), failed.GetReason())
	require.Contains(t, failed.GetReason(), "job ended in scheduler state TIMEOUT", "the scheduler's words, made up when it gave none")
}
