// Package ports exposes the metrics-consumer: the gRPC MetricsService and
// the Prometheus collector over the store.
package ports

import (
	"context"
	"log/slog"
	"sort"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/cosmic-horizons/fleet/libs/auth"
	"github.com/cosmic-horizons/fleet/libs/grpcerr"
	"github.com/cosmic-horizons/fleet/libs/validation"
	jobpb "github.com/cosmic-horizons/fleet/proto/fleet/job/v1"
	metricspb "github.com/cosmic-horizons/fleet/proto/fleet/metrics/v1"
	"github.com/cosmic-horizons/fleet/services/metrics-consumer/internal/app"
	"github.com/cosmic-horizons/fleet/services/metrics-consumer/internal/domain"
)

// MaxWindow is the longest window a query may cover.
const MaxWindow = 366 * 24 * time.Hour

var agents = map[jobpb.Agent]string{
	jobpb.Agent_AGENT_ALPHA_CAL:            "AlphaCal",
	jobpb.Agent_AGENT_IMAGE_RECONSTRUCTION: "ImageReconstruction",
	jobpb.Agent_AGENT_ANOMALY_DETECTION:    "AnomalyDetection",
	jobpb.Agent_AGENT_CUSTOM:               "Custom",
}

var systems = map[jobpb.TaccSystem]string{
	jobpb.TaccSystem_TACC_SYSTEM_FRONTERA:  "FRONTERA",
	jobpb.TaccSystem_TACC_SYSTEM_STAMPEDE3: "STAMPEDE3",
	jobpb.TaccSystem_TACC_SYSTEM_LONESTAR6: "LONESTAR6",
	jobpb.TaccSystem_TACC_SYSTEM_VISTA:     "VISTA",
}

// MetricsServer implements metricspb.MetricsServiceServer. Every call needs
// a verified caller (the auth interceptors put it into the context; without
// one a call is Unauthenticated). GetJobMetrics and GetSystemStats answer any
// authenticated user about the whole fleet: aggregates (counts, durations,
// node-hours) that name no user. GetJobMetrics narrowed to one job_id
// answers about the caller's own job only (any job for an admin); another
// user's job is NotFound, like a job that does not exist, so that job ids
// do not leak. GetUserUsage answers about the caller, or about any user for
// an admin; another user's usage is PermissionDenied.
//
// A store failure is Unavailable with a generic message; its text is
// logged, never sent to the client.
type MetricsServer struct {
	metricspb.UnimplementedMetricsServiceServer
	q   *app.Queries
	log *slog.Logger
}

// NewMetricsServer returns the gRPC server over q; logger receives the
// detail of store failures (nil discards it).
func NewMetricsServer(q *app.Queries, logger *slog.Logger) *MetricsServer {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &MetricsServer{q: q, log: logger}
}

// errorCodes is the one table from store errors to gRPC codes (libs/grpcerr):
// a *validation.Error is InvalidArgument with one field violation per
// field; a store failure is logged and answered Unavailable with a generic
// message.
var errorCodes = grpcerr.Table{Rules: grpcerr.Context, Fallback: grpcerr.Rule{
	Code: codes.Unavailable, Message: "the metrics store cannot be read; retry later", Log: grpcerr.LogWarn, LogMessage: "{op} failed"}}

// statusOf converts a use-case error of op into a gRPC status error.
func (s *MetricsServer) statusOf(ctx context.Context, op string, err error) error {
	return errorCodes.Status(ctx, s.log, op, err)
}

func window(w *metricspb.TimeWindow, v *validation.Error) app.Window {
	if w == nil {
		v.Add("window", "required")
		return app.Window{}
	}
	var out app.Window
	switch {
	case w.GetStart() == nil:
		v.Add("window.start", "required")
	case w.GetStart().CheckValid() != nil:
		v.Add("window.start", "not a valid timestamp")
	default:
		out.Start = w.GetStart().AsTime()
	}
	switch {
	case w.GetEnd() == nil:
		v.Add("window.end", "required")
	case w.GetEnd().CheckValid() != nil:
		v.Add("window.end", "not a valid timestamp")
	default:
		out.End = w.GetEnd().AsTime()
	}
	if out.Start.IsZero() || out.End.IsZero() {
		return out
	}
	switch {
	case !out.End.After(out.Start):
		v.Add("window.end", "must be after window.start")
	case out.End.Sub(out.Start) > MaxWindow:
		v.Add("window.end", "must be at most 366 days after window.start")
	}
	return out
}

