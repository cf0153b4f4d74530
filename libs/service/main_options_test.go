package service_test

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/cosmic-horizons/fleet/libs/service"
)

// TestMainInstallsPreparedInterceptors shows that options built by a
// prepare hook (from the loaded configuration) reach the gRPC server:
// an interceptor refuses health checks, and WithRuntimeOptions and
// WithPrepare options both apply, in that order.
func TestMainInstallsPreparedInterceptors(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_TRACES_EXPORTER", "")
	t.Setenv("OTEL_SDK_DISABLED", "")
	env := map[string]string{"GRPC_ADDR": "127.0.0.1:0", "HTTP_ADDR": "127.0.0.1:0", "SHUTDOWN_DRAIN": "0s", "GUARD": "closed"}
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var (
		mu    sync.Mutex
		order []string
	)
	record := func(name string) grpc.ServerOption {
		return grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			mu.Lock()
			order = append(order, name)
			mu.Unlock()
			return h(ctx, req)
		})
	}
	prepared := make(chan service.Deps, 1)
	prepare := func(_ context.Context, d service.Deps) ([]service.Option, error) {
		prepared <- d
		guard, _ := d.Lookup("GUARD")
		refuse := grpc.ChainUnaryInterceptor(func(context.Context, any, *grpc.UnaryServerInfo, grpc.UnaryHandler) (any, error) {
			return nil, status.Error(codes.PermissionDenied, "guard is "+guard)
		})
		return []service.Option{service.WithGRPCServerOptions(record("prepared"), refuse)}, nil
	}
	wired := make(chan service.Deps, 1)
	done := make(chan error, 1)
	go func() {
		done <- service.Main(ctx, service.DefaultConfig("opts-svc", ":50051", ":8081"), envLookup(env), logs,
			func(_ context.Context, d service.Deps) error { wired <- d; return nil },
			service.WithRuntimeOptions(service.WithGRPCServerOptions(record("fixed"))),
			service.WithPrepare(prepare))
	}()

	p := <-prepared
	require.Equal(t, "opts-svc", p.Config.ServiceName)
	require.NotNil(t, p.Logger)
	require.Nil(t, p.Runtime, "the runtime does not exist yet while preparing")
	d := <-wired
	require.NotNil(t, d.Runtime)

	conn, err := grpc.NewClient(d.Runtime.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	require.Eventually(t, func() bool {
		_, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
		return status.Code(err) == codes.PermissionDenied && status.Convert(err).Message() == "guard is closed"
	}, 10*time.Second, 20*time.Millisecond, "the prepared interceptor refuses the call")
	mu.Lock()
	require.Equal(t, []string{"fixed", "prepared"}, order[len(order)-2:])
	mu.Unlock()

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("Main did not return")
	}
}

// TestMainPrepareErrorStopsBeforeListening shows that a failing prepare
// hook is reported and nothing is left listening.
func TestMainPrepareErrorStopsBeforeListening(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := lis.Addr().String()
	require.NoError(t, lis.Close())

	wired := false
	err = service.Main(context.Background(), service.DefaultConfig("opts-svc", ":50051", ":8081"),
		envLookup(map[string]string{"GRPC_ADDR": addr, "HTTP_ADDR": "127.0.0.1:0"}), io.Discard,
		func(context.Context, service.Deps) error { wired = true; return nil },
		service.WithPrepare(func(context.Context, service.Deps) ([]service.Option, error) {
			return nil, errors.New("no verifier")
		}))
	require.ErrorContains(t, err, "prepare opts-svc: no verifier")
	require.False(t, wired, "wire is not called")
	lis, err = net.Listen("tcp", addr)
	require.NoError(t, err, "the gRPC address was never taken")
	require.NoError(t, lis.Close())
}
