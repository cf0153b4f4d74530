package amqpbus

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cosmic-horizons/fleet/libs/bus"
)

type connMetrics struct {
	connected  prometheus.Gauge
	reconnects prometheus.Counter
}

func newConnMetrics(reg prometheus.Registerer, name string) (*connMetrics, error) {
	connected, err := bus.RegisterMetric(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "fleet_amqp_connected",
		Help: "1 while the AMQP connection is open, 0 while it is down.",
	}, []string{"connection"}))
	if err != nil {
		return nil, err
	}
	reconnects, err := bus.RegisterMetric(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fleet_amqp_reconnects_total",
		Help: "Successful reconnects after the AMQP connection was lost.",
	}, []string{"connection"}))
	if err != nil {
		return nil, err
	}
	return &connMetrics{
		connected:  connected.WithLabelValues(name),
		reconnects: reconnects.WithLabelValues(name),
	}, nil
}

type publisherMetrics struct {
	published   *prometheus.CounterVec
	failures    *prometheus.CounterVec
	republished *prometheus.CounterVec
	confirm     *prometheus.HistogramVec
}

func newPublisherMetrics(reg prometheus.Registerer) (*publisherMetrics, error) {
	var m publisherMetrics
	var err error
	if m.published, err = bus.RegisterMetric(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fleet_amqp_messages_published_total",
		Help: "Messages the broker confirmed.",
	}, []string{"exchange"})); err != nil {
		return nil, err
	}
	if m.failures, err = bus.RegisterMetric(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fleet_amqp_publish_failures_total",
		Help: "Publishes that returned an error (nack, unroutable, timeout, closed).",
	}, []string{"exchange"})); err != nil {
		return nil, err
	}
	if m.republished, err = bus.RegisterMetric(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fleet_amqp_publish_retries_total",
		Help: "Messages published again because the connection was lost before their confirm.",
	}, []string{"exchange"})); err != nil {
		return nil, err
	}
	if m.confirm, err = bus.RegisterMetric(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "fleet_amqp_publish_confirm_seconds",
		Help:    "Time from Publish to the broker's confirm, republishes included.",
		Buckets: bus.LatencyBuckets,
	}, []string{"exchange"})); err != nil {
		return nil, err
	}
	return &m, nil
}

type consumerMetrics struct {
	consumed *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// Outcomes of a consumed message.
const (
	outcomeOK   = "ok"
	outcomeDLQ  = "dead_lettered"
	outcomeLost = "ack_failed"
)

func newConsumerMetrics(reg prometheus.Registerer) (*consumerMetrics, error) {
	var m consumerMetrics
	var err error
	if m.consumed, err = bus.RegisterMetric(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fleet_amqp_messages_consumed_total",
		Help: "Deliveries handled, by outcome: ok (acked), dead_lettered (rejected to the dead-letter exchange), ack_failed (channel lost; the broker redelivers).",
	}, []string{"queue", "outcome"})); err != nil {
		return nil, err
	}
	if m.duration, err = bus.RegisterMetric(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "fleet_amqp_handler_duration_seconds",
		Help:    "Time spent in the handler chain per delivery, retries included.",
		Buckets: bus.LatencyBuckets,
	}, []string{"queue"})); err != nil {
		return nil, err
	}
	return &m, nil
}
