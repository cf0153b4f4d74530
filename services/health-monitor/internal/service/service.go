// Package service is the composition root of the health-monitor: it builds every
// part of the service explicitly and runs it in the shared service runtime.
package service

import (
	"context"
	"io"

	svcruntime "github.com/cosmic-horizons/fleet/libs/service"
	healthpb "github.com/cosmic-horizons/fleet/proto/fleet/health/v1"
	"github.com/cosmic-horizons/fleet/services/health-monitor/internal/domain"
	"github.com/cosmic-horizons/fleet/services/health-monitor/internal/ports"
)

// Name and default listen addresses of the health-monitor.
const (
	Name            = "health-monitor"
	DefaultGRPCAddr = ":50055"
	DefaultHTTPAddr = ":8085"
)

// Run loads the configuration through lookup, writes JSON logs to logOut and
// serves until ctx is done, then shuts down gracefully.
func Run(ctx context.Context, lookup svcruntime.LookupFunc, logOut io.Writer) error {
	defaults := svcruntime.DefaultConfig(Name, DefaultGRPCAddr, DefaultHTTPAddr)
	return svcruntime.Main(ctx, defaults, lookup, logOut, wire)
}

// wire builds the monitor, registers HealthMonitorService and the status
// page, and runs probe cycles until shutdown.
func wire(ctx context.Context, deps svcruntime.Deps) error {
	cfg, err := LoadConfig(deps.Lookup)
	if err != nil {
		return err
	}
	svcruntime.LogConfig(ctx, deps.Logger, deps.Config, cfg)
	rt := deps.Runtime
	hm, err := NewHealthMonitor(cfg, deps.Logger, rt.Registry())
	if err != nil {
		return err
	}
	healthpb.RegisterHealthMonitorServiceServer(rt.GRPCServer(), ports.NewGRPCServer(hm.Hub))
	ports.NewStatusHandler(hm.Hub, deps.Logger).Register(rt.HandleHTTP)

	rt.OnShutdown("health-monitor connections", func(context.Context) error { return hm.Close() })
	rt.Go("health-monitor", hm.Monitor.Run)
	if hm.JobFlow != nil {
		rt.Go("job-lifecycle consumer", hm.JobFlow.Run)
	}
	return nil
}

func domainHysteresis(cfg Config) domain.HysteresisConfig {
	return domain.HysteresisConfig{RaiseAfter: cfg.RaiseAfter, ResolveAfter: cfg.ResolveAfter}
}
