package service_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/cosmic-horizons/fleet/libs/service"
	"github.com/cosmic-horizons/fleet/libs/telemetry"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// syncBuffer collects log output written from several goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// records returns the decoded JSON log records. It is safe to call from
// require.Eventually's goroutine: it never fails the test itself.
func (b *syncBuffer) records() []map[string]any {
	b.mu.Lock()
	data := append([]byte(nil), b.buf.Bytes()...)
	b.mu.Unlock()
	var out []map[string]any
	dec := json.NewDecoder(bytes.NewReader(data))
	for dec.More() {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			break
		}
		out = append(out, m)
	}
	return out
}

func (b *syncBuffer) find(msg string, match func(map[string]any) bool) map[string]any {
	for _, r := range b.records() {
		if r["msg"] == msg && (match == nil || match(r)) {
			return r
		}
	}
	return nil
}

// probe is a small gRPC service described by hand, so the tests need no
// generated code: Echo answers with the call's correlation id or panics on
// "panic"; Block streams nothing until the call ends; Boom panics.
type probe struct {
	blocking chan struct{}
}

const probeService = "fleet.test.v1.Probe"

func (p *probe) echo(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
	if in.GetValue() == "panic" {
		panic("probe asked to panic")
	}
	return wrapperspb.String(telemetry.CorrelationID(ctx)), nil
}

var probeDesc = grpc.ServiceDesc{
	ServiceName: probeService,
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Echo",
		Handler: func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
			in := new(wrapperspb.StringValue)
			if err := dec(in); err != nil {
				return nil, err
			}
			h := func(ctx context.Context, req any) (any, error) {
				return srv.(*probe).echo(ctx, req.(*wrapperspb.StringValue))
			}
			return interceptor(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: "/" + probeService + "/Echo"}, h)
		},
	}},
	Streams: []grpc.StreamDesc{
		{
			StreamName:    "Block",
			ServerStreams: true,
			Handler: func(srv any, stream grpc.ServerStream) error {
				srv.(*probe).blocking <- struct{}{}
				<-stream.Context().Done()
				return stream.Context().Err()
			},
		},
		{
			StreamName:    "Boom",
			ServerStreams: true,
			Handler: func(any, grpc.ServerStream) error {
				panic("stream asked to panic")
			},
		},
	},
}

type fixture struct {
	rt     *service.Runtime
	logs   *syncBuffer
	probe  *probe
	conn   *grpc.ClientConn
	http   *http.Client
	cancel context.CancelFunc
	done   chan error
}

// start builds a Runtime on loopback ports with the probe service and runs it.
func start(t *testing.T, mutate func(*service.Config), setup func(*service.Runtime)) *fixture {
	t.Helper()
	cfg := service.DefaultConfig("probe-svc", "127.0.0.1:0", "127.0.0.1:0")
	cfg.LogLevel = -8 // everything, including debug
	cfg.ShutdownDrain = 0
	cfg.ShutdownTimeout = 5 * time.Second
	if mutate != nil {
		mutate(&cfg)
	}
	logs := &syncBuffer{}
	tp := sdktrace.NewTracerProvider()
	t.Cleanup(func() { require.NoError(t, tp.Shutdown(context.Background())) })
	rt, err := service.New(cfg, telemetry.NewLogger(logs, cfg.LogLevel, cfg.ServiceName), service.WithTracerProvider(tp))
	require.NoError(t, err)
	p := &probe{blocking: make(chan struct{}, 1)}
	rt.GRPCServer().RegisterService(&probeDesc, p)
	if setup != nil {
		setup(rt)
	}

	conn, err := grpc.NewClient(rt.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })

	ctx, cancel := context.WithCancel(context.Background())
	f := &fixture{
		rt: rt, logs: logs, probe: p, conn: conn, cancel: cancel, done: make(chan error, 1),
		http: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second},
	}
	go func() { f.done <- rt.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-f.done:
		case <-time.After(30 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	require.Eventually(t, func() bool { return f.healthStatus(t, "") == healthpb.HealthCheckResponse_SERVING },
		10*time.Second, 10*time.Millisecond)
	return f
}

// stop cancels Run and returns its result.
func (f *fixture) stop(t *testing.T) error {
	t.Helper()
	f.cancel()
	select {
	case err := <-f.done:
		f.done <- err // the cleanup reads it again
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after cancel")
		return nil
	}
}

func (f *fixture) healthStatus(t *testing.T, svc string) healthpb.HealthCheckResponse_ServingStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(f.conn).Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
	if err != nil {
		return healthpb.HealthCheckResponse_UNKNOWN
	}
	return resp.GetStatus()
}

