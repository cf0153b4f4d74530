package probes

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/cosmic-horizons/fleet/services/health-monitor/internal/app"
	"github.com/cosmic-horizons/fleet/services/health-monitor/internal/domain"
)

// ServiceComponentID is the component id of fleet service name.
func ServiceComponentID(name string) string { return "service:" + name }

// GRPCHealthProbe asks one service's grpc.health.v1 server for the overall
// status (service ""): SERVING is healthy, anything else or an error unhealthy.
type GRPCHealthProbe struct {
	name, addr string
	conn       *grpc.ClientConn
}

// NewGRPCHealthProbe returns a probe of service name at addr (host:port).
// The connection is made lazily by gRPC and kept between probes.
func NewGRPCHealthProbe(name, addr string) (*GRPCHealthProbe, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("grpc client for %s at %s: %w", name, addr, err)
	}
	return &GRPCHealthProbe{name: name, addr: addr, conn: conn}, nil
}

// Name implements app.Probe.
func (p *GRPCHealthProbe) Name() string { return ServiceComponentID(p.name) }

// Type implements app.Probe.
func (p *GRPCHealthProbe) Type() domain.ComponentType { return domain.TypeService }

// Probe implements app.Probe.
func (p *GRPCHealthProbe) Probe(ctx context.Context) app.Outcome {
	start := time.Now()
	c := domain.Component{ID: p.Name(), Type: domain.TypeService}
	resp, err := healthpb.NewHealthClient(p.conn).Check(ctx, &healthpb.HealthCheckRequest{})
	switch {
	case err != nil:
		c.Status, c.Detail = domain.StatusUnhealthy, fmt.Sprintf("%s: %v", p.addr, err)
	case resp.GetStatus() == healthpb.HealthCheckResponse_SERVING:
		c.Status, c.Detail = domain.StatusHealthy, p.addr+" SERVING"
	default:
		c.Status, c.Detail = domain.StatusUnhealthy, fmt.Sprintf("%s %s", p.addr, resp.GetStatus())
	}
	c.Checked, c.Latency = time.Now(), time.Since(start)
	return app.Outcome{Components: []domain.Component{c}}
}

// Close releases the connection.
func (p *GRPCHealthProbe) Close() error { return p.conn.Close() }
