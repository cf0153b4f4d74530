package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"

	"github.com/cosmic-horizons/fleet/libs/telemetry"
)

// Deps is what a service's WireFunc builds on.
type Deps struct {
	Config  Config
	Logger  *slog.Logger
	Runtime *Runtime
	// Lookup reads the environment, for the service's own configuration.
	Lookup LookupFunc
}

// WireFunc registers a service's own gRPC services, readiness checks and
// closers on deps.Runtime before it starts serving.
type WireFunc func(ctx context.Context, deps Deps) error

// Main is the whole life of a service process: it loads the configuration
// from lookup over defaults, builds the JSON logger writing to logOut, sets
// up OpenTelemetry (from the process's OTEL_* variables), builds the Runtime,
// lets wire register the service's parts, and runs until ctx is done.
// Telemetry is shut down last, after every closer wire registered.
func Main(ctx context.Context, defaults Config, lookup LookupFunc, logOut io.Writer, wire WireFunc) error {
	cfg, err := LoadConfig(defaults, lookup)
	if err != nil {
		return err
	}
	if cfg.ServiceVersion == "" {
		cfg.ServiceVersion = buildVersion()
	}
	logger := telemetry.NewLogger(logOut, cfg.LogLevel, cfg.ServiceName)
	logger.InfoContext(ctx, "starting",
		slog.String("version", cfg.ServiceVersion),
		slog.String("grpc_addr", cfg.GRPCAddr),
		slog.String("http_addr", cfg.HTTPAddr),
		slog.String("log_level", cfg.LogLevel.String()),
		slog.String("shutdown_drain", cfg.ShutdownDrain.String()),
		slog.String("shutdown_timeout", cfg.ShutdownTimeout.String()),
	)

	shutdownTelemetry, err := telemetry.Setup(ctx, telemetry.Config{ServiceName: cfg.ServiceName, ServiceVersion: cfg.ServiceVersion})
	if err != nil {
		return fmt.Errorf("set up telemetry: %w", err)
	}
	rt, err := New(cfg, logger)
	if err != nil {
		return errors.Join(err, shutdownTelemetry(context.WithoutCancel(ctx)))
	}
	rt.OnShutdown("telemetry", shutdownTelemetry)

	if wire != nil {
		if err := wire(ctx, Deps{Config: cfg, Logger: logger, Runtime: rt, Lookup: lookup}); err != nil {
			err = fmt.Errorf("wire %s: %w", cfg.ServiceName, err)
			closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
			defer cancel()
			return errors.Join(err, rt.Close(closeCtx))
		}
	}
	if err := rt.Run(ctx); err != nil {
		return fmt.Errorf("run %s: %w", cfg.ServiceName, err)
	}
	return nil
}

// buildVersion is the main module's version recorded in the binary, if any.
func buildVersion() string {
	if info, ok := debug.ReadBuildInfo(); ok && info.Main.Version != "" && info.Main.Version != "(devel)" {
		return info.Main.Version
	}
	return ""
}
