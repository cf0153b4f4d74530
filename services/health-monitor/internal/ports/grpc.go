// Package ports serves the fleet status: the gRPC HealthMonitorService and
// the HTTP status page with its server-sent events.
package ports

import (
	"context"
	"maps"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cosmic-horizons/fleet/libs/grpcerr"
	"github.com/cosmic-horizons/fleet/libs/validation"
	healthpb "github.com/cosmic-horizons/fleet/proto/fleet/health/v1"
	"github.com/cosmic-horizons/fleet/services/health-monitor/internal/app"
	"github.com/cosmic-horizons/fleet/services/health-monitor/internal/domain"
)

// Bounds of WatchFleetStatusRequest.min_interval.
const (
	DefaultWatchInterval = time.Second
	MaxWatchInterval     = time.Hour
)

// GRPCServer implements fleet.health.v1.HealthMonitorService from a hub.
type GRPCServer struct {
	healthpb.UnimplementedHealthMonitorServiceServer
	hub *app.Hub
}

// NewGRPCServer returns the service reading statuses from hub.
func NewGRPCServer(hub *app.Hub) *GRPCServer { return &GRPCServer{hub: hub} }

// GetFleetStatus returns the latest status.
func (s *GRPCServer) GetFleetStatus(context.Context, *healthpb.GetFleetStatusRequest) (*healthpb.GetFleetStatusResponse, error) {
	st, _ := s.hub.Current()
	return &healthpb.GetFleetStatusResponse{Status: ToProto(st)}, nil
}

// WatchFleetStatus sends the latest status, then each new one, at most one
// per min_interval (newer statuses in between are coalesced).
func (s *GRPCServer) WatchFleetStatus(req *healthpb.WatchFleetStatusRequest, stream healthpb.HealthMonitorService_WatchFleetStatusServer) error {
	interval := DefaultWatchInterval
	if mi := req.GetMinInterval(); mi != nil {
		if err := mi.CheckValid(); err != nil || mi.AsDuration() < 0 || mi.AsDuration() > MaxWatchInterval {
			return errorCodes.Status(stream.Context(), nil, "watch fleet status", validation.Invalid("min_interval", "must be between 0 and 1h"))
		}
		if d := mi.AsDuration(); d > 0 {
			interval = d
		}
	}
	ctx := stream.Context()
	for {
		st, changed := s.hub.Current()
		if err := stream.Send(&healthpb.WatchFleetStatusResponse{Status: ToProto(st)}); err != nil {
			return err
		}
		sent := time.Now()
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		}
		if wait := interval - time.Since(sent); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
		}
	}
}

// errorCodes is the one table from errors to gRPC codes (libs/grpcerr): the
// service's only failure is a request field out of bounds, InvalidArgument
// with its field violation.
var errorCodes = grpcerr.Table{Rules: grpcerr.Context}

// ToProto converts a fleet status to its protobuf message.
func ToProto(s domain.FleetStatus) *healthpb.FleetStatus {
	out := &healthpb.FleetStatus{Overall: statusProto(s.Overall)}
	if !s.Generated.IsZero() {
		out.GeneratedAt = timestamppb.New(s.Generated)
	}
	for _, c := range s.Components {
		out.Components = append(out.Components, &healthpb.Component{
			Id: c.ID, Type: typeProto(c.Type), Status: statusProto(c.Status), Detail: c.Detail,
			CheckedAt: timestamppb.New(c.Checked), Latency: durationpb.New(c.Latency), Metrics: maps.Clone(c.Metrics),
		})
	}
	for _, l := range s.Lags {
		out.ConsumerGroupLags = append(out.ConsumerGroupLags, &healthpb.ConsumerGroupLag{Group: l.Group, Topic: l.Topic, Lag: l.Lag})
	}
	for _, c := range s.Canaries {
		if c.Samples == 0 {
			continue
		}
		out.CanaryLatencies = append(out.CanaryLatencies, &healthpb.CanaryLatency{
			CanaryId: c.CanaryID, Latency: durationpb.New(c.Latency), MeasuredAt: timestamppb.New(c.MeasuredAt),
		})
	}
	for _, a := range s.OpenAlerts {
		out.OpenAlerts = append(out.OpenAlerts, &healthpb.Alert{
			Id: a.ID, ComponentId: a.ComponentID, Severity: healthpb.Severity(a.Severity),
			Message: a.Message, RaisedAt: timestamppb.New(a.RaisedAt),
		})
	}
	return out
}

func statusProto(s domain.Status) healthpb.HealthStatus {
	switch s {
	case domain.StatusHealthy:
		return healthpb.HealthStatus_HEALTH_STATUS_HEALTHY
	case domain.StatusDegraded:
		return healthpb.HealthStatus_HEALTH_STATUS_DEGRADED
	case domain.StatusUnhealthy:
		return healthpb.HealthStatus_HEALTH_STATUS_UNHEALTHY
	default:
		return healthpb.HealthStatus_HEALTH_STATUS_UNKNOWN
	}
}

func typeProto(t domain.ComponentType) healthpb.ComponentType {
	switch t {
	case domain.TypeBroker:
		return healthpb.ComponentType_COMPONENT_TYPE_BROKER
	case domain.TypeConsumerGroup:
		return healthpb.ComponentType_COMPONENT_TYPE_CONSUMER_GROUP
	case domain.TypeTopic:
		return healthpb.ComponentType_COMPONENT_TYPE_TOPIC
	case domain.TypeService:
		return healthpb.ComponentType_COMPONENT_TYPE_SERVICE
	case domain.TypeDatabase:
		return healthpb.ComponentType_COMPONENT_TYPE_DATABASE
	case domain.TypeCanary:
		return healthpb.ComponentType_COMPONENT_TYPE_CANARY
	case domain.TypeScheduler:
		return healthpb.ComponentType_COMPONENT_TYPE_SCHEDULER
	default:
		return healthpb.ComponentType_COMPONENT_TYPE_UNSPECIFIED
	}
}
