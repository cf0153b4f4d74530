package ports

import (
	"context"
	"fmt"
	"log/slog"

	"google.golang.org/grpc/peer"

	"github.com/cosmic-horizons/fleet/libs/auth"
	jobpb "github.com/cosmic-horizons/fleet/proto/fleet/job/v1"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/app"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/domain"
)

// JobServer implements jobpb.JobServiceServer over the use cases. It
// expects the auth interceptors in front of it; a call without a principal
// is refused as Unauthenticated.
type JobServer struct {
	jobpb.UnimplementedJobServiceServer
	app *app.App
	log *slog.Logger
}

// NewJobServer returns the gRPC JobService.
func NewJobServer(a *app.App, logger *slog.Logger) *JobServer {
	return &JobServer{app: a, log: logger}
}

func actorOf(ctx context.Context) (app.Actor, error) {
	p, ok := auth.PrincipalFrom(ctx)
	if !ok || p.UserID == "" {
		return app.Actor{}, domain.ErrUnauthenticated
	}
	a := app.Actor{UserID: p.UserID, Admin: p.Admin, Allocations: p.Allocations, AllocationsClaim: p.AllocationsClaim}
	if pr, ok := peer.FromContext(ctx); ok && pr.Addr != nil {
		a.IP = pr.Addr.String()
	}
	return a, nil
}

// SubmitJob implements jobpb.JobServiceServer.
func (s *JobServer) SubmitJob(ctx context.Context, req *jobpb.SubmitJobRequest) (*jobpb.SubmitJobResponse, error) {
	actor, err := actorOf(ctx)
	if err != nil {
		return nil, statusOf(ctx, s.log, err)
	}
	var in app.SubmitInput
	in.IdempotencyKey = req.GetIdempotencyKey()
	if req.GetSpec() == nil {
		return nil, statusOf(ctx, s.log, violationsWith(domain.ValidateIdempotencyKey(in.IdempotencyKey), "spec", "required"))
	}
	in.Spec = specFromPB(req.GetSpec())
	j, replayed, err := s.app.SubmitJob(ctx, actor, in)
	if err != nil {
		return nil, statusOf(ctx, s.log, err)
	}
	return &jobpb.SubmitJobResponse{Job: jobToPB(j), Replayed: replayed}, nil
}

// violationsWith adds a violation to a possibly nil validation error.
func violationsWith(err error, field, desc string) error {
	ve := &domain.ValidationError{}
	if err != nil {
		if v, ok := err.(*domain.ValidationError); ok {
			ve.Violations = append(ve.Violations, v.Violations...)
		}
	}
	ve.Violations = append(ve.Violations, domain.FieldViolation{Field: field, Description: desc})
	return ve
}

// GetJob implements jobpb.JobServiceServer.
func (s *JobServer) GetJob(ctx context.Context, req *jobpb.GetJobRequest) (*jobpb.GetJobResponse, error) {
	actor, err := actorOf(ctx)
	if err != nil {
		return nil, statusOf(ctx, s.log, err)
	}
	j, err := s.app.GetJob(ctx, actor, req.GetJobId())
	if err != nil {
		return nil, statusOf(ctx, s.log, err)
	}
	return &jobpb.GetJobResponse{Job: jobToPB(j)}, nil
}

// ListJobs implements jobpb.JobServiceServer.
func (s *JobServer) ListJobs(ctx context.Context, req *jobpb.ListJobsRequest) (*jobpb.ListJobsResponse, error) {
	actor, err := actorOf(ctx)
	if err != nil {
		return nil, statusOf(ctx, s.log, err)
	}
	in := app.ListInput{PageSize: int(req.GetPageSize()), PageToken: req.GetPageToken(), Tags: req.GetTags()}
	if n := len(domain.Statuses()); len(req.GetStatuses()) > n {
		return nil, statusOf(ctx, s.log, domain.Invalid("statuses", "at most %d statuses, got %d", n, len(req.GetStatuses())))
	}
	for _, st := range req.GetStatuses() {
		d, ok := statuses[st]
		if !ok {
			d = domain.Status(fmt.Sprintf("JobStatus(%d)", st))
		}
		in.Statuses = append(in.Statuses, d)
	}
	if sys := req.GetTaccSystem(); sys != jobpb.TaccSystem_TACC_SYSTEM_UNSPECIFIED {
		in.System = systems[sys]
		if in.System == "" {
			in.System = fmt.Sprintf("TaccSystem(%d)", sys)
		}
	}
	if t := req.GetCreatedAfter(); t != nil {
		if t.CheckValid() != nil {
			return nil, statusOf(ctx, s.log, domain.Invalid("created_after", "not a valid timestamp"))
		}
		in.CreatedAfter = t.AsTime()
	}
	if t := req.GetCreatedBefore(); t != nil {
		if t.CheckValid() != nil {
			return nil, statusOf(ctx, s.log, domain.Invalid("created_before", "not a valid timestamp"))
		}
		in.CreatedBefore = t.AsTime()
	}
	jobs, next, err := s.app.ListJobs(ctx, actor, in)
	if err != nil {
		return nil, statusOf(ctx, s.log, err)
	}
	out := &jobpb.ListJobsResponse{NextPageToken: next}
	for _, j := range jobs {
		out.Jobs = append(out.Jobs, jobToPB(j))
	}
	return out, nil
}

// CancelJob implements jobpb.JobServiceServer.
func (s *JobServer) CancelJob(ctx context.Context, req *jobpb.CancelJobRequest) (*jobpb.CancelJobResponse, error) {
	actor, err := actorOf(ctx)
	if err != nil {
		return nil, statusOf(ctx, s.log, err)
	}
	j, err := s.app.CancelJob(ctx, actor, req.GetJobId(), req.GetReason())
	if err != nil {
		return nil, statusOf(ctx, s.log, err)
	}
	return &jobpb.CancelJobResponse{Job: jobToPB(j)}, nil
}

// WatchJob implements jobpb.JobServiceServer.
func (s *JobServer) WatchJob(req *jobpb.WatchJobRequest, stream jobpb.JobService_WatchJobServer) error {
	ctx := stream.Context()
	actor, err := actorOf(ctx)
	if err != nil {
		return statusOf(ctx, s.log, err)
	}
	err = s.app.WatchJob(ctx, actor, req.GetJobId(), req.GetReplayHistory(), func(tr domain.Transition) error {
		return stream.Send(&jobpb.WatchJobResponse{Event: eventToPB(req.GetJobId(), tr)})
	})
	return statusOf(ctx, s.log, err)
}
