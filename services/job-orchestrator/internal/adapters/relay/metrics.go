package relay

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cosmic-horizons/fleet/libs/bus"
)

type metrics struct {
	backlog   prometheus.Gauge
	published *prometheus.CounterVec
	errors    *prometheus.CounterVec
	latency   *prometheus.HistogramVec
}

// newMetrics registers the relay's metrics on reg (nil: unregistered):
// fleet_outbox_backlog, fleet_outbox_published_total{destination,topic},
// fleet_outbox_publish_errors_total{topic} and
// fleet_outbox_publish_latency_seconds{topic}, the time from the commit of
// an event to its last acknowledgement.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	var m metrics
	var err error
	if m.backlog, err = bus.RegisterMetric(reg, prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "fleet_outbox_backlog", Help: "Outbox rows not yet published.",
	})); err != nil {
		return nil, err
	}
	if m.published, err = bus.RegisterMetric(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fleet_outbox_published_total", Help: "Outbox events acknowledged by a broker.",
	}, []string{"destination", "topic"})); err != nil {
		return nil, err
	}
	if m.errors, err = bus.RegisterMetric(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fleet_outbox_publish_errors_total", Help: "Failed attempts to publish an outbox event.",
	}, []string{"topic"})); err != nil {
		return nil, err
	}
	if m.latency, err = bus.RegisterMetric(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "fleet_outbox_publish_latency_seconds", Help: "Time from an event's commit to its publication.",
		Buckets: bus.LatencyBuckets,
	}, []string{"topic"})); err != nil {
		return nil, err
	}
	return &m, nil
}