func (f *fixture) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := f.http.Get("http://" + f.rt.HTTPAddr() + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}

func (f *fixture) echo(ctx context.Context, value string) (string, error) {
	out := new(wrapperspb.StringValue)
	err := f.conn.Invoke(ctx, "/"+probeService+"/Echo", wrapperspb.String(value), out)
	return out.GetValue(), err
}

func TestHealthServingThenNotServingDuringDrain(t *testing.T) {
	t.Parallel()
	f := start(t, func(c *service.Config) { c.ShutdownDrain = 3 * time.Second }, nil)

	require.Equal(t, healthpb.HealthCheckResponse_SERVING, f.healthStatus(t, ""))
	require.Equal(t, healthpb.HealthCheckResponse_SERVING, f.healthStatus(t, probeService))
	code, _ := f.get(t, "/readyz")
	require.Equal(t, http.StatusOK, code)

	f.cancel()
	require.Eventually(t, func() bool {
		return f.healthStatus(t, "") == healthpb.HealthCheckResponse_NOT_SERVING &&
			f.healthStatus(t, probeService) == healthpb.HealthCheckResponse_NOT_SERVING
	}, 2*time.Second, 10*time.Millisecond, "health turns NOT_SERVING while the server still answers")

	code, body := f.get(t, "/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code)
	var r service.Readiness
	require.NoError(t, json.Unmarshal([]byte(body), &r))
	require.True(t, r.ShuttingDown)
	require.False(t, r.Ready)

	require.NoError(t, f.stop(t))
	for _, msg := range []string{"health NOT_SERVING, readiness false; draining", "stopping gRPC server gracefully", "gRPC server stopped", "shutting down HTTP server", "shutdown complete"} {
		require.NotNil(t, f.logs.find(msg, nil), "missing log step %q", msg)
	}
}

func TestReflectionListsServices(t *testing.T) {
	t.Parallel()
	f := start(t, nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stream, err := reflectionpb.NewServerReflectionClient(f.conn).ServerReflectionInfo(ctx)
	require.NoError(t, err)
	require.NoError(t, stream.Send(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{ListServices: "*"},
	}))
	resp, err := stream.Recv()
	require.NoError(t, err)
	require.NoError(t, stream.CloseSend())

	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	require.Contains(t, names, "grpc.health.v1.Health")
	require.Contains(t, names, "grpc.reflection.v1.ServerReflection")
	require.Contains(t, names, probeService)
}

func TestMetricsServesGRPCRequestMetrics(t *testing.T) {
	t.Parallel()
	f := start(t, nil, nil)
	ctx := context.Background()
	_, err := f.echo(ctx, "hello")
	require.NoError(t, err)
	_, err = f.echo(ctx, "panic")
	require.Equal(t, codes.Internal, status.Code(err))

	code, body := f.get(t, "/metrics")
	require.Equal(t, http.StatusOK, code)
	for _, want := range []string{
		`grpc_server_handled_total{grpc_code="OK",grpc_method="/fleet.test.v1.Probe/Echo"} 1`,
		`grpc_server_handled_total{grpc_code="Internal",grpc_method="/fleet.test.v1.Probe/Echo"} 1`,
		`grpc_server_handling_seconds_count{grpc_code="OK",grpc_method="/fleet.test.v1.Probe/Echo"} 1`,
		`grpc_server_handled_total{grpc_code="OK",grpc_method="/grpc.health.v1.Health/Check"}`,
		"go_goroutines ",
		"process_open_fds ",
	} {
		require.Contains(t, body, want)
	}
}

func TestPprofServedOnlyWhenEnabled(t *testing.T) {
	t.Parallel()
	off := start(t, nil, nil)
	code, _ := off.get(t, "/debug/pprof/")
	require.Equal(t, http.StatusNotFound, code, "profiler served without PPROF")

	on := start(t, func(c *service.Config) { c.Pprof = true }, nil)
	code, body := on.get(t, "/debug/pprof/")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, "goroutine")
	code, body = on.get(t, "/debug/pprof/goroutine?debug=1")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, "goroutine profile:")
}

