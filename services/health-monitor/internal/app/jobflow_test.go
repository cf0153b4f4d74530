package app_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/services/health-monitor/internal/app"
	"github.com/cosmic-horizons/fleet/services/health-monitor/internal/domain"
)

func TestJobFlowProbeIsDegradedUntilItConsumes(t *testing.T) {
	flow, err := domain.NewJobFlow(domain.DefaultJobFlowConfig())
	require.NoError(t, err)
	var consuming atomic.Bool
	probe := app.NewJobFlow(flow, consuming.Load, "kafka:cluster")
	probe.Observe(domain.JobTransition{JobID: "j", System: "vista", To: domain.JobSubmitted, At: time.Now()})

	out := probe.Probe(context.Background())
	require.Len(t, out.Components, 1)
	c := out.Components[0]
	require.Equal(t, domain.StatusDegraded, c.Status)
	require.Contains(t, c.Detail, "not consuming job-lifecycle")
	require.EqualValues(t, 1, c.Metrics["pending_jobs"])
	require.Equal(t, "kafka:cluster", c.DependsOn, "no alert of its own while Kafka is down")

	consuming.Store(true)
	c = probe.Probe(context.Background()).Components[0]
	require.Equal(t, domain.StatusHealthy, c.Status, c.Detail)
	require.Equal(t, domain.JobFlowComponentID, probe.Name())
	require.Equal(t, domain.TypeScheduler, probe.Type())
}
