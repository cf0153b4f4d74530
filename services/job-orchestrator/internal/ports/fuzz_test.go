package ports_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/service/servicefuzz"
	"github.com/cosmic-horizons/fleet/libs/sqlstore"
	"github.com/cosmic-horizons/fleet/libs/sqlstore/sqlstoretest"
	"github.com/cosmic-horizons/fleet/libs/telemetry"
	jobpb "github.com/cosmic-horizons/fleet/proto/fleet/job/v1"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/adapters/outputdir"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/adapters/scheduler/local"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/adapters/store"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/app"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/app/apptest"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/domain"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/ports"
)

// fuzzJobs is the JobService over a real SQLite store, served in process
// through the runtime's interceptors and the JWT interceptors, holding one
// job of servicefuzz.FuzzUser and one of servicefuzz.FuzzOtherUser. The
// scheduler is not called by the handlers (the reconciler, not started
// here, is what submits to it).
type fuzzJobs struct {
	srv              *servicefuzz.Server
	db               *sqlstore.DB
	userJob, otherID string
}

func newFuzzJobs(f *testing.F) *fuzzJobs {
	ctx := context.Background()
	db := sqlstoretest.OpenURL(f, "sqlite://"+filepath.Join(f.TempDir(), "jobs.db"))
	require.NoError(f, store.Migrate(ctx, db))
	codec, err := events.NewCodec()
	require.NoError(f, err)
	st, err := store.New(db, codec, store.Config{})
	require.NoError(f, err)
	cfg := app.DefaultConfig()
	cfg.PageTokenKey = telemetry.Secret("fuzz-page-token-key-0123456789")
	cfg.WatchPollInterval = 20 * time.Millisecond
	cfg.WorkDir = f.TempDir()
	outputs, err := outputdir.New(cfg.WorkDir, local.StreamFile)
	require.NoError(f, err)
	fj := &fuzzJobs{db: db}
	fj.srv = servicefuzz.InProcess(f, "job-orchestrator", func(s *grpc.Server, logger *slog.Logger) {
		a, err := app.New(cfg, app.Deps{Repo: st, Scheduler: apptest.NewFakeScheduler(), Catalogue: domain.DefaultCatalogue(), Logger: logger, Outputs: outputs})
		require.NoError(f, err)
		jobpb.RegisterJobServiceServer(s, ports.NewJobServer(a, logger))
	})
	client := jobpb.NewJobServiceClient(fj.srv.Conn)
	r, err := client.SubmitJob(fj.srv.Caller(servicefuzz.CallerUser), validRequest("fuzz-user-job"))
	require.NoError(f, err)
	fj.userJob = r.GetJob().GetJobId()
	r, err = client.SubmitJob(fj.srv.Caller(servicefuzz.CallerOther), validRequest("fuzz-other-job"))
	require.NoError(f, err)
	fj.otherID = r.GetJob().GetJobId()
	return fj
}

// state counts the rows of every table and the sum of the jobs' versions
// (every change of a job bumps its version); with auditedRefusals, audit
// events in the outbox are left out, because a refused cancel of another
// user's job is audited (outcome DENIED) by design.
func (fj *fuzzJobs) state(auditedRefusals bool) servicefuzz.State {
	return func(t testing.TB) map[string]int64 {
		counts := sqlstoretest.RowCounts(t, fj.db)
		var versions int64
		require.NoError(t, fj.db.Writer().QueryRow(`SELECT COALESCE(SUM(version), 0) FROM jobs`).Scan(&versions))
		counts["job versions"] = versions
		if auditedRefusals {
			var audit int64
			require.NoError(t, fj.db.Writer().QueryRow(`SELECT count(*) FROM outbox WHERE event_type = ?`, events.TypeAuditActionRecorded).Scan(&audit))
			counts["outbox"] -= audit
		}
		return counts
	}
}

func jobMethod(f *testing.F, name string) protoreflect.MethodDescriptor {
	md := servicefuzz.Methods(f, jobpb.File_fleet_job_v1_job_proto.Services().Get(0).FullName()).ByName(protoreflect.Name(name))
	require.NotNil(f, md, name)
	return md
}

func FuzzJobSubmitJob(f *testing.F) {
	fj := newFuzzJobs(f)
	bad := validRequest("fuzz-bad")
	bad.Spec.Resources.Nodes = 1 << 20
	script := validRequest("fuzz-script")
	script.Spec.Payload = &jobpb.JobSpec_Script{Script: "#!/bin/sh\necho hi\n"}
	fj.srv.Fuzz(f, jobMethod(f, "SubmitJob"), fj.state(false),
		validRequest("fuzz-seed"), validRequest("fuzz-user-job"), bad, script)
}