func TestHealthzAndReadyzChecks(t *testing.T) {
	t.Parallel()
	var brokerDown atomic.Bool
	f := start(t, nil, func(rt *service.Runtime) {
		rt.AddReadinessCheck("database", func(context.Context) error { return nil })
		rt.AddReadinessCheck("broker", func(context.Context) error {
			if brokerDown.Load() {
				return errors.New("kafka unreachable")
			}
			return nil
		})
	})

	code, _ := f.get(t, "/healthz")
	require.Equal(t, http.StatusOK, code)

	tests := []struct {
		name       string
		down       bool
		wantCode   int
		wantChecks []service.CheckResult
	}{
		{
			name: "all pass", wantCode: http.StatusOK,
			wantChecks: []service.CheckResult{{Name: "database", OK: true}, {Name: "broker", OK: true}},
		},
		{
			name: "broker fails", down: true, wantCode: http.StatusServiceUnavailable,
			wantChecks: []service.CheckResult{{Name: "database", OK: true}, {Name: "broker", Error: "kafka unreachable"}},
		},
		{
			name: "broker back", wantCode: http.StatusOK,
			wantChecks: []service.CheckResult{{Name: "database", OK: true}, {Name: "broker", OK: true}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			brokerDown.Store(tt.down)
			code, body := f.get(t, "/readyz")
			require.Equal(t, tt.wantCode, code)
			var r service.Readiness
			require.NoError(t, json.Unmarshal([]byte(body), &r))
			require.Equal(t, tt.wantCode == http.StatusOK, r.Ready)
			require.False(t, r.ShuttingDown)
			require.Equal(t, tt.wantChecks, r.Checks)

			code, _ = f.get(t, "/healthz")
			require.Equal(t, http.StatusOK, code, "liveness ignores readiness checks")
		})
	}
}

func TestPanicReturnsInternalAndServerKeepsServing(t *testing.T) {
	t.Parallel()
	f := start(t, nil, nil)
	ctx := context.Background()

	_, err := f.echo(ctx, "panic")
	require.Equal(t, codes.Internal, status.Code(err))
	require.NotContains(t, err.Error(), "probe asked to panic", "panic details stay in the server log")

	stream, err := f.conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, "/"+probeService+"/Boom")
	require.NoError(t, err)
	require.NoError(t, stream.SendMsg(wrapperspb.String("x")))
	require.NoError(t, stream.CloseSend())
	err = stream.RecvMsg(new(wrapperspb.StringValue))
	require.Equal(t, codes.Internal, status.Code(err))

	got, err := f.echo(ctx, "still alive")
	require.NoError(t, err)
	require.NotEmpty(t, got)

	rec := f.logs.find("grpc handler panicked", func(r map[string]any) bool {
		return r["grpc_method"] == "/"+probeService+"/Echo"
	})
	require.NotNil(t, rec)
	require.Contains(t, rec["stack"], "runtime/debug.Stack")
	require.Equal(t, "probe asked to panic", rec["panic"])
	require.NotNil(t, f.logs.find("grpc handler panicked", func(r map[string]any) bool {
		return r["grpc_method"] == "/"+probeService+"/Boom"
	}))
}

