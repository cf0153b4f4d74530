package ports_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cosmic-horizons/fleet/libs/auth"
	"github.com/cosmic-horizons/fleet/libs/telemetry"
	jobpb "github.com/cosmic-horizons/fleet/proto/fleet/job/v1"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/app"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/app/apptest"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/domain"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/ports"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const secret = "test-secret-test-secret-test-secret!"

type env struct {
	client jobpb.JobServiceClient
	health healthpb.HealthClient
	repo   *apptest.MemRepo
	sched  *apptest.FakeScheduler
	rec    *app.Reconciler
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvWith(t, nil)
}

func newEnvWith(t *testing.T, mut func(*app.Config)) *env {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	e := &env{repo: apptest.NewMemRepo(), sched: apptest.NewFakeScheduler()}
	cfg := app.DefaultConfig()
	cfg.PageTokenKey = telemetry.Secret("page-token-key-page-token-key")
	cfg.WatchPollInterval = 20 * time.Millisecond
	if mut != nil {
		mut(&cfg)
	}
	a, err := app.New(cfg, app.Deps{Repo: e.repo, Scheduler: e.sched, Catalogue: domain.DefaultCatalogue(), Logger: logger})
	require.NoError(t, err)
	rcfg := app.DefaultReconcilerConfig()
	rcfg.Interval, rcfg.MaxInterval = 5*time.Millisecond, 20*time.Millisecond
	e.rec, err = app.NewReconciler(a, rcfg, logger)
	require.NoError(t, err)

	acfg := auth.DefaultConfig()
	acfg.HS256Secret = secret
	v, err := auth.NewVerifier(context.Background(), acfg, nil, logger)
	require.NoError(t, err)

	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer(auth.NewInterceptors(v, logger).ServerOptions()...)
	jobpb.RegisterJobServiceServer(srv, ports.NewJobServer(a, logger))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go func() { _ = srv.Serve(lis) }()
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = conn.Close()
		srv.Stop()
	})
	e.client = jobpb.NewJobServiceClient(conn)
	e.health = healthpb.NewHealthClient(conn)
	return e
}

func as(t *testing.T, user string, admin bool) context.Context {
	t.Helper()
	c := jwt.MapClaims{"sub": user, "exp": time.Now().Add(time.Hour).Unix()}
	if admin {
		c["role"] = "admin"
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(secret))
	require.NoError(t, err)
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok)
}

func validRequest(key string) *jobpb.SubmitJobRequest {
	return &jobpb.SubmitJobRequest{
		IdempotencyKey: key,
		Spec: &jobpb.JobSpec{
			Name: "reconstruct", Agent: jobpb.Agent_AGENT_CUSTOM, DatasetId: "VLASS3.1.T01",
			TaccSystem: jobpb.TaccSystem_TACC_SYSTEM_STAMPEDE3, Partition: "h100",
			Resources:   &jobpb.Resources{Nodes: 1, CoresPerNode: 64, GpusPerNode: 4, MemoryMb: 262144, Walltime: durationpb.New(2 * time.Hour)},
			Payload:     &jobpb.JobSpec_Command{Command: "python3 -m reconstruct --niter 1000"},
			Environment: map[string]string{"OMP_NUM_THREADS": "16"},
			Priority:    jobpb.Priority_PRIORITY_HIGH,
			Tags:        []string{"vlass"},
			Allocation:  "AST23005",
		},
	}
}

func fieldPaths(t *testing.T, err error) []string {
	t.Helper()
	st := status.Convert(err)
	require.Equal(t, codes.InvalidArgument, st.Code(), st.Message())
	var out []string
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				out = append(out, v.GetField())
			}
		}
	}
	return out
}

