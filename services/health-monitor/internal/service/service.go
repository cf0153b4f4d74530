// Package service is the composition root of the health-monitor: it builds every
// part of the service explicitly and runs it in the shared service runtime.
package service

import (
	"context"
	"io"

	svcruntime "github.com/cosmic-horizons/fleet/libs/service"
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

// wire registers the service's own gRPC services, readiness checks and
// closers. For now the service serves grpc.health.v1 and reflection only.
func wire(context.Context, svcruntime.Deps) error {
	return nil
}