func TestCallsCarryCorrelationAndTraceIDsInLogs(t *testing.T) {
	t.Parallel()
	f := start(t, nil, nil)

	tests := []struct {
		name   string
		sendID string
		keep   bool
	}{
		{name: "caller sends an id", sendID: "corr-from-caller", keep: true},
		{name: "caller sends a UUID", sendID: "0190c5e4-7b1a-7c3e-9a4b-2f1d3c4e5a6b", keep: true},
		{name: "caller sends the longest id", sendID: strings.Repeat("a", service.MaxCorrelationIDLen), keep: true},
		{name: "runtime makes one"},
		{name: "oversize id is replaced", sendID: strings.Repeat("x", 5000)},
		{name: "one byte too long is replaced", sendID: strings.Repeat("a", service.MaxCorrelationIDLen+1)},
		{name: "spaces and quotes are replaced", sendID: `a "b" c`},
		{name: "leading punctuation is replaced", sendID: "-corr"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			if tt.sendID != "" {
				ctx = metadata.AppendToOutgoingContext(ctx, service.MetadataCorrelationID, tt.sendID)
			}
			var header metadata.MD
			out := new(wrapperspb.StringValue)
			err := f.conn.Invoke(ctx, "/"+probeService+"/Echo", wrapperspb.String(tt.name), out, grpc.Header(&header))
			require.NoError(t, err)
			seen := out.GetValue()
			require.NotEmpty(t, seen)
			if tt.keep {
				require.Equal(t, tt.sendID, seen)
			} else {
				require.NotEqual(t, tt.sendID, seen)
				_, err := uuid.Parse(seen)
				require.NoError(t, err, "a replaced id is a fresh UUID")
			}
			require.Equal(t, []string{seen}, header.Get(service.MetadataCorrelationID))

			rec := f.logs.find("grpc call", func(r map[string]any) bool { return r["correlation_id"] == seen })
			require.NotNil(t, rec)
			require.Equal(t, "/"+probeService+"/Echo", rec["grpc_method"])
			require.Equal(t, "OK", rec["grpc_code"])
			require.Contains(t, rec, "duration_ms")
			require.Len(t, rec["trace_id"], 32)
			require.Equal(t, "INFO", rec["level"])
		})
	}
}

func TestRunRunsClosersInReverseOrder(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var order []string
	deadlines := 0
	closer := func(name string, err error) service.CheckFunc {
		return func(ctx context.Context) error {
			mu.Lock()
			defer mu.Unlock()
			order = append(order, name)
			if _, ok := ctx.Deadline(); ok {
				deadlines++
			}
			return err
		}
	}
	f := start(t, nil, func(rt *service.Runtime) {
		rt.OnShutdown("telemetry", closer("telemetry", nil))
		rt.OnShutdown("database", closer("database", errors.New("disk gone")))
		rt.OnShutdown("producer", closer("producer", nil))
		rt.OnShutdown("consumer", closer("consumer", nil))
	})

	err := f.stop(t)
	require.ErrorContains(t, err, "close database: disk gone", "a failing closer is reported")
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []string{"consumer", "producer", "database", "telemetry"}, order, "every closer runs, last registered first")
	require.Equal(t, 4, deadlines, "closers run under the shutdown deadline")
}

// TestGoStopsBackgroundTasksBeforeEarlierClosers shows a background task
// runs until shutdown, is cancelled before the closers registered before it
// (the database it writes to), and that its failure is logged, not fatal.
func TestGoStopsBackgroundTasksBeforeEarlierClosers(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var order []string
	note := func(s string) {
		mu.Lock()
		defer mu.Unlock()
		order = append(order, s)
	}
	started := make(chan struct{})
	f := start(t, nil, func(rt *service.Runtime) {
		rt.OnShutdown("database", func(context.Context) error { note("database closed"); return nil })
		rt.Go("consumer", func(ctx context.Context) error {
			close(started)
			<-ctx.Done()
			note("consumer stopped")
			return ctx.Err()
		})
		rt.Go("pruner", func(context.Context) error { return errors.New("prune failed") })
	})
	<-started
	require.NoError(t, f.stop(t))
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []string{"consumer stopped", "database closed"}, order)
	rec := f.logs.find("background task stopped", func(r map[string]any) bool { return r["task"] == "pruner" })
	require.NotNil(t, rec, "a failed task is logged")
	require.Equal(t, "prune failed", rec["error"])
}

func TestRunForcesStopAtShutdownTimeout(t *testing.T) {
	t.Parallel()
	f := start(t, func(c *service.Config) { c.ShutdownTimeout = time.Second }, nil)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := f.conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, "/"+probeService+"/Block")
	require.NoError(t, err)
	require.NoError(t, stream.SendMsg(wrapperspb.String("x")))
	require.NoError(t, stream.CloseSend())
	<-f.probe.blocking // the handler is running and will not return on its own

	err = f.stop(t)
	require.ErrorContains(t, err, "graceful stop did not finish")
	require.NotNil(t, f.logs.find("shutdown timeout reached; stopping gRPC server hard", nil))
	require.Error(t, stream.RecvMsg(new(wrapperspb.StringValue)))
}

