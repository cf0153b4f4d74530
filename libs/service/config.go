package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/cosmic-horizons/fleet/libs/envconf"
	"github.com/cosmic-horizons/fleet/libs/telemetry"
)

// Environment variables read by LoadConfig.
const (
	EnvServiceName     = "SERVICE_NAME"
	EnvServiceVersion  = "SERVICE_VERSION"
	EnvGRPCAddr        = "GRPC_ADDR"
	EnvHTTPAddr        = "HTTP_ADDR"
	EnvLogLevel        = "LOG_LEVEL"
	EnvShutdownDrain   = "SHUTDOWN_DRAIN"
	EnvShutdownTimeout = "SHUTDOWN_TIMEOUT"
)

// Defaults shared by every service.
const (
	DefaultShutdownDrain   = 5 * time.Second
	DefaultShutdownTimeout = 15 * time.Second
)

// LookupFunc reads one environment variable; os.LookupEnv is the usual one.
type LookupFunc = envconf.Lookup

// Config is the part of a service's configuration the runtime owns.
type Config struct {
	// ServiceName names the service in logs, traces and metrics.
	ServiceName string `env:"SERVICE_NAME"`
	// ServiceVersion is reported in traces; empty means unknown.
	ServiceVersion string `env:"SERVICE_VERSION"`
	// GRPCAddr is the gRPC listen address, e.g. ":50051" (":0" picks a port).
	GRPCAddr string `env:"GRPC_ADDR"`
	// HTTPAddr is the listen address of /metrics, /healthz and /readyz.
	HTTPAddr string `env:"HTTP_ADDR"`
	// LogLevel is the minimum level logged (LOG_LEVEL, read by LoadConfig
	// with telemetry.ParseLevel).
	LogLevel slog.Level
	// ShutdownDrain is how long the service reports NOT_SERVING and not ready
	// before it stops accepting calls, so that load balancers move away.
	ShutdownDrain time.Duration `env:"SHUTDOWN_DRAIN"`
	// ShutdownTimeout bounds the whole shutdown: when it expires the gRPC
	// server is stopped hard and the HTTP server closed; closers still
	// running see their context done.
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT"`
	// Pprof serves Go's profiler (net/http/pprof) under /debug/pprof/ on
	// HTTPAddr. Off by default: profiles expose the process's internals, so
	// turn it on only where HTTPAddr is not reachable from outside.
	Pprof bool `env:"PPROF"`
}

// DefaultConfig returns the configuration of a service before the
// environment is read.
func DefaultConfig(name, grpcAddr, httpAddr string) Config {
	return Config{
		ServiceName:     name,
		GRPCAddr:        grpcAddr,
		HTTPAddr:        httpAddr,
		LogLevel:        slog.LevelInfo,
		ShutdownDrain:   DefaultShutdownDrain,
		ShutdownTimeout: DefaultShutdownTimeout,
	}
}

// LoadConfig overrides defaults with the environment variables that are set
// and validates the result. A bad value yields an error naming its variable.
func LoadConfig(defaults Config, lookup LookupFunc) (Config, error) {
	cfg := defaults
	var errs []error
	if err := envconf.Load(&cfg, lookup); err != nil {
		errs = append(errs, err)
	}
	if v, ok := lookup(EnvLogLevel); ok {
		l, err := telemetry.ParseLevel(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", EnvLogLevel, err))
		} else {
			cfg.LogLevel = l
		}
	}

	if err := errors.Join(errs...); err != nil {
		return Config{}, fmt.Errorf("service config: %w", err)
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// LogConfig writes the startup line with the effective configuration: the
// runtime's and the service's own (a struct), with their secrets redacted
// (envconf.Redact: passwords, tokens, keys, DSNs with passwords).
func LogConfig(ctx context.Context, logger *slog.Logger, runtime Config, own any) {
	logger.InfoContext(ctx, "effective configuration", slog.Any("runtime", envconf.Redact(runtime)), slog.Any("service", envconf.Redact(own)))
}

// Validate reports every problem with c, naming the variable that sets it.
func (c Config) Validate() error {
	var errs []error
	if strings.TrimSpace(c.ServiceName) == "" {
		errs = append(errs, fmt.Errorf("%s: must not be empty", EnvServiceName))
	}
	if err := validateAddr(c.GRPCAddr); err != nil {
		errs = append(errs, fmt.Errorf("%s=%q: %w", EnvGRPCAddr, c.GRPCAddr, err))
	}
	if err := validateAddr(c.HTTPAddr); err != nil {
		errs = append(errs, fmt.Errorf("%s=%q: %w", EnvHTTPAddr, c.HTTPAddr, err))
	}
	if c.ShutdownDrain < 0 {
		errs = append(errs, fmt.Errorf("%s=%s: must not be negative", EnvShutdownDrain, c.ShutdownDrain))
	}
	if c.ShutdownTimeout <= 0 {
		errs = append(errs, fmt.Errorf("%s=%s: must be positive", EnvShutdownTimeout, c.ShutdownTimeout))
	} else if c.ShutdownDrain >= c.ShutdownTimeout {
		errs = append(errs, fmt.Errorf("%s=%s: must be shorter than %s=%s",
			EnvShutdownDrain, c.ShutdownDrain, EnvShutdownTimeout, c.ShutdownTimeout))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("service config: %w", err)
	}
	return nil
}

// validateAddr accepts host:port listen addresses with a numeric port.
func validateAddr(addr string) error {
	if addr == "" {
		return errors.New("must not be empty")
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return errors.New("want host:port, e.g. :50051 or 127.0.0.1:0")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 || strconv.Itoa(n) != port {
		return fmt.Errorf("port %q: want a number from 0 to 65535", port)
	}
	return nil
}
