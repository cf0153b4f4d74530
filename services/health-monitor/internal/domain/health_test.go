package domain_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/services/health-monitor/internal/domain"
)

func TestWorst(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   []domain.Status
		want domain.Status
	}{
		{name: "none is unknown", in: nil, want: K},
		{name: "all healthy", in: []domain.Status{H, H}, want: H},
		{name: "unknown beats healthy", in: []domain.Status{H, K}, want: K},
		{name: "degraded beats unknown", in: []domain.Status{K, D, H}, want: D},
		{name: "unhealthy beats all", in: []domain.Status{D, U, K, H}, want: U},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, domain.Worst(tt.in...))
		})
	}
}

func TestFleetStatusNormalize(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := domain.FleetStatus{
		Components: []domain.Component{{ID: "b", Status: H}, {ID: "a", Status: D}, {ID: "c", Status: H}},
		Lags:       []domain.GroupLag{{Group: "g2", Topic: "t"}, {Group: "g1", Topic: "u"}, {Group: "g1", Topic: "t"}},
		OpenAlerts: []domain.Alert{
			{ComponentID: "w", Severity: domain.SeverityWarning, RaisedAt: t0},
			{ComponentID: "c2", Severity: domain.SeverityCritical, RaisedAt: t0.Add(time.Minute)},
			{ComponentID: "c1", Severity: domain.SeverityCritical, RaisedAt: t0},
		},
	}
	s.Normalize()
	require.Equal(t, D, s.Overall)
	require.Equal(t, []string{"a", "b", "c"}, []string{s.Components[0].ID, s.Components[1].ID, s.Components[2].ID})
	require.Equal(t, []domain.GroupLag{{Group: "g1", Topic: "t"}, {Group: "g1", Topic: "u"}, {Group: "g2", Topic: "t"}}, s.Lags)
	require.Equal(t, []string{"c1", "c2", "w"}, []string{s.OpenAlerts[0].ComponentID, s.OpenAlerts[1].ComponentID, s.OpenAlerts[2].ComponentID})

	empty := domain.FleetStatus{}
	empty.Normalize()
	require.Equal(t, K, empty.Overall)
}

func TestLatencyWindowPercentiles(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		size     int
		samples  []int // milliseconds
		p50, p99 time.Duration
		n        int
	}{
		{name: "empty", size: 10, p50: 0, p99: 0, n: 0},
		{name: "one sample", size: 10, samples: []int{7}, p50: 7 * time.Millisecond, p99: 7 * time.Millisecond, n: 1},
		{name: "hundred samples", size: 100, samples: seq(1, 100), p50: 50 * time.Millisecond, p99: 99 * time.Millisecond, n: 100},
		{name: "window drops the oldest", size: 4, samples: []int{1000, 1000, 1, 2, 3, 4}, p50: 2 * time.Millisecond, p99: 4 * time.Millisecond, n: 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w := domain.NewLatencyWindow(tt.size)
			for _, s := range tt.samples {
				w.Add(time.Duration(s) * time.Millisecond)
			}
			require.Equal(t, tt.n, w.Len())
			require.Equal(t, tt.p50, w.Percentile(50))
			require.Equal(t, tt.p99, w.Percentile(99))
		})
	}
}

func seq(from, to int) []int {
	var out []int
	for i := to; i >= from; i-- { // reversed: the window must sort
		out = append(out, i)
	}
	return out
}
