package ports

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/services/metrics-consumer/internal/app"
	"github.com/cosmic-horizons/fleet/services/metrics-consumer/internal/domain"
)

// DurationBuckets are the bucket bounds, in seconds, of the queue-wait and
// run-time histograms.
var DurationBuckets = []float64{1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 43200, 86400, 172800}

// CollectorStore is what the collector reads: every job record, and the
// completion times for the throughput.
type CollectorStore interface {
	app.JobReader
	CompletedSince(ctx context.Context, sinceUS int64) ([]int64, error)
}

// Collector derives the fleet's job metrics from the store on every scrape,
// so /metrics always agrees with the store (and with the gRPC answers) and
// needs no state of its own that a restart or rebuild could lose. A scrape
// reads every job record once; ScrapeTimeout bounds it.
type Collector struct {
	jobs    CollectorStore
	logger  *slog.Logger
	now     func() time.Time
	timeout time.Duration

	jobsTotal, nodeHours, gpuHours, active, pending, throughput, queueWait, runTime, scrapeErrors *prometheus.Desc
}

// ScrapeTimeout bounds the store reads of one scrape.
const ScrapeTimeout = 10 * time.Second

// NewCollector returns the collector over jobs.
func NewCollector(jobs CollectorStore, logger *slog.Logger) *Collector {
	sa := []string{"system", "agent"}
	return &Collector{
		jobs: jobs, logger: logger, now: time.Now, timeout: ScrapeTimeout,
		jobsTotal: prometheus.NewDesc("fleet_jobs_total",
			"Jobs seen, by system, agent and status: SUBMITTED counts every job, COMPLETED, FAILED and CANCELLED the jobs that ended so.",
			[]string{"system", "agent", "status"}, nil),
		nodeHours:  prometheus.NewDesc("fleet_node_hours_total", "Node-hours of actual run time of finished jobs.", sa, nil),
		gpuHours:   prometheus.NewDesc("fleet_gpu_hours_total", "GPU-hours of actual run time of finished jobs.", sa, nil),
		active:     prometheus.NewDesc("fleet_jobs_active", "Jobs RUNNING now.", sa, nil),
		pending:    prometheus.NewDesc("fleet_jobs_pending", "Jobs SUBMITTED or QUEUED now.", sa, nil),
		throughput: prometheus.NewDesc("fleet_jobs_completed_per_minute", "Jobs that completed during the last full minute.", nil, nil),
		queueWait:  prometheus.NewDesc("fleet_job_queue_wait_seconds", "Time from submission to start of jobs that started.", sa, nil),
		runTime:    prometheus.NewDesc("fleet_job_run_time_seconds", "Time from start to the terminal status of jobs that finished after starting.", sa, nil),
		scrapeErrors: prometheus.NewDesc("fleet_metrics_store_scrape_error",
			"1 when the last scrape could not read the store, else 0.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.jobsTotal, c.nodeHours, c.gpuHours, c.active, c.pending, c.throughput, c.queueWait, c.runTime, c.scrapeErrors} {
		ch <- d
	}
}

type labels struct{ system, agent string }

type hist struct {
	counts []uint64
	sum    float64
	n      uint64
}

func (h *hist) add(ms int64) {
	if ms < 0 {
		return
	}
	sec := float64(ms) / 1000
	for i, b := range DurationBuckets {
		if sec <= b {
			h.counts[i]++
		}
	}
	h.sum += sec
	h.n++
}

func (h *hist) buckets() map[float64]uint64 {
	out := make(map[float64]uint64, len(DurationBuckets))
	for i, b := range DurationBuckets {
		out[b] = h.counts[i]
	}
	return out
}

type group struct {
	byStatus            map[events.JobStatus]int64
	submitted           int64
	nodeHours, gpuHours float64
	active, pending     int64
	queueWait, runTime  hist
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	groups := map[labels]*group{}
	err := c.jobs.Each(ctx, domain.Filter{}, func(r domain.Row) error {
		k := labels{r.System, r.Agent}
		g := groups[k]
		if g == nil {
			g = &group{byStatus: map[events.JobStatus]int64{},
				queueWait: hist{counts: make([]uint64, len(DurationBuckets))},
				runTime:   hist{counts: make([]uint64, len(DurationBuckets))}}
			groups[k] = g
		}
		g.submitted++
		switch r.Status {
		case events.JobStatusCompleted, events.JobStatusFailed, events.JobStatusCancelled:
			g.byStatus[r.Status]++
		case events.JobStatusRunning:
			g.active++
		case events.JobStatusSubmitted, events.JobStatusQueued:
			g.pending++
		}
		g.nodeHours += r.NodeHours
		g.gpuHours += r.GPUHours
		g.queueWait.add(r.QueueWaitMS)
		g.runTime.add(r.RunTimeMS)
		return nil
	})
	var ends []int64
	if err == nil {
		now := c.now()
		ends, err = c.jobs.CompletedSince(ctx, now.Add(-time.Minute).Truncate(time.Minute).UnixMicro())
		if err == nil {
			ch <- prometheus.MustNewConstMetric(c.throughput, prometheus.GaugeValue,
				float64(domain.MinuteBuckets(ends, now.Add(-time.Minute).UnixMicro(), 1)[0]))
		}
	}
	if err != nil {
		c.logger.Warn("metrics scrape could not read the store", "error", err)
		ch <- prometheus.MustNewConstMetric(c.scrapeErrors, prometheus.GaugeValue, 1)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.scrapeErrors, prometheus.GaugeValue, 0)
	for k, g := range groups {
		ch <- prometheus.MustNewConstMetric(c.jobsTotal, prometheus.CounterValue, float64(g.submitted), k.system, k.agent, string(events.JobStatusSubmitted))
		for _, st := range []events.JobStatus{events.JobStatusCompleted, events.JobStatusFailed, events.JobStatusCancelled} {
			ch <- prometheus.MustNewConstMetric(c.jobsTotal, prometheus.CounterValue, float64(g.byStatus[st]), k.system, k.agent, string(st))
		}
		ch <- prometheus.MustNewConstMetric(c.nodeHours, prometheus.CounterValue, g.nodeHours, k.system, k.agent)
		ch <- prometheus.MustNewConstMetric(c.gpuHours, prometheus.CounterValue, g.gpuHours, k.system, k.agent)
		ch <- prometheus.MustNewConstMetric(c.active, prometheus.GaugeValue, float64(g.active), k.system, k.agent)
		ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(g.pending), k.system, k.agent)
		ch <- prometheus.MustNewConstHistogram(c.queueWait, g.queueWait.n, g.queueWait.sum, g.queueWait.buckets(), k.system, k.agent)
		ch <- prometheus.MustNewConstHistogram(c.runTime, g.runTime.n, g.runTime.sum, g.runTime.buckets(), k.system, k.agent)
	}
}
