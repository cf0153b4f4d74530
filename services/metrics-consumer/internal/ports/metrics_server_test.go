package ports_test

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cosmic-horizons/fleet/libs/auth"
	"github.com/cosmic-horizons/fleet/libs/sqlstore"
	metricspb "github.com/cosmic-horizons/fleet/proto/fleet/metrics/v1"
	"github.com/cosmic-horizons/fleet/services/metrics-consumer/internal/adapters"
	"github.com/cosmic-horizons/fleet/services/metrics-consumer/internal/app"
	"github.com/cosmic-horizons/fleet/services/metrics-consumer/internal/ports"
)

// TestCallersAreCheckedBeforeAnyQuery covers the refusals, which never reach
// the store (the server has none here); allowed calls are covered against
// the real binary in the service package.
func TestCallersAreCheckedBeforeAnyQuery(t *testing.T) {
	t.Parallel()
	srv := ports.NewMetricsServer(nil, nil)
	now := time.Now()
	w := &metricspb.TimeWindow{Start: timestamppb.New(now.Add(-time.Hour)), End: timestamppb.New(now)}
	user := auth.WithPrincipal(context.Background(), auth.Principal{UserID: "ada"})
	tests := []struct {
		name string
		call func() error
		want codes.Code
	}{
		{name: "job metrics without a caller", want: codes.Unauthenticated, call: func() error {
			_, err := srv.GetJobMetrics(context.Background(), &metricspb.GetJobMetricsRequest{Window: w})
			return err
		}},
		{name: "system stats without a caller", want: codes.Unauthenticated, call: func() error {
			_, err := srv.GetSystemStats(context.Background(), &metricspb.GetSystemStatsRequest{Window: w})
			return err
		}},
		{name: "usage without a caller", want: codes.Unauthenticated, call: func() error {
			_, err := srv.GetUserUsage(context.Background(), &metricspb.GetUserUsageRequest{Window: w})
			return err
		}},
		{name: "another user's usage", want: codes.PermissionDenied, call: func() error {
			_, err := srv.GetUserUsage(user, &metricspb.GetUserUsageRequest{Window: w, UserId: "bob"})
			return err
		}},
		{name: "bad window is still InvalidArgument for a caller", want: codes.InvalidArgument, call: func() error {
			_, err := srv.GetUserUsage(user, &metricspb.GetUserUsageRequest{})
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, status.Code(tt.call()))
		})
	}
}

// TestStoreFailuresCarryNoDriverText: a store that fails (here a closed
// SQLite database) answers Unavailable with a generic message; the driver's
// text is logged, not sent.
func TestStoreFailuresCarryNoDriverText(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := sqlstore.Open(ctx, sqlstore.Config{URL: "sqlite:" + filepath.Join(t.TempDir(), "m.db")}, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	require.NoError(t, adapters.Migrate(ctx, db))
	require.NoError(t, db.Close())
	var logs bytes.Buffer
	srv := ports.NewMetricsServer(app.NewQueries(adapters.NewJobRepository(db)), slog.New(slog.NewJSONHandler(&logs, nil)))
	now := time.Now()
	w := &metricspb.TimeWindow{Start: timestamppb.New(now.Add(-time.Hour)), End: timestamppb.New(now)}
	user := auth.WithPrincipal(ctx, auth.Principal{UserID: "ada"})
	calls := map[string]func() error{
		"job metrics": func() error {
			_, err := srv.GetJobMetrics(user, &metricspb.GetJobMetricsRequest{Window: w})
			return err
		},
		"one job": func() error {
			_, err := srv.GetJobMetrics(user, &metricspb.GetJobMetricsRequest{Window: w, JobId: "j-1"})
			return err
		},
		"system stats": func() error {
			_, err := srv.GetSystemStats(user, &metricspb.GetSystemStatsRequest{Window: w})
			return err
		},
		"user usage": func() error { _, err := srv.GetUserUsage(user, &metricspb.GetUserUsageRequest{Window: w}); return err },
	}
	for name, call := range calls {
		st := status.Convert(call())
		require.Equal(t, codes.Unavailable, st.Code(), name)
		require.NotContains(t, st.Message(), "sql", name)
		require.NotContains(t, st.Message(), "closed", name)
	}
	require.Contains(t, logs.String(), "database is closed", "the detail is logged")
}
