package store

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cosmic-horizons/fleet/libs/bus"
)

// Names of the store's metrics: how long its writes hold the database.
const (
	// MetricCommitSeconds times each write transaction of the group commit
	// (a batch, or a request written alone), from BEGIN returned until
	// COMMIT returned: the time it kept other writers (on SQLite, all of
	// them) waiting.
	MetricCommitSeconds = "fleet_orchestrator_store_commit_seconds"
	// MetricCommitWrites counts the writes (new jobs and transitions) each
	// of those transactions carried.
	MetricCommitWrites = "fleet_orchestrator_store_commit_writes"
	// MetricCommitMaxSeconds is the longest of those transactions since the
	// process started, which a histogram cannot tell.
	MetricCommitMaxSeconds = "fleet_orchestrator_store_commit_max_seconds"
	// MetricClaimSeconds times each ClaimSubmitted statement (an UPDATE ...
	// RETURNING, which takes SQLite's write lock) on a connection already
	// held: the time it keeps other writers waiting.
	MetricClaimSeconds = "fleet_orchestrator_reconciler_claim_seconds"
	// MetricClaimMaxSeconds is the longest ClaimSubmitted statement since
	// the process started.
	MetricClaimMaxSeconds = "fleet_orchestrator_reconciler_claim_max_seconds"
)

// HoldBuckets are the buckets of the database hold times, fine from 0.5 ms
// to 500 ms, where a write starts to delay SubmitJob noticeably.
var HoldBuckets = []float64{.0005, .001, .002, .003, .005, .0075, .01, .015, .02, .03, .05, .075,
	.1, .15, .2, .3, .5, .75, 1, 2.5, 5, 10}

// writeBuckets are the buckets of writes per transaction, up to a full
// group commit batch (maxGroupCommit).
var writeBuckets = []float64{1, 2, 4, 8, 16, 32, 64, 128}

// storeMetrics times the store's writes; a zero storeMetrics (no
// registerer) observes into unregistered collectors.
type storeMetrics struct {
	commitSeconds, commitWrites, claimSeconds prometheus.Observer
	commitMax, claimMax                       *maxGauge
}

func newStoreMetrics(reg prometheus.Registerer, dialect string) (*storeMetrics, error) {
	commit, err := bus.RegisterMetric(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    MetricCommitSeconds,
		Help:    "Time each group-commit write transaction held the database, from BEGIN until COMMIT returned.",
		Buckets: HoldBuckets,
	}, []string{"dialect"}))
	if err != nil {
		return nil, err
	}
	writes, err := bus.RegisterMetric(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    MetricCommitWrites,
		Help:    "New jobs and transitions written by each group-commit write transaction.",
		Buckets: writeBuckets,
	}, []string{"dialect"}))
	if err != nil {
		return nil, err
	}
	claim, err := bus.RegisterMetric(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    MetricClaimSeconds,
		Help:    "Time each claim of SUBMITTED jobs for dispatch (one UPDATE ... RETURNING) held the database.",
		Buckets: HoldBuckets,
	}, []string{"dialect"}))
	if err != nil {
		return nil, err
	}
	m := &storeMetrics{
		commitSeconds: commit.WithLabelValues(dialect),
		commitWrites:  writes.WithLabelValues(dialect),
		claimSeconds:  claim.WithLabelValues(dialect),
	}
	if m.commitMax, err = newMaxGauge(reg, MetricCommitMaxSeconds,
		"Longest group-commit write transaction since the process started.", dialect); err != nil {
		return nil, err
	}
	if m.claimMax, err = newMaxGauge(reg, MetricClaimMaxSeconds,
		"Longest claim of SUBMITTED jobs for dispatch since the process started.", dialect); err != nil {
		return nil, err
	}
	return m, nil
}

// commit records a write transaction of writes jobs and transitions that
// held the database for d.
func (m *storeMetrics) commit(d time.Duration, writes int) {
	m.commitSeconds.Observe(d.Seconds())
	m.commitWrites.Observe(float64(writes))
	m.commitMax.observe(d)
}

// claim records a ClaimSubmitted statement that held the database for d.
func (m *storeMetrics) claim(d time.Duration) {
	m.claimSeconds.Observe(d.Seconds())
	m.claimMax.observe(d)
}

// maxGauge exports the longest duration observed, in seconds. Stores of
// one process sharing a registerer share the gauge, and each sets it to its
// own maximum; a service has one Store.
type maxGauge struct {
	mu    sync.Mutex
	max   time.Duration
	gauge prometheus.Gauge
}

func newMaxGauge(reg prometheus.Registerer, name, help, dialect string) (*maxGauge, error) {
	g, err := bus.RegisterMetric(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, []string{"dialect"}))
	if err != nil {
		return nil, err
	}
	return &maxGauge{gauge: g.WithLabelValues(dialect)}, nil
}

func (g *maxGauge) observe(d time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if d > g.max {
		g.max = d
		g.gauge.Set(d.Seconds())
	}
}
