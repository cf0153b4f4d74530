package outbox

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cosmic-horizons/fleet/libs/bus"
)

type metrics struct {
	backlog   prometheus.Gauge
	unmarked  *prometheus.GaugeVec
	published *prometheus.CounterVec
	errors    *prometheus.CounterVec
	parked    *prometheus.CounterVec
	latency   *prometheus.HistogramVec
}

// newMetrics registers the relay's metrics on reg (nil: unregistered):
// fleet_outbox_backlog, fleet_outbox_unmarked{destination} (events handed
// to a broker and not yet marked sent: what a crash now would publish
// again), fleet_outbox_published_total{destination,topic},
// fleet_outbox_publish_errors_total{destination,topic},
// fleet_outbox_parked_total{destination,topic} and
// fleet_outbox_publish_latency_seconds{topic}, the time from the commit of
// an event to its Kafka acknowledgement.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	var m metrics
	var err error
	if m.backlog, err = bus.RegisterMetric(reg, prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "fleet_outbox_backlog", Help: "Outbox rows not yet published.",
	})); err != nil {
		return nil, err
	}
	if m.unmarked, err = bus.RegisterMetric(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "fleet_outbox_unmarked", Help: "Outbox events handed to a broker and not yet marked sent (published again after a crash).",
	}, []string{"destination"})); err != nil {
		return nil, err
	}
	if m.published, err = bus.RegisterMetric(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fleet_outbox_published_total", Help: "Outbox events acknowledged by a broker.",
	}, []string{"destination", "topic"})); err != nil {
		return nil, err
	}
	if m.errors, err = bus.RegisterMetric(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fleet_outbox_publish_errors_total", Help: "Failed attempts to publish an outbox event.",
	}, []string{"destination", "topic"})); err != nil {
		return nil, err
	}
	if m.parked, err = bus.RegisterMetric(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fleet_outbox_parked_total", Help: "Outbox events parked on a destination after a failure no retry changes.",
	}, []string{"destination", "topic"})); err != nil {
		return nil, err
	}
	if m.latency, err = bus.RegisterMetric(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "fleet_outbox_publish_latency_seconds", Help: "Time from an event's commit to its Kafka acknowledgement.",
		Buckets: bus.LatencyBuckets,
	}, []string{"topic"})); err != nil {
		return nil, err
	}
	return &m, nil
}
