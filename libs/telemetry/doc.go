// Package telemetry is the one place the fleet sets up OpenTelemetry tracing,
// structured logging and the propagation of trace context and correlation ids
// across message headers.
//
// Setup installs the process-wide TracerProvider and the W3C TraceContext +
// Baggage propagator as the OpenTelemetry globals. These are the only globals
// the fleet sets: instrumentation libraries (otelgrpc, the Kafka and AMQP
// buses) read them when no provider is passed explicitly.
package telemetry