func FuzzJobGetJob(f *testing.F) {
	fj := newFuzzJobs(f)
	fj.srv.Fuzz(f, jobMethod(f, "GetJob"), fj.state(false),
		&jobpb.GetJobRequest{JobId: fj.userJob}, &jobpb.GetJobRequest{JobId: fj.otherID}, &jobpb.GetJobRequest{JobId: "../x"})
}

func FuzzJobListJobs(f *testing.F) {
	fj := newFuzzJobs(f)
	fj.srv.Fuzz(f, jobMethod(f, "ListJobs"), fj.state(false),
		&jobpb.ListJobsRequest{PageSize: 1},
		&jobpb.ListJobsRequest{Statuses: []jobpb.JobStatus{jobpb.JobStatus_JOB_STATUS_SUBMITTED, 99}, PageSize: -1},
		&jobpb.ListJobsRequest{PageToken: "bm90LWEtdG9rZW4", CreatedAfter: &timestamppb.Timestamp{Seconds: -1 << 40}},
	)
}

func FuzzJobCancelJob(f *testing.F) {
	fj := newFuzzJobs(f)
	fj.srv.Fuzz(f, jobMethod(f, "CancelJob"), fj.state(true),
		&jobpb.CancelJobRequest{JobId: fj.otherID, Reason: "not mine"}, &jobpb.CancelJobRequest{JobId: "missing"},
		&jobpb.CancelJobRequest{JobId: fj.userJob, Reason: string(make([]byte, 5000))})
}

func FuzzJobWatchJob(f *testing.F) {
	fj := newFuzzJobs(f)
	fj.srv.Fuzz(f, jobMethod(f, "WatchJob"), fj.state(false),
		&jobpb.WatchJobRequest{JobId: fj.userJob, ReplayHistory: true}, &jobpb.WatchJobRequest{JobId: fj.otherID}, &jobpb.WatchJobRequest{})
}

func FuzzJobGetJobHistory(f *testing.F) {
	fj := newFuzzJobs(f)
	fj.srv.Fuzz(f, jobMethod(f, "GetJobHistory"), fj.state(false),
		&jobpb.GetJobHistoryRequest{JobId: fj.userJob}, &jobpb.GetJobHistoryRequest{JobId: fj.otherID}, &jobpb.GetJobHistoryRequest{})
}

// A refused resubmission of another user's job is audited (DENIED), like a
// refused cancel.
func FuzzJobResubmitJob(f *testing.F) {
	fj := newFuzzJobs(f)
	fj.srv.Fuzz(f, jobMethod(f, "ResubmitJob"), fj.state(true),
		&jobpb.ResubmitJobRequest{JobId: fj.userJob, IdempotencyKey: "fuzz-resubmit",
			Overrides: &jobpb.JobSpec{Resources: &jobpb.Resources{Walltime: durationpb.New(time.Hour)}}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"resources.walltime"}}},
		&jobpb.ResubmitJobRequest{JobId: fj.otherID, IdempotencyKey: "fuzz-other"},
		&jobpb.ResubmitJobRequest{JobId: fj.userJob, IdempotencyKey: "fuzz-bad-mask", UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"resources.bogus", "payload"}}},
		&jobpb.ResubmitJobRequest{JobId: fj.userJob, IdempotencyKey: "fuzz-bad-value",
			Overrides: &jobpb.JobSpec{Resources: &jobpb.Resources{Nodes: -1}}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"resources"}}})
}

// TestEveryJobMethodIsFuzzed fails when JobService gains a method without a
// fuzz target above.
func TestEveryJobMethodIsFuzzed(t *testing.T) {
	fuzzed := map[protoreflect.Name]bool{"SubmitJob": true, "GetJob": true, "ListJobs": true, "CancelJob": true, "WatchJob": true,
		"StreamJobOutput": true, "ListJobOutputs": true, "DownloadJobOutput": true,
		"GetJobHistory": true, "ResubmitJob": true}
	ms := servicefuzz.Methods(t, jobpb.File_fleet_job_v1_job_proto.Services().Get(0).FullName())
	for i := range ms.Len() {
		require.True(t, fuzzed[ms.Get(i).Name()], "no fuzz target for %s", ms.Get(i).FullName())
	}
}