// GetJobMetrics aggregates the jobs created in a window.
func (s *MetricsServer) GetJobMetrics(ctx context.Context, req *metricspb.GetJobMetricsRequest) (*metricspb.GetJobMetricsResponse, error) {
	caller, err := auth.Caller(ctx)
	if err != nil {
		return nil, err
	}
	var v validation.Error
	w := window(req.GetWindow(), &v)
	f := app.JobFilter{JobID: req.GetJobId()}
	if a := req.GetAgent(); a != jobpb.Agent_AGENT_UNSPECIFIED {
		if f.Agent = agents[a]; f.Agent == "" {
			v.Add("agent", "unknown agent")
		}
	}
	if sys := req.GetTaccSystem(); sys != jobpb.TaccSystem_TACC_SYSTEM_UNSPECIFIED {
		if f.System = systems[sys]; f.System == "" {
			v.Add("tacc_system", "unknown TACC system")
		}
	}
	if len(f.JobID) > 128 {
		v.Add("job_id", "at most 128 characters")
	}
	if err := v.Err(); err != nil {
		return nil, s.statusOf(ctx, "job metrics", err)
	}
	if f.JobID != "" {
		owner, found, err := s.q.JobOwner(ctx, f.JobID)
		if err != nil {
			return nil, s.statusOf(ctx, "job metrics", err)
		}
		if !found || (owner != caller.UserID && !caller.Admin) {
			return nil, status.Error(codes.NotFound, "job not found")
		}
	}
	st, err := s.q.JobMetrics(ctx, w, f)
	if err != nil {
		return nil, s.statusOf(ctx, "job metrics", err)
	}
	return &metricspb.GetJobMetricsResponse{Window: req.GetWindow(), Stats: toPB(st)}, nil
}

// GetSystemStats aggregates the jobs created in a window per TACC system.
func (s *MetricsServer) GetSystemStats(ctx context.Context, req *metricspb.GetSystemStatsRequest) (*metricspb.GetSystemStatsResponse, error) {
	if _, err := auth.Caller(ctx); err != nil {
		return nil, err
	}
	var v validation.Error
	w := window(req.GetWindow(), &v)
	var system string
	if sys := req.GetTaccSystem(); sys != jobpb.TaccSystem_TACC_SYSTEM_UNSPECIFIED {
		if system = systems[sys]; system == "" {
			v.Add("tacc_system", "unknown TACC system")
		}
	}
	if err := v.Err(); err != nil {
		return nil, s.statusOf(ctx, "system stats", err)
	}
	bySystem, err := s.q.SystemStats(ctx, w, system)
	if err != nil {
		return nil, s.statusOf(ctx, "system stats", err)
	}
	resp := &metricspb.GetSystemStatsResponse{Window: req.GetWindow()}
	for pb, name := range systems {
		if st := bySystem[name]; st != nil {
			resp.Systems = append(resp.Systems, &metricspb.SystemStats{TaccSystem: pb, Stats: toPB(st)})
		}
	}
	sort.Slice(resp.Systems, func(i, j int) bool { return resp.Systems[i].TaccSystem < resp.Systems[j].TaccSystem })
	return resp, nil
}

// GetUserUsage aggregates one user's jobs created in a window: the caller's
// when user_id is empty or the caller's own; another user's for an admin
// only, otherwise PermissionDenied.
func (s *MetricsServer) GetUserUsage(ctx context.Context, req *metricspb.GetUserUsageRequest) (*metricspb.GetUserUsageResponse, error) {
	caller, err := auth.Caller(ctx)
	if err != nil {
		return nil, err
	}
	var v validation.Error
	w := window(req.GetWindow(), &v)
	user := req.GetUserId()
	if user == "" {
		user = caller.UserID
	}
	if len(user) > 128 {
		v.Add("user_id", "at most 128 characters")
	}
	if err := v.Err(); err != nil {
		return nil, s.statusOf(ctx, "user usage", err)
	}
	if user != caller.UserID && !caller.Admin {
		return nil, status.Error(codes.PermissionDenied, "only an admin may read another user's usage")
	}
	st, allocs, err := s.q.UserUsage(ctx, w, user)
	if err != nil {
		return nil, s.statusOf(ctx, "user usage", err)
	}
	resp := &metricspb.GetUserUsageResponse{Window: req.GetWindow(), UserId: user, Stats: toPB(st)}
	for _, a := range allocs {
		resp.Allocations = append(resp.Allocations, &metricspb.AllocationUsage{
			Allocation: a.Name, JobCount: a.Jobs, NodeHours: a.NodeHours, GpuHours: a.GPUHours,
		})
	}
	return resp, nil
}

func percentiles(h *domain.Histogram) *metricspb.Percentiles {
	p, ok := h.Percentiles()
	if !ok {
		return nil
	}
	return &metricspb.Percentiles{P50: durationpb.New(p.P50), P95: durationpb.New(p.P95), P99: durationpb.New(p.P99)}
}

func toPB(s *domain.Stats) *metricspb.JobStats {
	return &metricspb.JobStats{
		SubmittedCount: s.Submitted, CompletedCount: s.Completed, FailedCount: s.Failed, CancelledCount: s.Cancelled,
		SuccessRate: s.SuccessRate(), QueueWait: percentiles(&s.QueueWait), RunTime: percentiles(&s.RunTime),
		NodeHours: s.NodeHours, GpuHours: s.GPUHours, ActiveCount: s.Active, PendingCount: s.Pending,
	}
}
