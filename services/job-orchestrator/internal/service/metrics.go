package service

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/adapters/store"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/app"
)

// Names of the reconciler's metrics (its claim statement is timed by the
// store, store.MetricClaimSeconds).
const (
	// MetricPassSeconds times each reconciler pass: its claim, reads,
	// scheduler calls and writes. A pass holds the database only in its
	// claim and in the group commits its writes join, which the store times.
	MetricPassSeconds = "fleet_orchestrator_reconciler_pass_seconds"
	// MetricPassMaxSeconds is the longest pass since the process started.
	MetricPassMaxSeconds = "fleet_orchestrator_reconciler_pass_max_seconds"
	// MetricPasses counts the passes that ended, those with errors too.
	MetricPasses = "fleet_reconciler_passes_total"
)

// passBuckets reach from an idle pass (a millisecond) to a pass of a full
// batch against a slow scheduler.
var passBuckets = append(append([]float64{}, store.HoldBuckets...), 30, 60)

// passObserver returns the reconciler's pass observer, exporting its
// durations to reg.
func passObserver(reg prometheus.Registerer) (app.ReconcilerOption, error) {
	h, err := bus.RegisterMetric(reg, prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    MetricPassSeconds,
		Help:    "Time each reconciler pass took: claim, reads, scheduler calls and writes.",
		Buckets: passBuckets,
	}))
	if err != nil {
		return nil, err
	}
	longest, err := bus.RegisterMetric(reg, prometheus.NewGauge(prometheus.GaugeOpts{
		Name: MetricPassMaxSeconds,
		Help: "Longest reconciler pass since the process started.",
	}))
	if err != nil {
		return nil, err
	}
	most := store.NewMaxGauge(longest)
	return app.WithPassObserver(func(d time.Duration, _ app.PassResult) {
		h.Observe(d.Seconds())
		most.Observe(d)
	}), nil
}

// registerPassCount exports rec's count of passes to reg.
func registerPassCount(reg prometheus.Registerer, rec *app.Reconciler) error {
	_, err := bus.RegisterMetric(reg, prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: MetricPasses,
		Help: "Reconciler passes ended since the start, those with errors too.",
	}, func() float64 { return float64(rec.Passes()) }))
	return err
}
