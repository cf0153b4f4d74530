// Package service is the runtime every fleet service runs in: configuration
// from the environment, the gRPC server (OpenTelemetry stats handler, panic
// recovery, request logging and Prometheus metrics, grpc.health.v1, server
// reflection), the HTTP server for /metrics, /healthz and /readyz, and the
// graceful shutdown sequence:
//
//	health NOT_SERVING and /readyz 503 → sleep SHUTDOWN_DRAIN →
//	GracefulStop (Stop at SHUTDOWN_TIMEOUT) → HTTP server shutdown →
//	OnShutdown closers in reverse order of registration.
//
// A service's composition root calls Main, registers its own gRPC services,
// readiness checks and closers in the WireFunc, and Main runs the rest.
package service
