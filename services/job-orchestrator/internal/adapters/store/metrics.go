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
	// of those transactions carried. Both, and MetricCommitMaxSeconds, are
	// labelled by dialect and by writes: creates, transitions or mixed.
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

// Kinds of write transaction, the label "writes" of the commit metrics: a
// commit of new jobs only (SubmitJob's), of transitions only (the
// reconciler's, or a user's cancel), or of both (on SQLite, where the two
// share batches).
const (
	writesCreates     = "creates"
	writesTransitions = "transitions"
	writesMixed       = "mixed"
)

// storeMetrics times the store's writes; without a registerer it observes
// into unregistered collectors.
type storeMetrics struct {
	commitSeconds, commitWrites map[string]prometheus.Observer
	commitMax                   map[string]*MaxGauge
	claimSeconds                prometheus.Observer
	claimMax                    *MaxGauge
}

func newStoreMetrics(reg prometheus.Registerer, dialect string) (*storeMetrics, error) {
	commit, err := bus.RegisterMetric(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    MetricCommitSeconds,
		Help:    "Time each group-commit write transaction held the database, from BEGIN returned until COMMIT returned, by what it wrote.",
		Buckets: HoldBuckets,
	}, []string{"dialect", "writes"}))
	if err != nil {
		return nil, err
	}
	writes, err := bus.RegisterMetric(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    MetricCommitWrites,
		Help:    "New jobs and transitions written by each group-commit write transaction, by what it wrote.",
		Buckets: writeBuckets,
	}, []string{"dialect", "writes"}))
	if err != nil {
		return nil, err
	}
	commitMax, err := bus.RegisterMetric(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: MetricCommitMaxSeconds,
		Help: "Longest group-commit write transaction since the process started, by what it wrote.",
	}, []string{"dialect", "writes"}))
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
	claimMax, err := bus.RegisterMetric(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: MetricClaimMaxSeconds,
		Help: "Longest claim of SUBMITTED jobs for dispatch since the process started.",
	}, []string{"dialect"}))
	if err != nil {
		return nil, err
	}
	m := &storeMetrics{
		commitSeconds: map[string]prometheus.Observer{},
		commitWrites:  map[string]prometheus.Observer{},
		commitMax:     map[string]*MaxGauge{},
		claimSeconds:  claim.WithLabelValues(dialect),
		claimMax:      NewMaxGauge(claimMax.WithLabelValues(dialect)),
	}
	for _, kind := range []string{writesCreates, writesTransitions, writesMixed} {
		m.commitSeconds[kind] = commit.WithLabelValues(dialect, kind)
		m.commitWrites[kind] = writes.WithLabelValues(dialect, kind)
		m.commitMax[kind] = NewMaxGauge(commitMax.WithLabelValues(dialect, kind))
	}
	return m, nil
}

// commit records a write transaction of creates new jobs and transitions
// transitions that held the database for d.
func (m *storeMetrics) commit(d time.Duration, creates, transitions int) {
	kind := writesMixed
	switch {
	case transitions == 0:
		kind = writesCreates
	case creates == 0:
		kind = writesTransitions
	}
	m.commitSeconds[kind].Observe(d.Seconds())
	m.commitWrites[kind].Observe(float64(creates + transitions))
	m.commitMax[kind].Observe(d)
}

// claim records a ClaimSubmitted statement that held the database for d.
func (m *storeMetrics) claim(d time.Duration) {
	m.claimSeconds.Observe(d.Seconds())
	m.claimMax.Observe(d)
}

// MaxGauge exports the longest duration observed, in seconds, which a
// histogram cannot tell. Stores of one process sharing a registerer share
// their gauges, and each sets them to its own maximum; a service has one
// Store.
type MaxGauge struct {
	mu    sync.Mutex
	max   time.Duration
	gauge prometheus.Gauge
}

// NewMaxGauge returns a MaxGauge that sets gauge.
func NewMaxGauge(gauge prometheus.Gauge) *MaxGauge { return &MaxGauge{gauge: gauge} }

// Observe sets the gauge to d when d is the longest duration so far.
func (g *MaxGauge) Observe(d time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if d > g.max {
		g.max = d
		g.gauge.Set(d.Seconds())
	}
}
