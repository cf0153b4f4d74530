package telemetry

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"go.opentelemetry.io/contrib/exporters/autoexport"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace/noop"
)

// Environment variables read by Setup (beyond those the OTLP exporters and
// the SDK read themselves, such as OTEL_EXPORTER_OTLP_HEADERS,
// OTEL_TRACES_SAMPLER and OTEL_BSP_*).
const (
	EnvSDKDisabled        = "OTEL_SDK_DISABLED"
	EnvTracesExporter     = "OTEL_TRACES_EXPORTER"
	EnvOTLPEndpoint       = "OTEL_EXPORTER_OTLP_ENDPOINT"
	EnvOTLPTracesEndpoint = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	EnvOTLPProtocol       = "OTEL_EXPORTER_OTLP_PROTOCOL"
	EnvOTLPTracesProtocol = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
	EnvServiceName        = "OTEL_SERVICE_NAME"
	EnvResourceAttributes = "OTEL_RESOURCE_ATTRIBUTES"
)

// Config names the service whose telemetry is set up.
type Config struct {
	// ServiceName is the service.name resource attribute; OTEL_SERVICE_NAME
	// and service.name in OTEL_RESOURCE_ATTRIBUTES take precedence.
	ServiceName string
	// ServiceVersion is the service.version resource attribute.
	ServiceVersion string
}

// Validate reports whether the configuration can be used.
func (c Config) Validate() error {
	if strings.TrimSpace(c.ServiceName) == "" {
		return errors.New("telemetry: ServiceName is required")
	}
	return nil
}

// Setup configures tracing from the standard OTEL_* environment variables and
// installs the global TracerProvider and propagator (W3C TraceContext +
// Baggage). It returns one shutdown func that flushes and stops the exporter.
//
// Spans are exported only when an exporter is asked for: an OTLP endpoint is
// set (OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT), or
// OTEL_TRACES_EXPORTER names one ("otlp", "console"). Otherwise the provider
// has no exporter but still creates valid span contexts, so trace ids flow
// through logs and message headers. OTEL_TRACES_EXPORTER=none exports
// nothing. OTEL_SDK_DISABLED=true installs a no-op provider, which still
// passes incoming trace contexts through. The OTLP protocol is chosen by
// OTEL_EXPORTER_OTLP_PROTOCOL (http/protobuf by default, or grpc).
func Setup(ctx context.Context, cfg Config) (shutdown func(context.Context) error, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	otel.SetTextMapPropagator(Propagator())

	disabled, err := sdkDisabled()
	if err != nil {
		return nil, err
	}
	if disabled {
		otel.SetTracerProvider(noop.NewTracerProvider())
		return func(context.Context) error { return nil }, nil
	}

	res, err := newResource(ctx, cfg)
	if err != nil {
		return nil, err
	}
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}

	if exportRequested(os.Getenv) {
		exp, err := autoexport.NewSpanExporter(ctx)
		if err != nil {
			return nil, fmt.Errorf("telemetry: create span exporter: %w", err)
		}
		if !autoexport.IsNoneSpanExporter(exp) {
			opts = append(opts, sdktrace.WithBatcher(exp))
		}
	}

	tp := sdktrace.NewTracerProvider(opts...)
	otel.SetTracerProvider(tp)
	return func(ctx context.Context) error {
		if err := tp.Shutdown(ctx); err != nil {
			return fmt.Errorf("telemetry: shut down tracer provider: %w", err)
		}
		return nil
	}, nil
}

// sdkDisabled parses OTEL_SDK_DISABLED.
func sdkDisabled() (bool, error) {
	v := strings.TrimSpace(os.Getenv(EnvSDKDisabled))
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("telemetry: %s=%q: want true or false", EnvSDKDisabled, v)
	}
	return b, nil
}

// exportRequested reports whether the environment asks for a span exporter.
// When it does not, no exporter is created at all, so no connection to a
// default OTLP endpoint is ever attempted.
func exportRequested(getenv func(string) string) bool {
	if strings.TrimSpace(getenv(EnvTracesExporter)) != "" {
		return true
	}
	return strings.TrimSpace(getenv(EnvOTLPEndpoint)) != "" || strings.TrimSpace(getenv(EnvOTLPTracesEndpoint)) != ""
}

// newResource describes the service; environment variables win over cfg.
func newResource(ctx context.Context, cfg Config) (*resource.Resource, error) {
	attrs := []resource.Option{
		resource.WithSchemaURL(semconv.SchemaURL),
		resource.WithAttributes(semconv.ServiceName(cfg.ServiceName)),
	}
	if cfg.ServiceVersion != "" {
		attrs = append(attrs, resource.WithAttributes(semconv.ServiceVersion(cfg.ServiceVersion)))
	}
	attrs = append(attrs, resource.WithTelemetrySDK(), resource.WithFromEnv())
	res, err := resource.New(ctx, attrs...)
	if err != nil {
		return nil, fmt.Errorf("telemetry: build resource: %w", err)
	}
	return res, nil
}