func TestSubmitJobValidation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := as(t, "alice", false)
	tests := []struct {
		name   string
		mutate func(*jobpb.SubmitJobRequest)
		fields []string
	}{
		{name: "no idempotency key", mutate: func(r *jobpb.SubmitJobRequest) { r.IdempotencyKey = "" }, fields: []string{"idempotency_key"}},
		{name: "bad idempotency key", mutate: func(r *jobpb.SubmitJobRequest) { r.IdempotencyKey = "has space" }, fields: []string{"idempotency_key"}},
		{name: "no spec", mutate: func(r *jobpb.SubmitJobRequest) { r.Spec = nil }, fields: []string{"spec"}},
		{name: "name", mutate: func(r *jobpb.SubmitJobRequest) { r.Spec.Name = "bad name!" }, fields: []string{"spec.name"}},
		{name: "agent unspecified", mutate: func(r *jobpb.SubmitJobRequest) { r.Spec.Agent = jobpb.Agent_AGENT_UNSPECIFIED }, fields: []string{"spec.agent"}},
		{name: "agent out of range", mutate: func(r *jobpb.SubmitJobRequest) { r.Spec.Agent = 99 }, fields: []string{"spec.agent"}},
		{name: "dataset for agent", mutate: func(r *jobpb.SubmitJobRequest) {
			r.Spec.Agent, r.Spec.DatasetId = jobpb.Agent_AGENT_IMAGE_RECONSTRUCTION, ""
		}, fields: []string{"spec.dataset_id"}},
		{name: "dataset format", mutate: func(r *jobpb.SubmitJobRequest) { r.Spec.DatasetId = "../../etc/passwd" }, fields: []string{"spec.dataset_id"}},
		{name: "system unspecified", mutate: func(r *jobpb.SubmitJobRequest) { r.Spec.TaccSystem = 0 }, fields: []string{"spec.tacc_system"}},
		{name: "system unknown", mutate: func(r *jobpb.SubmitJobRequest) { r.Spec.TaccSystem = 42 }, fields: []string{"spec.tacc_system"}},
		{name: "partition unknown", mutate: func(r *jobpb.SubmitJobRequest) { r.Spec.Partition = "gpu-a100" }, fields: []string{"spec.partition"}},
		{name: "no resources", mutate: func(r *jobpb.SubmitJobRequest) { r.Spec.Resources = nil }, fields: []string{
			"spec.resources.nodes", "spec.resources.cores_per_node", "spec.resources.walltime",
		}},
		{name: "nodes", mutate: func(r *jobpb.SubmitJobRequest) { r.Spec.Resources.Nodes = 5 }, fields: []string{"spec.resources.nodes"}},
		{name: "cores", mutate: func(r *jobpb.SubmitJobRequest) { r.Spec.Resources.CoresPerNode = 97 }, fields: []string{"spec.resources.cores_per_node"}},
		{name: "gpus", mutate: func(r *jobpb.SubmitJobRequest) { r.Spec.Resources.GpusPerNode = 5 }, fields: []string{"spec.resources.gpus_per_node"}},
		{name: "memory", mutate: func(r *jobpb.SubmitJobRequest) { r.Spec.Resources.MemoryMb = 2 << 21 }, fields: []string{"spec.resources.memory_mb"}},
		{name: "walltime missing", mutate: func(r *jobpb.SubmitJobRequest) { r.Spec.Resources.Walltime = nil }, fields: []string{"spec.resources.walltime"}},
		{name: "walltime too long", mutate: func(r *jobpb.SubmitJobRequest) { r.Spec.Resources.Walltime = durationpb.New(49 * time.Hour) }, fields: []string{"spec.resources.walltime"}},
		{name: "walltime negative", mutate: func(r *jobpb.SubmitJobRequest) { r.Spec.Resources.Walltime = durationpb.New(-time.Hour) }, fields: []string{"spec.resources.walltime"}},
		{name: "custom without payload", mutate: func(r *jobpb.SubmitJobRequest) { r.Spec.Payload = nil }, fields: []string{"spec.payload"}},
		{name: "oversized script", mutate: func(r *jobpb.SubmitJobRequest) {
			r.Spec.Payload = &jobpb.JobSpec_Script{Script: "#!/bin/sh\n" + strings.Repeat("x", 70000)}
		}, fields: []string{"spec.script"}},
		{name: "script without shebang", mutate: func(r *jobpb.SubmitJobRequest) {
			r.Spec.Payload = &jobpb.JobSpec_Script{Script: "rm -rf /"}
		}, fields: []string{"spec.script"}},
		{name: "command unterminated", mutate: func(r *jobpb.SubmitJobRequest) {
			r.Spec.Payload = &jobpb.JobSpec_Command{Command: `echo "x`}
		}, fields: []string{"spec.command"}},
		{name: "env key", mutate: func(r *jobpb.SubmitJobRequest) { r.Spec.Environment = map[string]string{"A B": "x"} }, fields: []string{"spec.environment[A B]"}},
		{name: "env reserved", mutate: func(r *jobpb.SubmitJobRequest) { r.Spec.Environment = map[string]string{"LD_PRELOAD": "x"} }, fields: []string{"spec.environment[LD_PRELOAD]"}},
		{name: "env slurm", mutate: func(r *jobpb.SubmitJobRequest) { r.Spec.Environment = map[string]string{"SLURM_NNODES": "9"} }, fields: []string{"spec.environment[SLURM_NNODES]"}},
		{name: "priority", mutate: func(r *jobpb.SubmitJobRequest) { r.Spec.Priority = 7 }, fields: []string{"spec.priority"}},
		{name: "tags", mutate: func(r *jobpb.SubmitJobRequest) { r.Spec.Tags = []string{"ok", ""} }, fields: []string{"spec.tags[1]"}},
		{name: "allocation", mutate: func(r *jobpb.SubmitJobRequest) { r.Spec.Allocation = "" }, fields: []string{"spec.allocation"}},
		{name: "several at once", mutate: func(r *jobpb.SubmitJobRequest) {
			r.IdempotencyKey, r.Spec.Name, r.Spec.Allocation = "", "", ""
		}, fields: []string{"idempotency_key", "spec.name", "spec.allocation"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := validRequest("key-" + strings.ReplaceAll(tt.name, " ", "-"))
			tt.mutate(req)
			_, err := e.client.SubmitJob(ctx, req)
			require.Equal(t, tt.fields, fieldPaths(t, err))
			require.Zero(t, e.repo.Count(), "nothing stored")
			require.Empty(t, e.repo.Events(), "no event written")
		})
	}
	// The valid request itself is accepted.
	resp, err := e.client.SubmitJob(ctx, validRequest("ok"))
	require.NoError(t, err)
	require.Equal(t, jobpb.JobStatus_JOB_STATUS_SUBMITTED, resp.GetJob().GetStatus())
	require.InDelta(t, 2*0.10+8*0.35, resp.GetJob().GetCostEstimate().GetUsd(), 1e-9)
}

