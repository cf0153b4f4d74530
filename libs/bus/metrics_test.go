package bus_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/bus"
)

func TestRegisterMetricSharesCollectors(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	opts := prometheus.CounterOpts{Name: "fleet_test_total", Help: "test"}
	first, err := bus.RegisterMetric(reg, prometheus.NewCounterVec(opts, []string{"topic"}))
	require.NoError(t, err)
	second, err := bus.RegisterMetric(reg, prometheus.NewCounterVec(opts, []string{"topic"}))
	require.NoError(t, err)
	require.Same(t, first, second, "a second registration returns the first collector")

	// The same name with other labels is a real conflict.
	_, err = bus.RegisterMetric(reg, prometheus.NewCounterVec(opts, []string{"queue"}))
	require.Error(t, err)

	// Without a registry the collector stays unregistered.
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "fleet_free_total", Help: "test"})
	got, err := bus.RegisterMetric[prometheus.Counter](nil, c)
	require.NoError(t, err)
	require.Same(t, c, got)
}
