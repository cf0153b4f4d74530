package probes_test

import (
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/cosmic-horizons/fleet/services/health-monitor/internal/adapters/probes"
	"github.com/cosmic-horizons/fleet/services/health-monitor/internal/domain"
)

func TestDriverFor(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, url, driver, dsn string
		wantErr                bool
	}{
		{name: "postgres", url: "postgres://u:p@h:5432/db?sslmode=disable", driver: "pgx", dsn: "postgres://u:p@h:5432/db?sslmode=disable"},
		{name: "postgresql", url: "postgresql://h/db", driver: "pgx", dsn: "postgresql://h/db"},
		{name: "sqlite path", url: "sqlite:/var/lib/x.db", driver: "sqlite", dsn: "/var/lib/x.db"},
		{name: "sqlite url", url: "sqlite:///var/lib/x.db", driver: "sqlite", dsn: "/var/lib/x.db"},
		{name: "file", url: "file:x.db?mode=ro", driver: "sqlite", dsn: "file:x.db?mode=ro"},
		{name: "mysql is not supported", url: "mysql://h/db", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			driver, dsn, err := probes.DriverFor(tt.url)
			if tt.wantErr {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.driver, driver)
			require.Equal(t, tt.dsn, dsn)
		})
	}
}

func TestDatabaseProbeSQLite(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		url  string
		want domain.Status
	}{
		{name: "a writable file", url: "sqlite:" + filepath.Join(t.TempDir(), "ok.db"), want: domain.StatusHealthy},
		{name: "a directory that does not exist", url: "sqlite:" + filepath.Join(t.TempDir(), "missing", "x.db"), want: domain.StatusUnhealthy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := probes.NewDatabaseProbe("x", tt.url)
			require.NoError(t, err)
			defer p.Close()
			out := p.Probe(t.Context())
			require.Len(t, out.Components, 1)
			c := out.Components[0]
			require.Equal(t, "database:x", c.ID)
			require.Equal(t, domain.TypeDatabase, c.Type)
			require.Equal(t, tt.want, c.Status, c.Detail)
		})
	}
}

func TestGRPCHealthProbeMapsServingStatus(t *testing.T) {
	t.Parallel()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := grpc.NewServer()
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	go func() { _ = srv.Serve(lis) }()

	p, err := probes.NewGRPCHealthProbe("orch", lis.Addr().String())
	require.NoError(t, err)
	defer p.Close()
	probe := func() domain.Component {
		out := p.Probe(t.Context())
		require.Len(t, out.Components, 1)
		require.Equal(t, "service:orch", out.Components[0].ID)
		require.Equal(t, domain.TypeService, out.Components[0].Type)
		return out.Components[0]
	}

	require.Equal(t, domain.StatusHealthy, probe().Status)
	hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	c := probe()
	require.Equal(t, domain.StatusUnhealthy, c.Status)
	require.Contains(t, c.Detail, "NOT_SERVING")
	srv.Stop()
	require.Eventually(t, func() bool { return probe().Status == domain.StatusUnhealthy }, 5*time.Second, 50*time.Millisecond)
}