func TestSubmitJobIdempotent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := as(t, "alice", false)
	first, err := e.client.SubmitJob(ctx, validRequest("idem-1"))
	require.NoError(t, err)
	require.False(t, first.GetReplayed())
	second, err := e.client.SubmitJob(ctx, validRequest("idem-1"))
	require.NoError(t, err)
	require.True(t, second.GetReplayed())
	require.Equal(t, first.GetJob().GetJobId(), second.GetJob().GetJobId())
	require.Equal(t, 1, e.repo.Count())

	changed := validRequest("idem-1")
	changed.Spec.Name = "other"
	_, err = e.client.SubmitJob(ctx, changed)
	require.Equal(t, codes.AlreadyExists, status.Code(err))
	require.Equal(t, 1, e.repo.Count())
}

func TestCancelTwiceAndFinished(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := as(t, "alice", false)
	j, err := e.client.SubmitJob(ctx, validRequest("c1"))
	require.NoError(t, err)
	id := j.GetJob().GetJobId()
	for range 2 {
		resp, err := e.client.CancelJob(ctx, &jobpb.CancelJobRequest{JobId: id, Reason: "no longer needed"})
		require.NoError(t, err)
		require.Equal(t, jobpb.JobStatus_JOB_STATUS_CANCELLED, resp.GetJob().GetStatus())
		require.NotNil(t, resp.GetJob().GetFinishedAt())
	}
	_, err = e.client.CancelJob(ctx, &jobpb.CancelJobRequest{JobId: id, Reason: strings.Repeat("r", 513)})
	require.Equal(t, []string{"reason"}, fieldPaths(t, err))

	// A completed job: FailedPrecondition.
	done, err := e.client.SubmitJob(ctx, validRequest("c2"))
	require.NoError(t, err)
	e.rec.Pass(context.Background())
	got, err := e.client.GetJob(ctx, &jobpb.GetJobRequest{JobId: done.GetJob().GetJobId()})
	require.NoError(t, err)
	require.Equal(t, jobpb.JobStatus_JOB_STATUS_QUEUED, got.GetJob().GetStatus())
	exit := int32(0)
	e.sched.Set(got.GetJob().GetSchedulerJobId(), app.SchedulerStatus{Phase: app.PhaseCompleted, State: "COMPLETED", ExitCode: &exit})
	e.rec.Pass(context.Background())
	_, err = e.client.CancelJob(ctx, &jobpb.CancelJobRequest{JobId: done.GetJob().GetJobId()})
	require.Equal(t, codes.FailedPrecondition, status.Code(err))
}

