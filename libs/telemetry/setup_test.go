package telemetry_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"
	collectortracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/cosmic-horizons/fleet/libs/telemetry"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// clearOTelEnv blanks every variable that could make Setup export.
func clearOTelEnv(t *testing.T) {
	t.Helper()
	for _, k := range []string{
		telemetry.EnvSDKDisabled, telemetry.EnvTracesExporter, telemetry.EnvOTLPEndpoint,
		telemetry.EnvOTLPTracesEndpoint, telemetry.EnvOTLPProtocol, telemetry.EnvOTLPTracesProtocol,
		telemetry.EnvServiceName, telemetry.EnvResourceAttributes,
	} {
		t.Setenv(k, "")
	}
}

// collector records the spans that reach it over OTLP (HTTP or gRPC).
type collector struct {
	collectortracepb.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans []*tracepb.ResourceSpans
}

func (c *collector) add(req *collectortracepb.ExportTraceServiceRequest) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.spans = append(c.spans, req.GetResourceSpans()...)
}

func (c *collector) Export(_ context.Context, req *collectortracepb.ExportTraceServiceRequest) (*collectortracepb.ExportTraceServiceResponse, error) {
	c.add(req)
	return &collectortracepb.ExportTraceServiceResponse{}, nil
}

func (c *collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/traces" {
		http.NotFound(w, r)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req collectortracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(body, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	c.add(&req)
	out, err := proto.Marshal(&collectortracepb.ExportTraceServiceResponse{})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

type receivedSpan struct {
	name     string
	traceID  []byte
	resource map[string]string
}

func (c *collector) received() []receivedSpan {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []receivedSpan
	for _, rs := range c.spans {
		res := map[string]string{}
		for _, kv := range rs.GetResource().GetAttributes() {
			res[kv.GetKey()] = kv.GetValue().GetStringValue()
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				out = append(out, receivedSpan{name: s.GetName(), traceID: s.GetTraceId(), resource: res})
			}
		}
	}
	return out
}

func TestSetupWithoutEnvExportsNothingButMakesTraceIDs(t *testing.T) {
	clearOTelEnv(t)
	shutdown, err := telemetry.Setup(context.Background(), telemetry.Config{ServiceName: "svc-none", ServiceVersion: "1.0.0"})
	require.NoError(t, err)

	ctx, span := otel.Tracer("test").Start(context.Background(), "op")
	sc := span.SpanContext()
	require.True(t, sc.IsValid(), "spans must carry real ids even without an exporter")

	headers := map[string]string{}
	otel.GetTextMapPropagator().Inject(ctx, telemetry.HeaderCarrier(headers))
	require.Contains(t, headers, telemetry.HeaderTraceparent, "Setup installs the W3C propagator")
	span.End()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, shutdown(ctx))
	require.NoError(t, shutdown(ctx), "a second shutdown is harmless")
}

func TestSetupExportsOverOTLPHTTP(t *testing.T) {
	clearOTelEnv(t)
	col := &collector{}
	srv := httptest.NewServer(col)
	t.Cleanup(srv.Close)
	t.Setenv(telemetry.EnvOTLPEndpoint, srv.URL)
	t.Setenv(telemetry.EnvOTLPProtocol, "http/protobuf")
	t.Setenv(telemetry.EnvServiceName, "svc-from-env")
	t.Setenv(telemetry.EnvResourceAttributes, "deployment.environment.name=test")

	shutdown, err := telemetry.Setup(context.Background(), telemetry.Config{ServiceName: "svc-http", ServiceVersion: "2.0.0"})
	require.NoError(t, err)
	_, span := otel.Tracer("test").Start(context.Background(), "submit-job")
	traceID := span.SpanContext().TraceID()
	span.End()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, shutdown(ctx), "shutdown flushes the batch")

	got := col.received()
	require.Len(t, got, 1)
	require.Equal(t, "submit-job", got[0].name)
	require.Equal(t, traceID[:], got[0].traceID)
	require.Equal(t, "svc-from-env", got[0].resource["service.name"], "OTEL_SERVICE_NAME wins")
	require.Equal(t, "2.0.0", got[0].resource["service.version"])
	require.Equal(t, "test", got[0].resource["deployment.environment.name"])
}

func TestSetupExportsOverOTLPGRPC(t *testing.T) {
	clearOTelEnv(t)
	col := &collector{}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	gs := grpc.NewServer()
	collectortracepb.RegisterTraceServiceServer(gs, col)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)

	t.Setenv(telemetry.EnvOTLPEndpoint, "http://"+lis.Addr().String())
	t.Setenv(telemetry.EnvOTLPProtocol, "grpc")

	shutdown, err := telemetry.Setup(context.Background(), telemetry.Config{ServiceName: "svc-grpc"})
	require.NoError(t, err)
	_, span := otel.Tracer("test").Start(context.Background(), "over-grpc")
	span.End()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, shutdown(ctx))

	got := col.received()
	require.Len(t, got, 1)
	require.Equal(t, "over-grpc", got[0].name)
	require.Equal(t, "svc-grpc", got[0].resource["service.name"])
}

func TestSetupSDKDisabledPassesRemoteContextThrough(t *testing.T) {
	clearOTelEnv(t)
	t.Setenv(telemetry.EnvSDKDisabled, "true")
	t.Setenv(telemetry.EnvOTLPEndpoint, "http://127.0.0.1:1")

	shutdown, err := telemetry.Setup(context.Background(), telemetry.Config{ServiceName: "svc-off"})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, shutdown(context.Background())) })

	_, fresh := otel.Tracer("test").Start(context.Background(), "op")
	require.False(t, fresh.SpanContext().IsValid())
	require.False(t, fresh.IsRecording())

	parent := telemetry.Extract(context.Background(), map[string]string{
		telemetry.HeaderTraceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
	})
	child, span := otel.Tracer("test").Start(parent, "child")
	defer span.End()
	require.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", trace.SpanContextFromContext(child).TraceID().String())
}

func TestSetupErrors(t *testing.T) {
	tests := []struct {
		name    string
		cfg     telemetry.Config
		env     map[string]string
		wantErr string
	}{
		{name: "missing service name", cfg: telemetry.Config{}, wantErr: "ServiceName"},
		{name: "bad sdk disabled", cfg: telemetry.Config{ServiceName: "s"}, env: map[string]string{telemetry.EnvSDKDisabled: "maybe"}, wantErr: telemetry.EnvSDKDisabled},
		{
			name:    "bad protocol",
			cfg:     telemetry.Config{ServiceName: "s"},
			env:     map[string]string{telemetry.EnvOTLPEndpoint: "http://127.0.0.1:1", telemetry.EnvOTLPProtocol: "carrier-pigeon"},
			wantErr: "exporter",
		},
		{name: "unknown exporter", cfg: telemetry.Config{ServiceName: "s"}, env: map[string]string{telemetry.EnvTracesExporter: "zipkin2000"}, wantErr: "exporter"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearOTelEnv(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			shutdown, err := telemetry.Setup(context.Background(), tt.cfg)
			require.Error(t, err)
			require.Contains(t, err.Error(), tt.wantErr)
			require.Nil(t, shutdown)
		})
	}
}
