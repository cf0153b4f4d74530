package domain_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/services/health-monitor/internal/domain"
)

const (
	H = domain.StatusHealthy
	D = domain.StatusDegraded
	U = domain.StatusUnhealthy
	K = domain.StatusUnknown
)

func newTracker(t *testing.T, raise, resolve int) *domain.AlertTracker {
	t.Helper()
	n := 0
	tr, err := domain.NewAlertTracker(domain.HysteresisConfig{RaiseAfter: raise, ResolveAfter: resolve},
		func() string { n++; return fmt.Sprintf("alert-%d", n) })
	require.NoError(t, err)
	return tr
}

// run feeds one component's statuses and returns the transitions as
// "cycle:raised" / "cycle:resolved".
func run(t *testing.T, tr *domain.AlertTracker, statuses []domain.Status) []string {
	t.Helper()
	var out []string
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, s := range statuses {
		for _, x := range tr.Observe(start.Add(time.Duration(i)*time.Second), []domain.Component{{ID: "c", Status: s, Detail: "d"}}) {
			kind := "raised"
			if x.Kind == domain.AlertResolved {
				kind = "resolved"
			}
			out = append(out, fmt.Sprintf("%d:%s", i, kind))
		}
	}
	return out
}

func TestAlertTrackerHysteresis(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name            string
		raise, resolve  int
		statuses        []domain.Status
		want            []string
		wantOpenAtEnd   bool
		wantSeverityEnd domain.Severity
	}{
		{name: "healthy never alerts", raise: 2, resolve: 2, statuses: []domain.Status{H, H, H, H}},
		{name: "one bad cycle is not enough", raise: 2, resolve: 2, statuses: []domain.Status{H, U, H, H}},
		{name: "flapping every cycle never raises", raise: 2, resolve: 2,
			statuses: []domain.Status{U, H, U, H, D, H, U, H, U, H, U, H}},
		{name: "raise after two bad, resolve after two good", raise: 2, resolve: 2,
			statuses: []domain.Status{H, U, U, U, H, H, H}, want: []string{"2:raised", "5:resolved"}},
		{name: "flapping while open neither resolves nor raises again", raise: 2, resolve: 2,
			statuses:      []domain.Status{U, U, H, U, H, U, H, U, H, U},
			want:          []string{"1:raised"},
			wantOpenAtEnd: true, wantSeverityEnd: domain.SeverityCritical},
		{name: "two incidents make two alerts", raise: 2, resolve: 2,
			statuses: []domain.Status{D, D, H, H, U, U, H, H},
			want:     []string{"1:raised", "3:resolved", "5:raised", "7:resolved"}},
		{name: "unknown neither counts nor resets", raise: 2, resolve: 2,
			statuses: []domain.Status{U, K, U, H, K, H}, want: []string{"2:raised", "5:resolved"}},
		{name: "degraded escalating to unhealthy keeps one alert", raise: 2, resolve: 2,
			statuses:      []domain.Status{D, D, U, U},
			want:          []string{"1:raised"},
			wantOpenAtEnd: true, wantSeverityEnd: domain.SeverityCritical},
		{name: "raise after one", raise: 1, resolve: 3,
			statuses: []domain.Status{D, H, H, H}, want: []string{"0:raised", "3:resolved"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tr := newTracker(t, tt.raise, tt.resolve)
			require.Equal(t, tt.want, run(t, tr, tt.statuses))
			open := tr.Open()
			require.Equal(t, tt.wantOpenAtEnd, len(open) == 1, "open alerts: %v", open)
			if tt.wantOpenAtEnd {
				require.Equal(t, tt.wantSeverityEnd, open[0].Severity)
			}
		})
	}
}

func TestAlertTrackerRaisedAtIsFirstBadObservation(t *testing.T) {
	t.Parallel()
	tr := newTracker(t, 3, 1)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var got []domain.Transition
	for i := range 3 {
		got = append(got, tr.Observe(t0.Add(time.Duration(i)*time.Minute), []domain.Component{{ID: "c", Status: domain.StatusDegraded}})...)
	}
	require.Len(t, got, 1)
	require.Equal(t, t0, got[0].Alert.RaisedAt)
	require.Equal(t, domain.SeverityWarning, got[0].Alert.Severity)
	require.Equal(t, "c", got[0].Alert.ComponentID)
}

func TestAlertTrackerSuppressesDependents(t *testing.T) {
	t.Parallel()
	tr := newTracker(t, 2, 2)
	now := time.Now()
	cycle := func(broker, canary domain.Status) []string {
		var ids []string
		for _, x := range tr.Observe(now, []domain.Component{
			{ID: "canary", Status: canary, DependsOn: "broker"},
			{ID: "broker", Status: broker},
		}) {
			ids = append(ids, fmt.Sprintf("%s:%d", x.Alert.ComponentID, x.Kind))
		}
		return ids
	}
	require.Empty(t, cycle(U, U))
	require.Equal(t, []string{fmt.Sprintf("broker:%d", domain.AlertRaised)}, cycle(U, U))
	require.Empty(t, cycle(U, U))
	// The broker recovers; the canary fails once more, which alone raises nothing.
	require.Empty(t, cycle(H, U))
	require.Equal(t, []string{fmt.Sprintf("broker:%d", domain.AlertResolved)}, cycle(H, H))
	require.Empty(t, cycle(H, H))
	// The canary failing on its own raises its own alert.
	require.Empty(t, cycle(H, U))
	require.Equal(t, []string{fmt.Sprintf("canary:%d", domain.AlertRaised)}, cycle(H, U))
}

func TestNewAlertTrackerRejectsBadConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  domain.HysteresisConfig
	}{
		{name: "zero raise", cfg: domain.HysteresisConfig{RaiseAfter: 0, ResolveAfter: 1}},
		{name: "zero resolve", cfg: domain.HysteresisConfig{RaiseAfter: 1, ResolveAfter: 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := domain.NewAlertTracker(tt.cfg, func() string { return "x" })
			require.Error(t, err)
		})
	}
}