func TestListJobsPaging(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	alice := as(t, "alice", false)
	var want []string
	for i := range 7 {
		r, err := e.client.SubmitJob(alice, validRequest("l"+string(rune('a'+i))))
		require.NoError(t, err)
		want = append([]string{r.GetJob().GetJobId()}, want...)
	}
	_, err := e.client.SubmitJob(as(t, "bob", false), validRequest("bob"))
	require.NoError(t, err)

	var got []string
	req := &jobpb.ListJobsRequest{PageSize: 3, TaccSystem: jobpb.TaccSystem_TACC_SYSTEM_STAMPEDE3,
		Statuses: []jobpb.JobStatus{jobpb.JobStatus_JOB_STATUS_SUBMITTED}}
	for {
		resp, err := e.client.ListJobs(alice, req)
		require.NoError(t, err)
		for _, j := range resp.GetJobs() {
			got = append(got, j.GetJobId())
			require.Equal(t, "alice", j.GetUserId())
		}
		if resp.GetNextPageToken() == "" {
			break
		}
		req.PageToken = resp.GetNextPageToken()
	}
	require.Equal(t, want, got)

	all, err := e.client.ListJobs(as(t, "root", true), &jobpb.ListJobsRequest{})
	require.NoError(t, err)
	require.Len(t, all.GetJobs(), 8, "an admin sees every user's jobs")

	_, err = e.client.ListJobs(alice, &jobpb.ListJobsRequest{PageToken: "forged.token"})
	require.Equal(t, []string{"page_token"}, fieldPaths(t, err))
	_, err = e.client.ListJobs(alice, &jobpb.ListJobsRequest{Statuses: []jobpb.JobStatus{jobpb.JobStatus_JOB_STATUS_UNSPECIFIED}})
	require.Equal(t, []string{"statuses[0]"}, fieldPaths(t, err))
}

func TestWatchJobReplayEndsAtTerminal(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := as(t, "alice", false)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	sub, err := e.client.SubmitJob(ctx, validRequest("w"))
	require.NoError(t, err)
	id := sub.GetJob().GetJobId()

	recCtx, stopRec := context.WithCancel(context.Background())
	recDone := make(chan error, 1)
	go func() { recDone <- e.rec.Run(recCtx) }()
	defer func() { stopRec(); require.NoError(t, <-recDone) }()

	stream, err := e.client.WatchJob(ctx, &jobpb.WatchJobRequest{JobId: id, ReplayHistory: true})
	require.NoError(t, err)
	var got []*jobpb.JobEvent
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		ev := msg.GetEvent()
		got = append(got, ev)
		switch ev.GetToStatus() {
		case jobpb.JobStatus_JOB_STATUS_QUEUED:
			j, err := e.client.GetJob(ctx, &jobpb.GetJobRequest{JobId: id})
			require.NoError(t, err)
			e.sched.Set(j.GetJob().GetSchedulerJobId(), app.SchedulerStatus{Phase: app.PhaseRunning, State: "RUNNING"})
		case jobpb.JobStatus_JOB_STATUS_RUNNING:
			j, err := e.client.GetJob(ctx, &jobpb.GetJobRequest{JobId: id})
			require.NoError(t, err)
			exit := int32(0)
			e.sched.Set(j.GetJob().GetSchedulerJobId(), app.SchedulerStatus{Phase: app.PhaseCompleted, State: "COMPLETED", ExitCode: &exit})
		}
	}
	var to []jobpb.JobStatus
	for i, ev := range got {
		require.Equal(t, int64(i+1), ev.GetSequence())
		require.Equal(t, id, ev.GetJobId())
		require.NotEmpty(t, ev.GetEventId())
		to = append(to, ev.GetToStatus())
	}
	require.Equal(t, []jobpb.JobStatus{
		jobpb.JobStatus_JOB_STATUS_SUBMITTED, jobpb.JobStatus_JOB_STATUS_QUEUED,
		jobpb.JobStatus_JOB_STATUS_RUNNING, jobpb.JobStatus_JOB_STATUS_COMPLETED,
	}, to)
	require.Equal(t, jobpb.JobStatus_JOB_STATUS_UNSPECIFIED, got[0].GetFromStatus())
}

func TestUnauthenticatedRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	_, err := e.client.SubmitJob(ctx, validRequest("u"))
	require.Equal(t, codes.Unauthenticated, status.Code(err))
	_, err = e.client.ListJobs(ctx, &jobpb.ListJobsRequest{})
	require.Equal(t, codes.Unauthenticated, status.Code(err))
	stream, err := e.client.WatchJob(ctx, &jobpb.WatchJobRequest{JobId: "x"})
	require.NoError(t, err)
	_, err = stream.Recv()
	require.Equal(t, codes.Unauthenticated, status.Code(err))
	bad := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer not-a-token")
	_, err = e.client.GetJob(bad, &jobpb.GetJobRequest{JobId: "x"})
	require.Equal(t, codes.Unauthenticated, status.Code(err))
	require.Zero(t, e.repo.Count())

	resp, err := e.health.Check(ctx, &healthpb.HealthCheckRequest{})
	require.NoError(t, err, "health checks need no token")
	require.Equal(t, healthpb.HealthCheckResponse_SERVING, resp.GetStatus())
}

func TestOtherUsersJobInvisible(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	alice, bob, root := as(t, "alice", false), as(t, "bob", false), as(t, "root", true)
	sub, err := e.client.SubmitJob(alice, validRequest("mine"))
	require.NoError(t, err)
	id := sub.GetJob().GetJobId()

	_, err = e.client.GetJob(bob, &jobpb.GetJobRequest{JobId: id})
	require.Equal(t, codes.NotFound, status.Code(err), "NotFound, not PermissionDenied: existence does not leak")
	_, err = e.client.GetJob(bob, &jobpb.GetJobRequest{JobId: "no-such-job"})
	require.Equal(t, codes.NotFound, status.Code(err), "indistinguishable from a missing job")
	_, err = e.client.CancelJob(bob, &jobpb.CancelJobRequest{JobId: id})
	require.Equal(t, codes.NotFound, status.Code(err))
	stream, err := e.client.WatchJob(bob, &jobpb.WatchJobRequest{JobId: id, ReplayHistory: true})
	require.NoError(t, err)
	_, err = stream.Recv()
	require.Equal(t, codes.NotFound, status.Code(err))
	list, err := e.client.ListJobs(bob, &jobpb.ListJobsRequest{})
	require.NoError(t, err)
	require.Empty(t, list.GetJobs())

	got, err := e.client.GetJob(root, &jobpb.GetJobRequest{JobId: id})
	require.NoError(t, err, "an admin sees every job")
	require.Equal(t, "alice", got.GetJob().GetUserId())
	c, err := e.client.CancelJob(root, &jobpb.CancelJobRequest{JobId: id, Reason: "admin"})
	require.NoError(t, err)
	require.Equal(t, jobpb.JobStatus_JOB_STATUS_CANCELLED, c.GetJob().GetStatus())
	_, err = e.client.GetJob(alice, &jobpb.GetJobRequest{JobId: ""})
	require.Equal(t, []string{"job_id"}, fieldPaths(t, err))
}