func TestRunTwiceFails(t *testing.T) {
	t.Parallel()
	f := start(t, nil, nil)
	require.ErrorContains(t, f.rt.Run(context.Background()), "already")
}

func TestCloseWithoutRunReleasesEverything(t *testing.T) {
	t.Parallel()
	cfg := service.DefaultConfig("closing", "127.0.0.1:0", "127.0.0.1:0")
	rt, err := service.New(cfg, telemetry.NewLogger(io.Discard, 0, "closing"))
	require.NoError(t, err)
	addr := rt.GRPCAddr()
	var closed atomic.Bool
	rt.OnShutdown("db", func(context.Context) error { closed.Store(true); return nil })

	require.NoError(t, rt.Close(context.Background()))
	require.True(t, closed.Load())
	lis, err := net.Listen("tcp", addr)
	require.NoError(t, err, "the gRPC port is free again")
	require.NoError(t, lis.Close())
	require.Error(t, rt.Run(context.Background()))
}

func TestNewRejectsBadInput(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = busy.Close() })
	logger := telemetry.NewLogger(io.Discard, 0, "bad")

	tests := []struct {
		name    string
		mutate  func(*service.Config)
		nilLog  bool
		wantErr string
	}{
		{name: "invalid config", mutate: func(c *service.Config) { c.ShutdownTimeout = 0 }, wantErr: "SHUTDOWN_TIMEOUT"},
		{name: "no logger", nilLog: true, wantErr: "logger"},
		{name: "grpc port taken", mutate: func(c *service.Config) { c.GRPCAddr = busy.Addr().String() }, wantErr: "GRPC_ADDR"},
		{name: "http port taken", mutate: func(c *service.Config) { c.HTTPAddr = busy.Addr().String() }, wantErr: "HTTP_ADDR"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := service.DefaultConfig("bad", "127.0.0.1:0", "127.0.0.1:0")
			if tt.mutate != nil {
				tt.mutate(&cfg)
			}
			l := logger
			if tt.nilLog {
				l = nil
			}
			rt, err := service.New(cfg, l)
			require.ErrorContains(t, err, tt.wantErr)
			require.Nil(t, rt)
		})
	}
}

func TestMainStopsOnCancel(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_TRACES_EXPORTER", "")
	t.Setenv("OTEL_SDK_DISABLED", "")
	env := map[string]string{"GRPC_ADDR": "127.0.0.1:0", "HTTP_ADDR": "127.0.0.1:0", "SHUTDOWN_DRAIN": "0s", "LOG_LEVEL": "debug"}
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wired := make(chan service.Deps, 1)
	done := make(chan error, 1)
	go func() {
		done <- service.Main(ctx, service.DefaultConfig("main-svc", ":50051", ":8081"), envLookup(env), logs,
			func(_ context.Context, d service.Deps) error {
				wired <- d
				return nil
			})
	}()
	require.Eventually(t, func() bool { return logs.find("serving", nil) != nil }, 10*time.Second, 10*time.Millisecond)
	d := <-wired
	require.Equal(t, "main-svc", d.Config.ServiceName)
	require.NotNil(t, d.Runtime)
	require.NotNil(t, d.Logger)
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("Main did not return")
	}
	require.NotNil(t, logs.find("closed", func(r map[string]any) bool { return r["closer"] == "telemetry" }))
}

func TestMainReportsConfigAndWiringErrors(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		wire    service.WireFunc
		wantErr string
	}{
		{name: "bad env", env: map[string]string{"SHUTDOWN_TIMEOUT": "forever"}, wantErr: "SHUTDOWN_TIMEOUT"},
		{
			name:    "wiring fails",
			env:     map[string]string{"GRPC_ADDR": "127.0.0.1:0", "HTTP_ADDR": "127.0.0.1:0"},
			wire:    func(context.Context, service.Deps) error { return errors.New("no database") },
			wantErr: "wire main-svc: no database",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := service.Main(context.Background(), service.DefaultConfig("main-svc", ":50051", ":8081"),
				envLookup(tt.env), io.Discard, tt.wire)
			require.ErrorContains(t, err, tt.wantErr)
			require.False(t, strings.Contains(err.Error(), "already"))
		})
	}
}
