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

// PrepareFunc runs in Main before the Runtime is built, with Deps whose
// Runtime is still nil, and returns Options for New. A service builds here
// what its server options need from its own configuration, e.g. the
// verifier behind its authentication interceptors.
type PrepareFunc func(ctx context.Context, deps Deps) ([]Option, error)

// MainOption adjusts Main.
type MainOption func(*mainOptions)

type mainOptions struct {
	runtime  []Option
	prepares []PrepareFunc
}

// WithRuntimeOptions passes opts to New when Main builds the Runtime.
func WithRuntimeOptions(opts ...Option) MainOption {
	return func(o *mainOptions) { o.runtime = append(o.runtime, opts...) }
}

// WithPrepare makes Main call fn before it builds the Runtime and pass the
// Options fn returns to New, after those of WithRuntimeOptions. A failing
// fn stops Main before anything listens.
func WithPrepare(fn PrepareFunc) MainOption {
	return func(o *mainOptions) { o.prepares = append(o.prepares, fn) }
}

// Main is the whole life of a service process: it loads the configuration
// from lookup over defaults, builds the JSON logger writing to logOut, sets
// up OpenTelemetry (from the process's OTEL_* variables), builds the Runtime,
// lets wire register the service's parts, and runs until ctx is done.
// Telemetry is shut down last, after every closer wire registered. opts
// add Runtime options, fixed (WithRuntimeOptions) or built from the
// configuration (WithPrepare), e.g. gRPC interceptors.
func Main(ctx context.Context, defaults Config, lookup LookupFunc, logOut io.Writer, wire WireFunc, opts ...MainOption) error {
	var mo mainOptions
	for _, opt := range opts {
		opt(&mo)
	}
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
	rtOpts := append([]Option(nil), mo.runtime...)
	for _, prepare := range mo.prepares {
		more, err := prepare(ctx, Deps{Config: cfg, Logger: logger, Lookup: lookup})
		if err != nil {
			err = fmt.Errorf("prepare %s: %w", cfg.ServiceName, err)
			return errors.Join(err, shutdownTelemetry(context.WithoutCancel(ctx)))
		}
		rtOpts = append(rtOpts, more...)
	}
	rt, err := New(cfg, logger, rtOpts...)
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