func TestListJobsFilterBounds(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	alice := as(t, "alice", false)
	many := make([]jobpb.JobStatus, 100_000)
	for i := range many {
		many[i] = jobpb.JobStatus_JOB_STATUS_RUNNING
	}
	tests := []struct {
		name string
		req  *jobpb.ListJobsRequest
		want []string
	}{
		{name: "100,000 statuses", req: &jobpb.ListJobsRequest{Statuses: many}, want: []string{"statuses"}},
		{name: "seven statuses", req: &jobpb.ListJobsRequest{Statuses: many[:7]}, want: []string{"statuses"}},
		{name: "page size too large", req: &jobpb.ListJobsRequest{PageSize: 1_000_000}, want: []string{"page_size"}},
		{name: "negative page size", req: &jobpb.ListJobsRequest{PageSize: -1}, want: []string{"page_size"}},
		{name: "timestamp out of proto range", req: &jobpb.ListJobsRequest{CreatedAfter: &timestamppb.Timestamp{Seconds: 1 << 62}}, want: []string{"created_after"}},
		{name: "bad nanos", req: &jobpb.ListJobsRequest{CreatedBefore: &timestamppb.Timestamp{Seconds: 1, Nanos: -5}}, want: []string{"created_before"}},
		{name: "before 1970", req: &jobpb.ListJobsRequest{CreatedAfter: timestamppb.New(time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC))}, want: []string{"created_after"}},
		{name: "year 9999", req: &jobpb.ListJobsRequest{CreatedBefore: timestamppb.New(time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC))}, want: []string{"created_before"}},
		{name: "from after to", req: &jobpb.ListJobsRequest{CreatedAfter: timestamppb.New(time.Now()), CreatedBefore: timestamppb.New(time.Now().Add(-time.Hour))}, want: []string{"created_before"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := e.client.ListJobs(alice, tt.req)
			require.Equal(t, tt.want, fieldPaths(t, err))
		})
	}
	_, err := e.client.ListJobs(alice, &jobpb.ListJobsRequest{Statuses: many[:6],
		CreatedAfter: timestamppb.New(time.Now().Add(-time.Hour)), CreatedBefore: timestamppb.New(time.Now())})
	require.NoError(t, err, "six statuses and a sane range are fine")
}

// TestErrorsCarryNoDriverText: a failing database's own words (here a
// PostgreSQL connection error naming the host and user) reach the log,
// never the client.
func TestErrorsCarryNoDriverText(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	alice := as(t, "alice", false)
	sub, err := e.client.SubmitJob(alice, validRequest("driver"))
	require.NoError(t, err)
	driver := errors.New(`failed to connect to host=db-primary.internal user=orchestrator database=jobs: FATAL: password authentication failed (SQLSTATE 28P01)`)
	e.repo.SetFailure(fmt.Errorf("%w: %w", domain.ErrUnavailable, driver))

	calls := map[string]func() error{
		"SubmitJob": func() error { _, err := e.client.SubmitJob(alice, validRequest("driver-2")); return err },
		"GetJob": func() error {
			_, err := e.client.GetJob(alice, &jobpb.GetJobRequest{JobId: sub.GetJob().GetJobId()})
			return err
		},
		"ListJobs": func() error { _, err := e.client.ListJobs(alice, &jobpb.ListJobsRequest{}); return err },
		"CancelJob": func() error {
			_, err := e.client.CancelJob(alice, &jobpb.CancelJobRequest{JobId: sub.GetJob().GetJobId()})
			return err
		},
	}
	for name, call := range calls {
		err := call()
		st := status.Convert(err)
		require.Equal(t, codes.Unavailable, st.Code(), name)
		for _, leak := range []string{"db-primary", "SQLSTATE", "password", "orchestrator", "FATAL"} {
			require.NotContains(t, st.Message(), leak, name)
		}
	}
	e.repo.SetFailure(nil)
	_, err = e.client.GetJob(alice, &jobpb.GetJobRequest{JobId: strings.Repeat("x", 4000)})
	require.Equal(t, codes.NotFound, status.Code(err))
	require.NotContains(t, status.Convert(err).Message(), "xxxx", "a NotFound does not echo the id")
}

// TestWatchJobEndsWhenTheTokenExpires: a watch on a job that stays queued
// ends with Unauthenticated once the token that opened it expires (the
// default leeway of 30 s is added to exp).
func TestWatchJobEndsWhenTheTokenExpires(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	alice := as(t, "alice", false)
	sub, err := e.client.SubmitJob(alice, validRequest("expiring"))
	require.NoError(t, err)

	c := jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(-29 * time.Second).Unix()}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(secret))
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
	stream, err := e.client.WatchJob(ctx, &jobpb.WatchJobRequest{JobId: sub.GetJob().GetJobId()})
	require.NoError(t, err)
	start := time.Now()
	for {
		_, err = stream.Recv()
		if err != nil {
			break
		}
	}
	require.Equal(t, codes.Unauthenticated, status.Code(err), "%v", err)
	require.Less(t, time.Since(start), 10*time.Second)
}

func asWith(t *testing.T, user string, extra jwt.MapClaims) context.Context {
	t.Helper()
	c := jwt.MapClaims{"sub": user, "exp": time.Now().Add(time.Hour).Unix()}
	for k, v := range extra {
		c[k] = v
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(secret))
	require.NoError(t, err)
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok)
}

// TestAllocationsChargedByMembersOnly: allocations are charged only by their members: the token's allocations
// claim, else the configured map, decides; others are PermissionDenied and
// nothing is written.
func TestAllocationsChargedByMembersOnly(t *testing.T) {
	t.Parallel()
	req := validRequest // allocation AST23005
	tests := []struct {
		name   string
		cfg    map[string][]string
		ctx    func(t *testing.T) context.Context
		wantOK bool
	}{
		{name: "claim lists it", ctx: func(t *testing.T) context.Context {
			return asWith(t, "alice", jwt.MapClaims{"allocations": []string{"AST21001", "AST23005"}})
		}, wantOK: true},
		{name: "claim lacks it", ctx: func(t *testing.T) context.Context {
			return asWith(t, "alice", jwt.MapClaims{"allocations": []string{"AST21001"}})
		}},
		{name: "empty claim grants none", ctx: func(t *testing.T) context.Context {
			return asWith(t, "alice", jwt.MapClaims{"allocations": []string{}})
		}},
		{name: "claim wins over the map", cfg: map[string][]string{"alice": {"AST23005"}}, ctx: func(t *testing.T) context.Context {
			return asWith(t, "alice", jwt.MapClaims{"allocations": []string{"AST21001"}})
		}},
		{name: "map lists it", cfg: map[string][]string{"alice": {"AST23005"}}, ctx: func(t *testing.T) context.Context { return as(t, "alice", false) }, wantOK: true},
		{name: "map lacks it", cfg: map[string][]string{"alice": {"AST21001"}, "bob": {"AST23005"}}, ctx: func(t *testing.T) context.Context { return as(t, "alice", false) }},
		{name: "user not in the map", cfg: map[string][]string{"bob": {"AST23005"}}, ctx: func(t *testing.T) context.Context { return as(t, "alice", false) }},
		{name: "admin charges any", cfg: map[string][]string{}, ctx: func(t *testing.T) context.Context { return as(t, "root", true) }, wantOK: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnvWith(t, func(c *app.Config) { c.Allocations = tt.cfg })
			_, err := e.client.SubmitJob(tt.ctx(t), req("alloc"))
			if tt.wantOK {
				require.NoError(t, err)
				require.Equal(t, 1, e.repo.Count())
				return
			}
			require.Equal(t, codes.PermissionDenied, status.Code(err), "%v", err)
			require.Zero(t, e.repo.Count(), "nothing is written")
			require.Empty(t, e.repo.Events())
		})
	}
}

func TestGetJobShowsWhyAQueuedJobWaits(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := as(t, "alice", false)
	j, err := e.client.SubmitJob(ctx, validRequest("w1"))
	require.NoError(t, err)
	id := j.GetJob().GetJobId()
	e.rec.Pass(context.Background())
	got, err := e.client.GetJob(ctx, &jobpb.GetJobRequest{JobId: id})
	require.NoError(t, err)
	require.Equal(t, jobpb.JobStatus_JOB_STATUS_QUEUED, got.GetJob().GetStatus())
	require.Empty(t, got.GetJob().GetSchedulerDetail())

	const detail = "ReqNodeNotAvail: the nodes it asks for are down or reserved; ask for another partition or fewer nodes"
	e.sched.Set(got.GetJob().GetSchedulerJobId(), app.SchedulerStatus{Phase: app.PhaseQueued, State: "PENDING", Reason: detail})
	e.rec.Pass(context.Background())
	got, err = e.client.GetJob(ctx, &jobpb.GetJobRequest{JobId: id})
	require.NoError(t, err)
	require.Equal(t, detail, got.GetJob().GetSchedulerDetail())

	e.sched.Set(got.GetJob().GetSchedulerJobId(), app.SchedulerStatus{Phase: app.PhaseRunning, State: "RUNNING"})
	e.rec.Pass(context.Background())
	got, err = e.client.GetJob(ctx, &jobpb.GetJobRequest{JobId: id})
	require.NoError(t, err)
	require.Equal(t, jobpb.JobStatus_JOB_STATUS_RUNNING, got.GetJob().GetStatus())
	require.Empty(t, got.GetJob().GetSchedulerDetail())
}
